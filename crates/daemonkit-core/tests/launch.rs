//! Integration tests of `daemonkit_core::launch`: real double forks, real `execve`s of plain
//! executables, inspected through what they print and through `/proc`.
//!
//! Launched daemons are orphaned by design. This test process makes itself a child subreaper,
//! so each daemon becomes our child once the intermediate process exits; the tests reap it by
//! pid (`common::Reaped`), killing it first if it still runs. Every test holds `serial()`:
//! they change process-wide state (signal dispositions, descriptors at fixed numbers) and
//! count our children.

// These tests need Linux: `/proc`, a child subreaper, Linux-only syscalls or util-linux tools.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::ffi::{CStr, OsStr};
use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{children_of_self, parse_stat, read_stat, reaper_setup as setup, Exit, Reaped, TempDir};
use daemonkit_core::launch::{Command, LaunchError, Stage, Stdio};
use daemonkit_core::pidfile::{self, AcquireError, Pidfile, Probe};
use daemonkit_core::Errno;

/// Launches and adopts the daemon (it must have become our child).
fn launch(cmd: &Command) -> Reaped {
    let launched = cmd.launch().unwrap_or_else(|e| panic!("launch: {e} ({e:?})"));
    Reaped::adopt(launched.pid)
}

/// Launches a command expected to exit by itself with status 0.
fn run(cmd: &Command) -> Reaped {
    let mut d = launch(cmd);
    assert_eq!(d.wait(), Exit::Code(0), "the daemon failed");
    d
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills in two new descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are new descriptors owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn write_all_fd(fd: RawFd, data: &[u8]) {
    // SAFETY: writes from a valid buffer.
    let n = unsafe { libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) };
    assert_eq!(n, data.len() as isize);
}

/// The lowest descriptor number >= `from` that is not open here.
fn free_fd_from(from: RawFd) -> RawFd {
    (from..from + 1000).find(|&fd| !common::fd_is_open(fd)).expect("no free descriptor")
}

fn read_link_fd(pid: i32, fd: RawFd) -> PathBuf {
    fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_else(|e| panic!("readlink /proc/{pid}/fd/{fd}: {e}"))
}

/// Waits until the launched `sleep` sits in its sleep system call: before that, its dynamic
/// loader may have library files open, which must not be mistaken for leaked descriptors.
fn wait_until_sleeping(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let syscall = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        let nr = syscall.split_whitespace().next().and_then(|n| n.parse::<libc::c_long>().ok());
        if nr == Some(libc::SYS_clock_nanosleep) || nr == Some(libc::SYS_nanosleep) {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} never went to sleep (/proc/{pid}/syscall: {syscall:?})");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn open_fds(pid: i32) -> Vec<RawFd> {
    let mut fds: Vec<RawFd> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    fds.sort();
    fds
}

/// After a failed launch the daemon-to-be has exited with 127 and the intermediate process has
/// reaped it before exiting itself: nothing is orphaned, no zombie is left for init.
fn reap_failed_daemon() {
    assert_eq!(children_of_self(), vec![], "a failed launch must leave no process behind");
}

fn my_session() -> i32 {
    // SAFETY: getsid(0) has no preconditions.
    unsafe { libc::getsid(0) }
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

// ---------------------------------------------------------------------------------------------
// Session, process group, terminal, parent
// ---------------------------------------------------------------------------------------------

#[test]
fn daemon_is_in_a_new_session_that_it_does_not_lead() {
    let _s = setup();
    let dir = TempDir::new("launch-session");
    let out = File::create(dir.join("stat")).unwrap();
    let mut cmd = Command::new("/bin/cat");
    cmd.arg("/proc/self/stat").stdout(Stdio::Fd(out.as_raw_fd()));
    let d = run(&cmd);
    let st = parse_stat(&fs::read_to_string(dir.join("stat")).unwrap());

    assert_eq!(st.pid, d.pid);
    assert_eq!(st.comm, "cat");
    assert_eq!(st.session, st.pgrp, "the daemon's process group is not its session's");
    assert_ne!(
        st.session, st.pid,
        "the daemon leads its session: opening a terminal would make it its controlling terminal"
    );
    assert_ne!(st.session, my_session());
    assert_ne!(st.session, my_pid());
    // SAFETY: getpgrp has no preconditions.
    assert_ne!(st.pgrp, unsafe { libc::getpgrp() });
    assert_eq!(st.tty_nr, 0, "the daemon has a controlling terminal");
    // Its parent was the session leader (the intermediate process) or, once that exited, us:
    // this test process is a child subreaper. Never the launcher directly.
    assert!(st.ppid == st.session || st.ppid == my_pid(), "ppid {} (session {})", st.ppid, st.session);
}

#[test]
fn daemon_is_reparented_once_the_intermediate_process_is_gone() {
    let _s = setup();
    let dir = TempDir::new("launch-reparent");
    let out = File::create(dir.join("stat")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "sleep 0.2; exec cat /proc/self/stat"]).stdout(Stdio::Fd(out.as_raw_fd()));
    let mut d = launch(&cmd);
    // The session's leader was the intermediate process; it is gone when launch returns.
    let st_now = read_stat(d.pid).expect("daemon stat");
    assert_eq!(st_now.ppid, my_pid(), "not reparented to us, the nearest subreaper");
    assert!(read_stat(st_now.session).is_none(), "the intermediate process {} still exists", st_now.session);
    assert_eq!(d.wait(), Exit::Code(0));

    let st = parse_stat(&fs::read_to_string(dir.join("stat")).unwrap());
    assert_eq!(st.pid, d.pid, "exec replaced the shell in the same process");
    assert_eq!(st.ppid, my_pid());
    assert_eq!(st.session, st_now.session);
    assert_eq!(st.session, st.pgrp);
    assert_ne!(st.session, st.pid);
    assert_eq!(st.tty_nr, 0);
}

#[test]
fn launch_returns_quickly_and_leaves_only_the_daemon_as_our_child() {
    let _s = setup();
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("30");
        let started = Instant::now();
        let launched = cmd.launch().expect("launch");
        let elapsed = started.elapsed();
        let mut d = Reaped::adopt(launched.pid);
        times.push(elapsed);
        // The intermediate process has been reaped: no zombie, only the daemon, alive.
        let kids = children_of_self();
        assert_eq!(kids.len(), 1, "children after launch: {kids:?}");
        assert_eq!(kids[0].0, launched.pid);
        assert_ne!(kids[0].1, 'Z');
        let st = read_stat(launched.pid).unwrap();
        assert_eq!(st.comm, "sleep", "launch returned before the daemon had exec'd");
        assert_eq!(st.ppid, my_pid());
        assert_eq!(d.kill_and_reap(), Exit::Signal(libc::SIGKILL));
        assert_eq!(children_of_self(), vec![]);
    }
    times.sort();
    eprintln!("launch times: {times:?}");
    assert!(times[4] < Duration::from_secs(1), "launch took {:?}", times[4]);
}

struct Pty {
    master: OwnedFd,
    slave_path: PathBuf,
}

fn open_pty() -> Pty {
    // SAFETY: standard pty allocation on a descriptor we own; the buffer outlives ptsname_r.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()), 0);
        let slave_path = PathBuf::from(OsStr::from_bytes(CStr::from_ptr(buf.as_ptr()).to_bytes()));
        Pty { master, slave_path }
    }
}

/// The reason for the second fork: a session leader without a terminal acquires the first
/// terminal it opens (without O_NOCTTY) as its controlling terminal; the daemon must not.
#[test]
fn daemon_cannot_acquire_a_terminal_by_opening_one() {
    let _s = setup();
    let dir = TempDir::new("launch-opentty");
    let pty = open_pty();
    let script = r#"exec 3<>"$0" || exit 9; exec cat /proc/self/stat"#;

    let out = File::create(dir.join("stat")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args([OsStr::new("-c"), OsStr::new(script), pty.slave_path.as_os_str()]).stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    let st = parse_stat(&fs::read_to_string(dir.join("stat")).unwrap());
    assert_eq!(st.tty_nr, 0, "the daemon acquired {} as its controlling terminal", pty.slave_path.display());

    // Control: the same script in a session of which it is the leader (what a single setsid
    // gives, e.g. spawn({detached: true})) does acquire the terminal. The test can tell.
    let mut control = std::process::Command::new("/bin/sh");
    control.args([OsStr::new("-c"), OsStr::new(script), pty.slave_path.as_os_str()]);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        control.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let output = control.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(output.status.success(), "control: {output:?}");
    let control_st = parse_stat(std::str::from_utf8(&output.stdout).unwrap());
    assert_ne!(control_st.tty_nr, 0, "control: a session leader should have acquired the terminal");
    drop(pty.master);
}

const CTTY_HELPER_ENV: &str = "DAEMONKIT_TEST_CTTY_HELPER";

/// Not a test on its own: the body of the helper process of
/// `daemon_of_a_launcher_with_a_controlling_terminal_has_none`, which runs this binary with
/// `--exact ctty_helper_process` in a session of its own that has a pty as controlling terminal.
#[test]
fn ctty_helper_process() {
    let Some(dir) = std::env::var_os(CTTY_HELPER_ENV) else { return };
    let dir = PathBuf::from(dir);
    let me = read_stat(my_pid()).unwrap();
    assert_ne!(me.tty_nr, 0, "helper: no controlling terminal");
    assert_eq!(me.session, me.pid, "helper: not a session leader");
    let out = File::create(dir.join("stat")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    // The helper exits (hanging up its terminal) while the daemon sleeps.
    cmd.args(["-c", "sleep 0.3; exec cat /proc/self/stat"]).stdout(Stdio::Fd(out.as_raw_fd()));
    let launched = cmd.launch().expect("helper: launch");
    fs::write(dir.join("info"), format!("{} {} {}", launched.pid, me.session, me.tty_nr)).unwrap();
}

#[test]
fn daemon_of_a_launcher_with_a_controlling_terminal_has_none() {
    let _s = setup();
    let dir = TempDir::new("launch-ctty");
    let pty = open_pty();
    let slave = File::options().read(true).write(true).open(&pty.slave_path).unwrap(); // O_CLOEXEC
    let slave_fd = slave.as_raw_fd();
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap());
    helper
        .args(["--exact", "ctty_helper_process", "--nocapture", "--test-threads=1"])
        .env(CTTY_HELPER_ENV, dir.path())
        .stdin(std::process::Stdio::null());
    // SAFETY: setsid and ioctl are async-signal-safe; slave_fd stays open until after spawn.
    unsafe {
        helper.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = helper.output().unwrap();
    assert!(
        output.status.success(),
        "helper failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let info = fs::read_to_string(dir.join("info")).expect("the helper did not run its body");
    let info: Vec<i32> = info.split(' ').map(|s| s.parse().unwrap()).collect();
    let (pid, helper_session, helper_tty) = (info[0], info[1], info[2]);
    assert_ne!(helper_tty, 0);

    // The daemon was orphaned to us (nearest subreaper) and survived the helper's hangup.
    let mut d = Reaped::adopt(pid);
    assert_eq!(d.wait(), Exit::Code(0));
    let st = parse_stat(&fs::read_to_string(dir.join("stat")).unwrap());
    assert_eq!(st.pid, pid);
    assert_eq!(st.tty_nr, 0, "the daemon kept the launcher's controlling terminal");
    assert_ne!(st.session, helper_session);
    assert_eq!(st.session, st.pgrp);
    assert_ne!(st.session, st.pid);
    assert_eq!(children_of_self(), vec![]);
    drop(slave);
    drop(pty.master);
}

// ---------------------------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------------------------

#[test]
fn stdio_defaults_to_dev_null_and_passed_fds_are_the_only_others() {
    let _s = setup();
    let dir = TempDir::new("launch-fds");
    let out = File::create(dir.join("out")).unwrap();
    let extra = File::create(dir.join("extra")).unwrap();
    let (_pipe_r, pipe_w) = pipe();
    // A descriptor without close-on-exec at a high number: must not leak into the daemon.
    let high = free_fd_from(77);
    // SAFETY: dup2 onto a free number; closed below.
    assert_eq!(unsafe { libc::dup2(extra.as_raw_fd(), high) }, high);
    assert_eq!(unsafe { libc::fcntl(high, libc::F_GETFD) } & libc::FD_CLOEXEC, 0);

    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("30").stdout(Stdio::Fd(out.as_raw_fd())).pass_fds(&[pipe_w.as_raw_fd(), extra.as_raw_fd()]);
    let mut d = launch(&cmd);
    let pid = d.pid;
    wait_until_sleeping(pid);
    let fds = open_fds(pid);
    let links: Vec<_> = fds.iter().map(|&fd| (fd, read_link_fd(pid, fd))).collect();
    assert_eq!(fds, vec![0, 1, 2, 3, 4], "the daemon's descriptors: {links:?}");
    assert_eq!(read_link_fd(pid, 0), Path::new("/dev/null"));
    assert_eq!(read_link_fd(pid, 1), dir.join("out"));
    assert_eq!(read_link_fd(pid, 2), Path::new("/dev/null"));
    assert_eq!(read_link_fd(pid, 3), read_link_fd(my_pid(), pipe_w.as_raw_fd()));
    assert_eq!(read_link_fd(pid, 4), dir.join("extra"));
    for fd in 0..=4 {
        assert_eq!(common::fdinfo_flags(pid, fd) & libc::O_CLOEXEC as u32, 0, "fd {fd} is close-on-exec");
    }
    assert_eq!(common::fdinfo_flags(pid, 0) & libc::O_ACCMODE as u32, libc::O_RDWR as u32, "/dev/null mode");
    // Our own descriptors are untouched.
    assert_ne!(unsafe { libc::fcntl(pipe_w.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC, 0);
    assert_eq!(d.kill_and_reap(), Exit::Signal(libc::SIGKILL));

    // The same seen from inside: ls lists 0-3 and the descriptor of the directory it reads.
    let listing = File::create(dir.join("ls")).unwrap();
    let mut cmd = Command::new("/bin/ls");
    cmd.arg("/proc/self/fd").stdout(Stdio::Fd(listing.as_raw_fd())).pass_fds(&[pipe_w.as_raw_fd()]);
    run(&cmd);
    assert_eq!(fs::read_to_string(dir.join("ls")).unwrap(), "0\n1\n2\n3\n4\n");

    // SAFETY: `high` is ours (dup2 above).
    unsafe { libc::close(high) };
}

#[test]
fn daemon_writes_to_a_pipe_passed_at_fd_3_and_reads_null_stdin() {
    let _s = setup();
    let (r, w) = pipe();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", r#"read line; echo "hello from $$ [$line]" >&3; echo oops >&4"#]).pass_fds(&[w.as_raw_fd()]);
    let mut d = launch(&cmd);
    drop(w);
    // EOF arrives once the daemon's copy closes: neither the intermediate process nor anyone
    // else kept a copy of the write end.
    let got = String::from_utf8(common::read_to_end_fd(r.as_raw_fd())).unwrap();
    // `read` hits EOF on /dev/null (status 1), the script goes on; fd 4 is not open (status 2).
    assert_eq!(got, format!("hello from {} []\n", d.pid));
    assert_eq!(d.wait(), Exit::Code(2));
}

#[test]
fn stdin_stdout_and_stderr_can_be_descriptors_of_the_launcher() {
    let _s = setup();
    let dir = TempDir::new("launch-stdio");
    let (in_r, in_w) = pipe();
    let (out_r, out_w) = pipe();
    let err = File::create(dir.join("err")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "cat; echo err >&2"])
        .stdin(Stdio::Fd(in_r.as_raw_fd()))
        .stdout(Stdio::Fd(out_w.as_raw_fd()))
        .stderr(Stdio::Fd(err.as_raw_fd()));
    let mut d = launch(&cmd);
    drop(in_r);
    drop(out_w);
    write_all_fd(in_w.as_raw_fd(), b"through the daemon\n");
    drop(in_w);
    assert_eq!(common::read_to_end_fd(out_r.as_raw_fd()), b"through the daemon\n");
    assert_eq!(d.wait(), Exit::Code(0));
    assert_eq!(fs::read(dir.join("err")).unwrap(), b"err\n");
}

/// Sources that are themselves target numbers (our 0, 1, 2 passed at 3, 4, 5 while 0, 1, 2
/// get other files) and one descriptor placed several times.
#[test]
fn descriptors_are_placed_correctly_when_sources_overlap_targets() {
    let _s = setup();
    let dir = TempDir::new("launch-overlap");
    let files: Vec<File> = ["x", "y", "z"].iter().map(|n| File::create(dir.join(n)).unwrap()).collect();
    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("30")
        .stdin(Stdio::Fd(files[0].as_raw_fd()))
        .stdout(Stdio::Fd(files[1].as_raw_fd()))
        .stderr(Stdio::Fd(files[2].as_raw_fd()))
        .pass_fds(&[0, 1, 2, files[2].as_raw_fd(), files[2].as_raw_fd()]);
    let mut d = launch(&cmd);
    let pid = d.pid;
    wait_until_sleeping(pid);
    assert_eq!(open_fds(pid), (0..=7).collect::<Vec<_>>());
    assert_eq!(read_link_fd(pid, 0), dir.join("x"));
    assert_eq!(read_link_fd(pid, 1), dir.join("y"));
    assert_eq!(read_link_fd(pid, 2), dir.join("z"));
    for n in 0..3 {
        assert_eq!(read_link_fd(pid, 3 + n), read_link_fd(my_pid(), n), "our fd {n} at {}", 3 + n);
    }
    assert_eq!(read_link_fd(pid, 6), dir.join("z"));
    assert_eq!(read_link_fd(pid, 7), dir.join("z"));
    assert_eq!(d.kill_and_reap(), Exit::Signal(libc::SIGKILL));

    // And the same descriptor as stdout, stderr and twice passed: all write to one pipe.
    let (r, w) = pipe();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "echo 1; echo 2 >&2; echo 3 >&3; echo 4 >&4"])
        .stdout(Stdio::Fd(w.as_raw_fd()))
        .stderr(Stdio::Fd(w.as_raw_fd()))
        .pass_fds(&[w.as_raw_fd(), w.as_raw_fd()]);
    let mut d = launch(&cmd);
    drop(w);
    assert_eq!(common::read_to_end_fd(r.as_raw_fd()), b"1\n2\n3\n4\n");
    assert_eq!(d.wait(), Exit::Code(0));
}

/// The design's hand-off: the launcher locks the pidfile, passes the descriptor, closes its
/// own; the daemon holds the lock for its whole life and the lock goes with it.
#[test]
fn pidfile_lock_is_handed_to_the_daemon() {
    let _s = setup();
    let dir = TempDir::new("launch-pidfile");
    let path = dir.join("app.pid");
    let pf = Pidfile::acquire(&path).unwrap();
    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("30").pass_fds(&[pf.as_raw_fd()]);
    let mut d = launch(&cmd);
    pf.write_pid(d.pid).unwrap();
    drop(pf);

    assert_eq!(read_link_fd(d.pid, 3), path);
    assert_eq!(pidfile::probe(&path).unwrap(), Probe::Running { pid: d.pid });
    assert_eq!(Pidfile::acquire(&path).unwrap_err(), AcquireError::AlreadyRunning { pid: Some(d.pid) });
    let flock = std::process::Command::new("flock").arg("-n").arg(&path).arg("true").status().unwrap();
    assert!(!flock.success(), "flock -n got the lock the daemon holds");

    assert_eq!(d.kill_and_reap(), Exit::Signal(libc::SIGKILL));
    // Killed without cleanup: the file stays, the lock is gone with the daemon.
    assert_eq!(pidfile::probe(&path).unwrap(), Probe::NotRunning { stale: Some(Ok(d.pid)) });
    let again = Pidfile::acquire(&path).expect("acquire after the daemon died");
    assert_eq!(fs::read(&path).unwrap(), b"");
    drop(again);
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Restores this thread's signal mask and the dispositions changed by the test, even if it
/// panics.
struct SignalState {
    mask: libc::sigset_t,
    actions: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalState {
    fn save(signals: &[libc::c_int]) -> SignalState {
        // SAFETY: plain data filled in by pthread_sigmask / sigaction.
        unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask);
            let actions = signals
                .iter()
                .map(|&s| {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    assert_eq!(libc::sigaction(s, std::ptr::null(), &mut old), 0);
                    (s, old)
                })
                .collect();
            SignalState { mask, actions }
        }
    }
}

impl Drop for SignalState {
    fn drop(&mut self) {
        // SAFETY: restoring values saved above.
        unsafe {
            for (s, old) in &self.actions {
                libc::sigaction(*s, old, std::ptr::null_mut());
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut());
        }
    }
}

/// Signals 32 and 33 set to `SIG_IGN` with the raw `rt_sigaction` (glibc's wrapper refuses
/// them); the previous kernel actions are restored on drop. The kernel's `struct sigaction`
/// starts with the handler on x86_64 and aarch64 (not on MIPS).
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
struct ReservedSignalsIgnored {
    old: [(libc::c_long, [u64; 8]); 2],
}

#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
impl ReservedSignalsIgnored {
    fn set() -> ReservedSignalsIgnored {
        let ignore: [u64; 8] = [libc::SIG_IGN as u64, 0, 0, 0, 0, 0, 0, 0];
        let mut old = [(32, [0u64; 8]), (33, [0u64; 8])];
        for (sig, saved) in old.iter_mut() {
            // SAFETY: kernel sigaction buffers larger than the kernel's struct; sigsetsize 8.
            let rc =
                unsafe { libc::syscall(libc::SYS_rt_sigaction, *sig, ignore.as_ptr(), saved.as_mut_ptr(), 8usize) };
            assert_eq!(rc, 0, "rt_sigaction({sig}): {}", std::io::Error::last_os_error());
        }
        ReservedSignalsIgnored { old }
    }
}

#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
impl Drop for ReservedSignalsIgnored {
    fn drop(&mut self) {
        for (sig, saved) in &self.old {
            // SAFETY: restores the action saved by `set`.
            unsafe { libc::syscall(libc::SYS_rt_sigaction, *sig, saved.as_ptr(), ptr_null_u64(), 8usize) };
        }
    }
}

fn ptr_null_u64() -> *mut u64 {
    std::ptr::null_mut()
}

fn sig_bit(sig: libc::c_int) -> u64 {
    1u64 << (sig - 1)
}

fn sig_field(status: &str, name: &str) -> u64 {
    u64::from_str_radix(&common::status_field(status, name), 16).unwrap()
}

#[test]
fn launcher_signal_mask_and_dispositions_do_not_reach_the_daemon() {
    let _s = setup();
    let dir = TempDir::new("launch-signals");
    let rt = libc::SIGRTMIN() + 3;
    let blocked = [libc::SIGUSR1, libc::SIGTERM, libc::SIGCHLD, rt];
    let ignored = [libc::SIGUSR2, libc::SIGINT, libc::SIGQUIT];
    let caught = [libc::SIGHUP, libc::SIGALRM];
    let _restore = SignalState::save(&[&ignored[..], &caught[..]].concat());
    // SAFETY: changing this thread's mask and this process's dispositions (restored on drop;
    // the tests of this binary run one at a time).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in blocked {
            libc::sigaddset(&mut set, s);
        }
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()), 0);
        for s in ignored {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = libc::SIG_IGN;
            assert_eq!(libc::sigaction(s, &act, std::ptr::null_mut()), 0);
        }
        for s in caught {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
            assert_eq!(libc::sigaction(s, &act, std::ptr::null_mut()), 0);
        }
    }
    // glibc reserves 32 and 33 and its sigaction refuses them, but a process started by glibc's
    // posix_spawn (as cargo starts this test) has 32 ignored. Ignore both through the raw
    // system call, whoever started us; restored below.
    let _reserved = ReservedSignalsIgnored::set();
    let mine_before = fs::read_to_string("/proc/thread-self/status").unwrap();
    for s in blocked {
        assert_ne!(sig_field(&mine_before, "SigBlk") & sig_bit(s), 0, "setup: {s} not blocked");
    }
    for s in ignored.into_iter().chain([32, 33]) {
        assert_ne!(sig_field(&mine_before, "SigIgn") & sig_bit(s), 0, "setup: {s} not ignored");
    }
    for s in caught {
        assert_ne!(sig_field(&mine_before, "SigCgt") & sig_bit(s), 0, "setup: {s} not caught");
    }

    let out = File::create(dir.join("status")).unwrap();
    let mut cmd = Command::new("/bin/cat");
    cmd.arg("/proc/self/status").stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    let status = fs::read_to_string(dir.join("status")).unwrap();
    assert_eq!(sig_field(&status, "SigBlk"), 0, "signals blocked in the daemon");
    // (The Rust runtime of this very test ignores SIGPIPE too: that must not leak either.)
    assert_eq!(sig_field(&status, "SigIgn"), 0, "signals ignored in the daemon");
    assert_eq!(sig_field(&status, "SigCgt"), 0, "signals caught in cat?");

    // grep, as a second program, sees the same (it installs its own SIGSEGV handler only).
    let out = File::create(dir.join("grep")).unwrap();
    let mut cmd = Command::new("/bin/grep");
    cmd.args(["^Sig[BI]", "/proc/self/status"]).stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    assert_eq!(fs::read_to_string(dir.join("grep")).unwrap(), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");

    // The launcher's own mask and dispositions are as they were.
    let mine_after = fs::read_to_string("/proc/thread-self/status").unwrap();
    for field in ["SigBlk", "SigIgn", "SigCgt"] {
        assert_eq!(sig_field(&mine_after, field), sig_field(&mine_before, field), "launcher's {field} changed");
    }
}

static SIGNALS_HANDLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS_HANDLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Signals arriving at the launching thread during launches (handler without SA_RESTART, so
/// its blocking calls see EINTR) make no launch fail and reach no child.
#[test]
fn launches_survive_a_storm_of_signals_at_the_launching_thread() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let _s = setup();
    let _restore = SignalState::save(&[libc::SIGUSR1]);
    // SAFETY: installs a handler that only touches an atomic (restored on drop).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut()), 0);
    }
    let before = SIGNALS_HANDLED.load(Ordering::Relaxed);
    // SAFETY: pthread_self has no preconditions.
    let target = unsafe { libc::pthread_self() } as usize;
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: the target thread outlives this one (joined below before it returns).
                unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGUSR1) };
                sent += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            sent
        })
    };
    let mut outcome = Vec::new();
    for _ in 0..40 {
        let (r, w) = pipe();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo $$ >&3"]).pass_fds(&[w.as_raw_fd()]);
        let result = cmd.launch();
        drop(w);
        let said = String::from_utf8(common::read_to_end_fd(r.as_raw_fd())).unwrap();
        let exit = result.as_ref().ok().map(|l| Reaped::adopt(l.pid).wait());
        outcome.push((result, said, exit));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    for (result, said, exit) in outcome {
        let launched = result.expect("launch under signals");
        assert_eq!(said, format!("{}\n", launched.pid));
        assert_eq!(exit, Some(Exit::Code(0)));
    }
    let handled = SIGNALS_HANDLED.load(Ordering::Relaxed) - before;
    assert!(handled > 0, "no signal was handled ({sent} sent)");
    assert_eq!(children_of_self(), vec![]);
}

/// Several threads launching at once: each gets its own daemon's pid and its pipes' EOF (no
/// other launch keeps a copy of its descriptors for long), and no daemon inherits another's.
#[test]
fn concurrent_launches_from_several_threads() {
    let _s = setup();
    // The daemon reports its tag, its pid and how many descriptors `ls` sees in it.
    let once = |tag: &str| -> (i32, String) {
        let (r, w) = pipe();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", r#"echo "$1 $$ $(ls /proc/self/fd | wc -l)" >&3"#, "sh", tag]).pass_fds(&[w.as_raw_fd()]);
        let launched = cmd.launch().expect("launch");
        drop(w);
        let said = String::from_utf8(common::read_to_end_fd(r.as_raw_fd())).unwrap();
        assert_eq!(Reaped::adopt(launched.pid).wait(), Exit::Code(0));
        (launched.pid, said)
    };
    let (pid, said) = once("alone");
    let fd_count = said.strip_prefix(&format!("alone {pid} ")).expect("alone").trim_end().to_string();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let fd_count = fd_count.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let tag = format!("{t}.{i}");
                    let (pid, said) = once(&tag);
                    assert_eq!(said, format!("{tag} {pid} {fd_count}\n"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(children_of_self(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Working directory, umask, environment, arguments
// ---------------------------------------------------------------------------------------------

#[test]
fn current_dir_and_umask_are_applied_in_the_daemon_only() {
    let _s = setup();
    let dir = TempDir::new("launch-cwd");
    let work = dir.join("work dir");
    fs::create_dir(&work).unwrap();
    let cwd_before = std::env::current_dir().unwrap();
    let umask_before = common::current_umask();
    assert_ne!(umask_before, 0o027);

    let out = File::create(dir.join("out")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "pwd -P; umask; echo > created"])
        .current_dir(&work)
        .umask(0o027)
        .stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    let real_work = fs::canonicalize(&work).unwrap();
    assert_eq!(fs::read_to_string(dir.join("out")).unwrap(), format!("{}\n0027\n", real_work.display()));
    assert_eq!(fs::metadata(work.join("created")).unwrap().permissions().mode() & 0o777, 0o640);

    assert_eq!(std::env::current_dir().unwrap(), cwd_before, "launch changed the launcher's cwd");
    assert_eq!(common::current_umask(), umask_before, "launch changed the launcher's umask");

    // A relative working directory is taken from the launcher's.
    let out = File::create(dir.join("out2")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "pwd -P"]).current_dir(".").stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    assert_eq!(
        fs::read_to_string(dir.join("out2")).unwrap(),
        format!("{}\n", fs::canonicalize(&cwd_before).unwrap().display())
    );
}

#[test]
fn defaults_keep_the_launchers_cwd_umask_and_environment() {
    let _s = setup();
    let dir = TempDir::new("launch-defaults");
    let out = File::create(dir.join("out")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "pwd -P; umask"]).stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    let cwd = fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("out")).unwrap(),
        format!("{}\n{:04o}\n", cwd.display(), common::current_umask())
    );

    let out = File::create(dir.join("env")).unwrap();
    let mut cmd = Command::new("/usr/bin/env");
    cmd.stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    let mut got: Vec<Vec<u8>> = fs::read(dir.join("env")).unwrap().split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    assert_eq!(got.pop(), Some(vec![]));
    got.sort();
    let mut want: Vec<Vec<u8>> =
        std::env::vars_os().map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn env_list_replaces_the_environment() {
    let _s = setup();
    let dir = TempDir::new("launch-env");
    let out = File::create(dir.join("env")).unwrap();
    let mut cmd = Command::new("/usr/bin/env");
    cmd.env_list([("A", "1"), ("B", "two words"), ("EMPTY", ""), ("C", "x=y")]).stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    assert_eq!(fs::read_to_string(dir.join("env")).unwrap(), "A=1\nB=two words\nEMPTY=\nC=x=y\n");

    let out = File::create(dir.join("empty")).unwrap();
    let mut cmd = Command::new("/usr/bin/env");
    cmd.env_list(std::iter::empty::<(&str, &str)>()).stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    assert_eq!(fs::read_to_string(dir.join("empty")).unwrap(), "");
}

#[test]
fn bare_names_are_looked_up_on_the_daemons_path() {
    let _s = setup();
    let dir = TempDir::new("launch-path");
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    for d in [&a, &b, &c] {
        fs::create_dir(d).unwrap();
    }
    // a: a directory by that name; b: a file without execute permission; c: the program.
    fs::create_dir(a.join("dk-hello")).unwrap();
    fs::write(b.join("dk-hello"), "#!/bin/sh\necho wrong\n").unwrap();
    fs::set_permissions(b.join("dk-hello"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(c.join("dk-hello"), "#!/bin/sh\necho \"hi from $0\"\n").unwrap();
    fs::set_permissions(c.join("dk-hello"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}:{}", a.display(), b.display(), c.display());

    let out = File::create(dir.join("out")).unwrap();
    let mut cmd = Command::new("dk-hello");
    cmd.env_list([("PATH", path.as_str())]).stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    assert_eq!(fs::read_to_string(dir.join("out")).unwrap(), format!("hi from {}\n", c.join("dk-hello").display()));

    // Not on the daemon's PATH (even though it is on ours).
    let mut cmd = Command::new("sh");
    cmd.env_list([("PATH", a.to_str().unwrap())]);
    assert_eq!(cmd.launch().unwrap_err(), LaunchError::NotFound("sh".into()));
    let err = Command::new("daemonkit-no-such-program").launch().unwrap_err();
    assert_eq!(err, LaunchError::NotFound("daemonkit-no-such-program".into()));
    assert_eq!(err.to_string(), "command not found on PATH: daemonkit-no-such-program");
    // Found on the launcher's PATH by default.
    run(&Command::new("true"));
    assert_eq!(children_of_self(), vec![]);
}

#[test]
fn arg0_and_arguments_are_passed_verbatim() {
    let _s = setup();
    let dir = TempDir::new("launch-argv");
    let out = File::create(dir.join("cmdline")).unwrap();
    let mut cmd = Command::new("/bin/cat");
    cmd.arg0("my-daemon: worker").arg("/proc/self/cmdline").stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    assert_eq!(fs::read(dir.join("cmdline")).unwrap(), b"my-daemon: worker\0/proc/self/cmdline\0");

    let out = File::create(dir.join("args")).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", r#"for a in "$@"; do printf '<%s>' "$a"; done"#, "sh", "", "two words", "*", "$HOME", "\u{e9}"])
        .stdout(Stdio::Fd(out.as_raw_fd()));
    run(&cmd);
    assert_eq!(fs::read_to_string(dir.join("args")).unwrap(), "<><two words><*><$HOME><\u{e9}>");
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

fn expect_child_error(cmd: &Command, stage: Stage, errno: Errno) -> LaunchError {
    let started = Instant::now();
    let err = cmd.launch().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err, LaunchError::Child { stage, errno });
    reap_failed_daemon();
    err
}

#[test]
fn exec_failures_come_back_with_stage_and_errno() {
    let _s = setup();
    let dir = TempDir::new("launch-exec-fail");

    let err = expect_child_error(&Command::new("/nonexistent/daemonkit-program"), Stage::Exec, Errno::ENOENT);
    assert_eq!(err.to_string(), "exec failed: No such file or directory (2)");

    let plain = dir.join("not-executable");
    fs::write(&plain, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    expect_child_error(&Command::new(&plain), Stage::Exec, Errno::EACCES);

    expect_child_error(&Command::new(dir.path()), Stage::Exec, Errno::EACCES);

    let garbage = dir.join("garbage");
    fs::write(&garbage, b"\x01\x02\x03 not a program\n").unwrap();
    fs::set_permissions(&garbage, fs::Permissions::from_mode(0o755)).unwrap();
    expect_child_error(&Command::new(&garbage), Stage::Exec, Errno::ENOEXEC);

    let bad_interp = dir.join("bad-interpreter");
    fs::write(&bad_interp, "#!/nonexistent/interpreter\n").unwrap();
    fs::set_permissions(&bad_interp, fs::Permissions::from_mode(0o755)).unwrap();
    expect_child_error(&Command::new(&bad_interp), Stage::Exec, Errno::ENOENT);

    // A relative path with a slash is not looked up on PATH, and is relative to the cwd.
    expect_child_error(Command::new("./daemonkit-no-such-program").current_dir(dir.path()), Stage::Exec, Errno::ENOENT);
}

#[test]
fn chdir_and_descriptor_failures_come_back_with_their_stage() {
    let _s = setup();
    let dir = TempDir::new("launch-chdir-fail");
    let err =
        expect_child_error(Command::new("/bin/true").current_dir(dir.join("missing")), Stage::Chdir, Errno::ENOENT);
    assert_eq!(err.to_string(), "chdir failed: No such file or directory (2)");
    fs::write(dir.join("file"), b"").unwrap();
    expect_child_error(Command::new("/bin/true").current_dir(dir.join("file")), Stage::Chdir, Errno::ENOTDIR);

    let bad = free_fd_from(500);
    expect_child_error(Command::new("/bin/true").stdout(Stdio::Fd(bad)), Stage::Descriptors, Errno::EBADF);
    expect_child_error(Command::new("/bin/true").pass_fds(&[bad]), Stage::Descriptors, Errno::EBADF);
}

#[test]
fn nul_bytes_and_unknown_programs_fail_before_any_process_is_made() {
    let _s = setup();
    let nul = |s: &[u8]| OsStr::from_bytes(s).to_os_string();
    assert_eq!(Command::new(nul(b"/bin/e\0cho")).launch().unwrap_err(), LaunchError::NulByte("program"));
    assert_eq!(Command::new("/bin/echo").arg(nul(b"a\0b")).launch().unwrap_err(), LaunchError::NulByte("argument"));
    assert_eq!(
        Command::new("/bin/echo").env_list([("A", nul(b"x\0y"))]).launch().unwrap_err(),
        LaunchError::NulByte("environment")
    );
    assert_eq!(
        Command::new("/bin/echo").current_dir(nul(b"/tm\0p")).launch().unwrap_err(),
        LaunchError::NulByte("working directory")
    );
    assert_eq!(
        Command::new("daemonkit-no-such-program").launch().unwrap_err(),
        LaunchError::NotFound("daemonkit-no-such-program".into())
    );
    assert_eq!(children_of_self(), vec![]);
}
