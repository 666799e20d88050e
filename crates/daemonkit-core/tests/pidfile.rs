//! Integration tests of `daemonkit_core::pidfile` on real files, real `flock`s and real
//! processes (util-linux `flock`, `sh`, `sleep`).
//!
//! Every test takes the `serial()` lock: a process spawned by one test thread briefly holds a
//! copy of every descriptor of this process (between its fork and its exec), which would keep
//! another test's pidfile lock alive for an instant after that test dropped it.

// These tests need Linux: `/proc`, a child subreaper, Linux-only syscalls or util-linux tools.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{flock_n, serial, LockHolder, TempDir};
use daemonkit_core::pidfile::{self, parse_pid, probe, AcquireError, InvalidContent, PathProblem, Pidfile, Probe};

fn lstat_ino(path: &Path) -> (u64, u64) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.dev(), m.ino())
}

fn fstat_ino(fd: i32) -> (u64, u64) {
    // SAFETY: plain data written by fstat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd, &mut st), 0);
        (st.st_dev, st.st_ino)
    }
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread and fails the test (instead of hanging it) if it takes over 5 s.
fn within_5s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("{what} hung"))
}

// ---------------------------------------------------------------------------------------------
// acquire
// ---------------------------------------------------------------------------------------------

#[test]
fn acquire_creates_an_empty_0644_file_and_holds_an_exclusive_lock() {
    let _s = serial();
    let dir = TempDir::new("pid-acquire");
    let path = dir.join("app.pid");

    let pf = Pidfile::acquire(&path).expect("acquire");
    assert_eq!(pf.path(), path);
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.len(), 0);
    let umask = common::current_umask();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644 & !umask, "mode (umask {umask:o})");
    if umask == 0o022 {
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    }
    assert_eq!(fstat_ino(pf.as_raw_fd()), lstat_ino(&path));
    // The descriptor is close-on-exec: only an explicit hand-off passes it on.
    // SAFETY: F_GETFD on our descriptor.
    let fdflags = unsafe { libc::fcntl(pf.as_raw_fd(), libc::F_GETFD) };
    assert_ne!(fdflags & libc::FD_CLOEXEC, 0);

    // A second acquire, even from this process, opens a new open file description: refused.
    assert_eq!(Pidfile::acquire(&path).unwrap_err(), AcquireError::AlreadyRunning { pid: None });
    // Another process sees the lock.
    assert_ne!(flock_n(&path), 0, "flock -n succeeded while the pidfile was held");
    assert_eq!(probe(&path).unwrap(), Probe::RunningUnknownPid { content: InvalidContent::Empty });

    drop(pf);
    assert_eq!(flock_n(&path), 0, "flock -n failed after the pidfile was dropped");
    let again = Pidfile::acquire(&path).expect("acquire after drop");
    drop(again);
}

#[test]
fn write_pid_writes_exactly_the_pid_and_a_newline() {
    let _s = serial();
    let dir = TempDir::new("pid-write");
    let path = dir.join("app.pid");
    let pf = Pidfile::acquire(&path).unwrap();

    pf.write_pid(1234567).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"1234567\n");
    // A shorter pid replaces the longer one entirely (truncate, then write).
    pf.write_pid(42).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"42\n");
    assert_eq!(pidfile::read_pid_fd(pf.as_raw_fd()), Ok(42));

    // The free function does the same on any descriptor.
    pidfile::write_pid_fd(pf.as_raw_fd(), 31337).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"31337\n");
    pf.write_pid(std::process::id() as i32).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
}

#[test]
fn already_running_reports_the_pid_written() {
    let _s = serial();
    let dir = TempDir::new("pid-running");
    let path = dir.join("app.pid");
    let pf = Pidfile::acquire(&path).unwrap();
    // The pid written must be the lock holder's (this process) to count as running.
    let me = std::process::id() as i32;
    pf.write_pid(me).unwrap();
    let err = Pidfile::acquire(&path).unwrap_err();
    assert_eq!(err, AcquireError::AlreadyRunning { pid: Some(me) });
    assert_eq!(err.to_string(), format!("already running (pid {me})"));
    // The refused acquire did not touch the content.
    assert_eq!(fs::read(&path).unwrap(), format!("{me}\n").as_bytes());

    // Garbage in a locked file: running, pid unknown.
    fs::write(&path, b"1\n").unwrap();
    assert_eq!(Pidfile::acquire(&path).unwrap_err(), AcquireError::AlreadyRunning { pid: None });
    drop(pf);
}

#[test]
fn already_running_when_another_process_holds_the_lock() {
    let _s = serial();
    let dir = TempDir::new("pid-other");
    let path = dir.join("app.pid");
    fs::write(&path, b"").unwrap();
    let holder = LockHolder::hold(&path);
    let named = format!("{}\n", holder.child.id());
    fs::write(&path, &named).unwrap();
    let started = Instant::now();
    assert_eq!(Pidfile::acquire(&path).unwrap_err(), AcquireError::AlreadyRunning { pid: Some(holder.child.id() as i32) });
    assert!(started.elapsed() < Duration::from_secs(1), "acquire waited {:?}", started.elapsed());
    assert_eq!(fs::read(&path).unwrap(), named.as_bytes());
    drop(holder);
    let pf = Pidfile::acquire(&path).expect("acquire once the holder is gone");
    assert_eq!(fs::read(&path).unwrap(), b"");
    drop(pf);
}

#[test]
fn acquire_of_a_stale_unlocked_file_succeeds_and_truncates_it_in_place() {
    let _s = serial();
    let dir = TempDir::new("pid-stale");
    let path = dir.join("app.pid");
    // Only content that reads as a pid (or nothing): anything else is not a pidfile and is
    // refused (tests/holder.rs).
    for stale in [&b"4242\n"[..], b"1\n", b"-1\n", b"", b"77"] {
        fs::write(&path, stale).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let before = lstat_ino(&path);
        let pf = Pidfile::acquire(&path).expect("acquire stale");
        assert_eq!(fs::read(&path).unwrap(), b"", "not truncated");
        assert_eq!(lstat_ino(&path), before, "the file was replaced instead of reused");
        // An existing file keeps its mode.
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        pf.write_pid(99).unwrap();
        drop(pf);
    }
}

#[test]
fn acquire_refuses_a_dangling_symlink_without_creating_its_target() {
    let _s = serial();
    let dir = TempDir::new("pid-symlink-dangling");
    let path = dir.join("app.pid");
    let target = dir.join("elsewhere.pid");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    assert_eq!(Pidfile::acquire(&path).unwrap_err(), AcquireError::Unsafe(PathProblem::Symlink));
    assert!(!target.exists(), "the symlink was followed and its target created");
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    assert_eq!(probe(&path).unwrap(), Probe::Unsafe(PathProblem::Symlink));
    assert!(!target.exists());
}

#[test]
fn acquire_refuses_a_symlink_to_a_real_file_without_touching_it() {
    let _s = serial();
    let dir = TempDir::new("pid-symlink-real");
    let path = dir.join("app.pid");
    let target = dir.join("precious");
    fs::write(&target, b"do not truncate me\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();
    let before = fs::metadata(&target).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();

    let err = Pidfile::acquire(&path).unwrap_err();
    assert_eq!(err, AcquireError::Unsafe(PathProblem::Symlink));
    assert_eq!(err.to_string(), "the pidfile is a symbolic link, which is never followed");
    assert_eq!(probe(&path).unwrap(), Probe::Unsafe(PathProblem::Symlink));

    let after = fs::metadata(&target).unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"do not truncate me\n");
    assert_eq!(after.permissions().mode(), before.permissions().mode());
    assert_eq!((after.mtime(), after.mtime_nsec()), (before.mtime(), before.mtime_nsec()));
    assert_eq!(flock_n(&target), 0, "the target was left locked");

    // A symlink to a directory is refused the same way.
    let link_dir = dir.join("dir.pid");
    std::os::unix::fs::symlink(dir.path(), &link_dir).unwrap();
    assert_eq!(Pidfile::acquire(&link_dir).unwrap_err(), AcquireError::Unsafe(PathProblem::Symlink));
}

#[test]
fn acquire_and_probe_refuse_a_fifo_without_hanging() {
    let _s = serial();
    let dir = TempDir::new("pid-fifo");
    let path = dir.join("app.pid");
    mkfifo(&path);
    let p = path.clone();
    let err = within_5s("acquire on a FIFO", move || Pidfile::acquire(&p)).unwrap_err();
    assert_eq!(err, AcquireError::Unsafe(PathProblem::NotRegular("a FIFO")));
    assert_eq!(err.to_string(), "the pidfile is a FIFO, not a regular file");
    let p = path.clone();
    assert_eq!(
        within_5s("probe on a FIFO", move || probe(&p)).unwrap(),
        Probe::Unsafe(PathProblem::NotRegular("a FIFO"))
    );
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
}

#[test]
fn acquire_and_probe_refuse_a_directory_a_socket_and_a_device() {
    let _s = serial();
    let dir = TempDir::new("pid-notreg");
    let sub = dir.join("app.pid");
    fs::create_dir(&sub).unwrap();
    assert_eq!(Pidfile::acquire(&sub).unwrap_err(), AcquireError::Unsafe(PathProblem::NotRegular("a directory")));
    assert_eq!(probe(&sub).unwrap(), Probe::Unsafe(PathProblem::NotRegular("a directory")));
    assert!(fs::read_dir(&sub).unwrap().next().is_none());

    let sock = dir.join("sock.pid");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert_eq!(Pidfile::acquire(&sock).unwrap_err(), AcquireError::Unsafe(PathProblem::NotRegular("a socket")));
    assert_eq!(probe(&sock).unwrap(), Probe::Unsafe(PathProblem::NotRegular("a socket")));
    drop(listener);

    // Refused from lstat alone, before any open.
    assert_eq!(
        Pidfile::acquire("/dev/null").unwrap_err(),
        AcquireError::Unsafe(PathProblem::NotRegular("a character device"))
    );
    assert_eq!(probe("/dev/null").unwrap(), Probe::Unsafe(PathProblem::NotRegular("a character device")));
}

#[test]
fn acquire_reports_io_errors() {
    let _s = serial();
    let dir = TempDir::new("pid-io");
    let missing_parent = dir.join("no/such/dir/app.pid");
    assert!(matches!(
        Pidfile::acquire(&missing_parent).unwrap_err(),
        AcquireError::Io { errno: nix::errno::Errno::ENOENT, .. }
    ));
    let file = dir.join("file");
    fs::write(&file, b"").unwrap();
    let under_file = file.join("app.pid");
    assert!(matches!(
        Pidfile::acquire(&under_file).unwrap_err(),
        AcquireError::Io { errno: nix::errno::Errno::ENOTDIR, .. }
    ));
    assert_eq!(probe(&missing_parent).unwrap(), Probe::NotRunning { stale: None });
    assert_eq!(probe(&under_file).unwrap_err(), nix::errno::Errno::ENOTDIR);
    let nul = std::ffi::OsStr::from_bytes(b"a\0b");
    assert!(matches!(Pidfile::acquire(nul).unwrap_err(), AcquireError::Io { errno: nix::errno::Errno::EINVAL, .. }));
}

/// Whatever happens concurrently, a successful acquire returns a lock on the file the path names
/// at that moment (the previous holder may unlink it between our open and our lock).
#[test]
fn acquire_always_locks_the_file_the_path_names_while_holders_come_and_go() {
    let _s = serial();
    let dir = TempDir::new("pid-churn");
    let path = dir.join("app.pid");
    for round in 0..30 {
        let holder = Pidfile::acquire(&path).unwrap();
        holder.write_pid(1000 + round).unwrap();
        let p = path.clone();
        let contender = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Pidfile::acquire(&p) {
                    Ok(pf) => return pf,
                    Err(AcquireError::AlreadyRunning { .. }) if Instant::now() < deadline => continue,
                    Err(e) => panic!("contender: {e:?}"),
                }
            }
        });
        std::thread::sleep(Duration::from_micros(200 * (round as u64 % 10)));
        // The clean exit of a daemon: unlink while still holding the lock, then release.
        assert!(holder.remove().unwrap());
        drop(holder);
        let won = contender.join().unwrap();
        assert_eq!(fstat_ino(won.as_raw_fd()), lstat_ino(&path), "round {round}: locked an unlinked file");
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert!(won.remove().unwrap());
        drop(won);
    }
}

/// A status check (`probe`) takes a shared lock for an instant; `acquire` retries briefly so
/// that it does not report "already running" because of it.
#[test]
fn concurrent_probes_do_not_make_acquire_fail() {
    let _s = serial();
    let dir = TempDir::new("pid-probe-race");
    let path = dir.join("app.pid");
    fs::write(&path, b"").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (stop, path) = (stop.clone(), path.clone());
        std::thread::spawn(move || {
            let me = std::process::id() as i32;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match probe(&path).unwrap() {
                    Probe::NotRunning { .. } | Probe::Running { .. } | Probe::RunningUnknownPid { .. } => {}
                    // This process takes the lock again through a new descriptor 200 times in a
                    // row, and can do so between a probe's looks at the lock and at its fds, in
                    // each of its rounds on a loaded machine (no daemon re-locks like that). What
                    // is checked here is the acquires.
                    Probe::LockedByOther { named: Some(pid) } if pid == me => {}
                    other => panic!("probe: {other:?}"),
                }
                n += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
            n
        })
    };
    let mut failures = 0;
    for _ in 0..200 {
        match Pidfile::acquire(&path) {
            Ok(pf) => {
                pf.write_pid(std::process::id() as i32).unwrap();
                drop(pf);
            }
            Err(AcquireError::AlreadyRunning { .. }) => failures += 1,
            Err(e) => panic!("acquire: {e:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let probes = prober.join().unwrap();
    assert!(probes > 0);
    assert_eq!(failures, 0, "{failures} of 200 acquires failed because of {probes} concurrent probes");
}

#[test]
fn into_raw_fd_keeps_the_lock_and_from_raw_fd_takes_it_over() {
    let _s = serial();
    let dir = TempDir::new("pid-rawfd");
    let path = dir.join("app.pid");
    let pf = Pidfile::acquire(&path).unwrap();
    let fd = pf.into_raw_fd();
    assert_ne!(flock_n(&path), 0, "into_raw_fd released the lock");
    // SAFETY: `fd` came from into_raw_fd and is owned by nothing else.
    let back = unsafe { Pidfile::from_raw_fd(fd, &path) };
    let me = std::process::id() as i32;
    back.write_pid(me).unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::Running { pid: me });
    drop(back);
    assert!(!common::fd_is_open(fd));
    assert_eq!(flock_n(&path), 0);
}

// ---------------------------------------------------------------------------------------------
// parse_pid
// ---------------------------------------------------------------------------------------------

#[test]
fn parse_pid_is_strict() {
    use InvalidContent::*;
    let not = |s: &str| Err(NotAPid(s.to_string()));
    let table: Vec<(&[u8], Result<i32, InvalidContent>)> = vec![
        (b"123\n", Ok(123)),
        (b"2\n", Ok(2)),
        (b"4194304\n", Ok(4194304)),
        (b"2147483647\n", Ok(i32::MAX)),
        (b"", Err(Empty)),
        (b"0\n", Err(Reserved(0))),
        (b"1\n", Err(Reserved(1))),
        (b"-1\n", Err(Reserved(-1))),
        (b"-0\n", Err(Reserved(0))),
        (b"-4242\n", Err(Reserved(-4242))),
        (b"abc\n", not("abc\n")),
        (b"123", not("123")),
        (b"0123\n", not("0123\n")),
        (b"00\n", not("00\n")),
        (b"99999999999\n", Err(OutOfRange("99999999999".into()))),
        (b"2147483648\n", Err(OutOfRange("2147483648".into()))),
        (b"99999999999999999999\n", Err(OutOfRange("99999999999999999999".into()))),
        (b" 12\n", not(" 12\n")),
        (b"12 \n", not("12 \n")),
        (b"+12\n", not("+12\n")),
        (b"12\n\n", not("12\n\n")),
        (b"12\r\n", not("12\r\n")),
        (b"1 2\n", not("1 2\n")),
        (b"\n", not("\n")),
        (b"-\n", not("-\n")),
        (b"--1\n", not("--1\n")),
        (b"0x10\n", not("0x10\n")),
        (b"\xd9\xa1\xd9\xa2\n", not("\u{661}\u{662}\n")),
        (b"12\0\n", not("12\0\n")),
    ];
    for (input, expected) in table {
        assert_eq!(parse_pid(input), expected, "parse_pid({:?})", String::from_utf8_lossy(input));
    }
    // Display texts name the problem.
    assert_eq!(Empty.to_string(), "the pidfile is empty");
    assert_eq!(Reserved(1).to_string(), "the pidfile names pid 1, which is never a daemon");
}

// ---------------------------------------------------------------------------------------------
// probe
// ---------------------------------------------------------------------------------------------

#[test]
fn probe_without_a_file_is_not_running() {
    let _s = serial();
    let dir = TempDir::new("probe-missing");
    let path = dir.join("app.pid");
    assert_eq!(probe(&path).unwrap(), Probe::NotRunning { stale: None });
    assert!(!path.exists(), "probe created the file");
}

#[test]
fn probe_of_an_unlocked_file_is_not_running_whatever_it_says() {
    let _s = serial();
    let dir = TempDir::new("probe-stale");
    let path = dir.join("app.pid");
    // Our own pid names a live process: still not running, since nobody holds the lock.
    let me = std::process::id() as i32;
    let cases: Vec<(Vec<u8>, Result<i32, InvalidContent>)> = vec![
        (format!("{me}\n").into_bytes(), Ok(me)),
        (b"4242\n".to_vec(), Ok(4242)),
        (b"".to_vec(), Err(InvalidContent::Empty)),
        (b"1\n".to_vec(), Err(InvalidContent::Reserved(1))),
        (b"-1\n".to_vec(), Err(InvalidContent::Reserved(-1))),
        (b"abc\n".to_vec(), Err(InvalidContent::NotAPid("abc\n".into()))),
        (vec![b'7'; 100], Err(InvalidContent::TooLarge(100))),
    ];
    for (content, stale) in cases {
        fs::write(&path, &content).unwrap();
        assert_eq!(probe(&path).unwrap(), Probe::NotRunning { stale: Some(stale) });
        // probe neither changed nor kept locked the file.
        assert_eq!(fs::read(&path).unwrap(), content);
        assert_eq!(flock_n(&path), 0);
    }
}

#[test]
fn probe_is_running_while_another_process_holds_the_lock() {
    let _s = serial();
    let dir = TempDir::new("probe-flock");
    let path = dir.join("app.pid");
    fs::write(&path, b"").unwrap();
    let holder = LockHolder::hold(&path);
    let pid = holder.child.id() as i32;
    fs::write(&path, format!("{pid}\n")).unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::Running { pid });
    // Content changes are seen while the lock is held.
    fs::write(&path, b"").unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::RunningUnknownPid { content: InvalidContent::Empty });
    fs::write(&path, b"1\n").unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::RunningUnknownPid { content: InvalidContent::Reserved(1) });
    fs::write(&path, b"0042\n").unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::RunningUnknownPid { content: InvalidContent::NotAPid("0042\n".into()) });
    drop(holder);
    assert_eq!(probe(&path).unwrap(), Probe::NotRunning { stale: Some(Err(InvalidContent::NotAPid("0042\n".into()))) });
}

#[test]
fn probe_is_running_while_this_process_holds_the_pidfile() {
    let _s = serial();
    let dir = TempDir::new("probe-self");
    let path = dir.join("app.pid");
    let pf = Pidfile::acquire(&path).unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::RunningUnknownPid { content: InvalidContent::Empty });
    let me = std::process::id() as i32;
    pf.write_pid(me).unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::Running { pid: me });
    // probe's momentary shared lock did not disturb ours.
    assert_ne!(flock_n(&path), 0);
    drop(pf);
    assert_eq!(probe(&path).unwrap(), Probe::NotRunning { stale: Some(Ok(me)) });
}

// ---------------------------------------------------------------------------------------------
// remove_if_same
// ---------------------------------------------------------------------------------------------

#[test]
fn remove_unlinks_the_file_while_it_is_still_ours() {
    let _s = serial();
    let dir = TempDir::new("remove-same");
    let path = dir.join("app.pid");
    let pf = Pidfile::acquire(&path).unwrap();
    pf.write_pid(4242).unwrap();
    assert_eq!(pf.remove(), Ok(true));
    assert!(fs::symlink_metadata(&path).is_err());
    // Already gone: nothing to do.
    assert_eq!(pf.remove(), Ok(false));
    assert_eq!(pidfile::remove_if_same(&path, pf.as_raw_fd()), Ok(false));
    drop(pf);
}

#[test]
fn remove_leaves_alone_a_file_that_replaced_ours() {
    let _s = serial();
    let dir = TempDir::new("remove-replaced");
    let path = dir.join("app.pid");
    let pf = Pidfile::acquire(&path).unwrap();
    pf.write_pid(4242).unwrap();

    // Someone else's pidfile is renamed over ours.
    let other = dir.join("other.tmp");
    fs::write(&other, b"5555\n").unwrap();
    fs::rename(&other, &path).unwrap();
    assert_eq!(pf.remove(), Ok(false));
    assert_eq!(pidfile::remove_if_same(&path, pf.as_raw_fd()), Ok(false));
    assert_eq!(fs::read(&path).unwrap(), b"5555\n");

    // A symlink to our file at the path is not our file either.
    let ours = dir.join("ours.pid");
    let pf2 = Pidfile::acquire(&ours).unwrap();
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&ours, &path).unwrap();
    assert_eq!(pidfile::remove_if_same(&path, pf2.as_raw_fd()), Ok(false));
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    assert!(ours.exists());
    drop(pf);
    drop(pf2);
}

/// Whether `dir` is writable by others (as `/tmp` is): a symlink below it could be anyone's.
fn writable_by_others(dir: &Path) -> bool {
    fs::metadata(dir).unwrap().permissions().mode() & 0o002 != 0
}

#[test]
fn a_symlinked_directory_below_a_directory_others_can_write_to_is_never_followed() {
    let _s = serial();
    let dir = TempDir::new("pid-symdir");
    if !writable_by_others(&std::env::temp_dir()) {
        eprintln!("the temp directory is not writable by others: skipped");
        return;
    }
    let other = dir.join("other");
    fs::create_dir(&other).unwrap();
    let real = other.join("d.pid");
    let pf = Pidfile::acquire(&real).unwrap();
    pf.write_pid(std::process::id() as i32).unwrap();
    std::os::unix::fs::symlink(&other, dir.join("run")).unwrap();
    let via = dir.join("run").join("d.pid");
    let refused = PathProblem::UntrustedSymlink(dir.join("run"));

    assert_eq!(probe(&via).unwrap(), Probe::Unsafe(refused.clone()));
    assert_eq!(pidfile::remove_stale(&via).unwrap(), pidfile::StaleRemoval::Kept(refused.clone()));
    assert_eq!(Pidfile::acquire(&via).unwrap_err(), AcquireError::Unsafe(refused.clone()));
    assert!(!pidfile::remove_if_same(&via, pf.as_raw_fd()).unwrap(), "removed through the link");
    assert!(pidfile::verify_inherited_lock(pf.as_raw_fd(), &via).is_err());
    assert!(real.exists());
    assert!(refused.to_string().contains("symbolic link"));
    // The real path is unaffected.
    assert_eq!(probe(&real).unwrap(), Probe::Running { pid: std::process::id() as i32 });
    assert!(pf.remove().unwrap());
}

#[test]
fn a_symlinked_directory_nobody_else_could_have_planted_is_followed() {
    let _s = serial();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || writable_by_others(Path::new("/run")) {
        eprintln!("needs root and a /run only root can write to: skipped");
        return;
    }
    let dir = Path::new("/run").join(format!("daemonkit-test-symdir-{}", std::process::id()));
    fs::create_dir(&dir).unwrap();
    struct Gone<'a>(&'a Path);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(self.0);
        }
    }
    let _gone = Gone(&dir);
    fs::create_dir(dir.join("real")).unwrap();
    std::os::unix::fs::symlink("real", dir.join("run")).unwrap();
    let via = dir.join("run").join("d.pid");
    let pf = Pidfile::acquire(&via).unwrap();
    pf.write_pid(std::process::id() as i32).unwrap();
    assert_eq!(fs::read(dir.join("real").join("d.pid")).unwrap(), format!("{}\n", std::process::id()).into_bytes());
    assert_eq!(probe(&via).unwrap(), Probe::Running { pid: std::process::id() as i32 });
    assert!(pf.remove().unwrap());
    assert!(!dir.join("real").join("d.pid").exists());
}

#[test]
fn probe_reports_a_hard_linked_pidfile_as_unsafe() {
    let _s = serial();
    let dir = TempDir::new("pid-probe-hardlink");
    let path = dir.join("other.pid");
    let pf = Pidfile::acquire(&path).unwrap();
    pf.write_pid(std::process::id() as i32).unwrap();
    let link = dir.join("api.pid");
    fs::hard_link(&path, &link).unwrap();
    assert_eq!(probe(&link).unwrap(), Probe::Unsafe(PathProblem::HardLinked(2)));
    assert_eq!(probe(&path).unwrap(), Probe::Unsafe(PathProblem::HardLinked(2)));
    fs::remove_file(&link).unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::Running { pid: std::process::id() as i32 });
}
