//! Helpers shared by the integration tests: temporary directories, `/proc` parsing, other
//! processes holding `flock`s, and ownership of the processes a test starts (every one is
//! reaped by pid before the test ends).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A directory of its own under `std::env::temp_dir()`, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let path = std::env::temp_dir().join(format!("daemonkit-test-{tag}-{}-{n}-{nanos}", std::process::id()));
        // create_dir (not create_dir_all) fails if the name is taken: the directory is ours alone.
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Makes this test process the reaper of its orphaned descendants, once. Launched daemons are
/// orphaned by design; with this they become our children, which we can `waitpid` by pid
/// (PID 1 on this machine reaps late, which would leave them lingering as zombies).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: plain integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER: {}", std::io::Error::last_os_error());
    });
}

/// Serialises the tests of one binary that start processes or change process-wide state
/// (signal dispositions, descriptors at fixed numbers, the set of our children).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Prepares a test that launches daemons: serialised, this process their subreaper, and no
/// child left over by an earlier test.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn reaper_setup() -> MutexGuard<'static, ()> {
    let guard = serial();
    become_subreaper();
    assert_eq!(children_of_self(), vec![], "children left over before the test");
    guard
}

/// The fields of `/proc/PID/stat` the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: i32,
}

pub fn parse_stat(text: &str) -> ProcStat {
    let open = text.find('(').expect("stat: no '('");
    let close = text.rfind(')').expect("stat: no ')'");
    let pid = text[..open].trim().parse().expect("stat: pid");
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let num = |i: usize| rest[i].parse::<i32>().unwrap_or_else(|_| panic!("stat field {i} of {text:?}"));
    ProcStat {
        pid,
        comm,
        state: rest[0].chars().next().unwrap(),
        ppid: num(1),
        pgrp: num(2),
        session: num(3),
        tty_nr: num(4),
    }
}

pub fn read_stat(pid: i32) -> Option<ProcStat> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().map(|t| parse_stat(&t))
}

/// Every process whose parent is this process, with its state letter.
pub fn children_of_self() -> Vec<(i32, char)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if let Some(st) = read_stat(pid) {
            if st.ppid == me {
                out.push((pid, st.state));
            }
        }
    }
    out.sort();
    out
}

/// A field of a `/proc/.../status` text, e.g. `"SigBlk"`.
pub fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {name} in status"))
        .trim()
        .to_string()
}

/// This process's umask, read without changing it.
pub fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    u32::from_str_radix(&status_field(&status, "Umask"), 8).unwrap()
}

/// The descriptor flags of the open file description behind our `fd` (`/proc/self/fdinfo`).
pub fn fdinfo_flags(pid: i32, fd: RawFd) -> u32 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    u32::from_str_radix(&status_field(&text, "flags"), 8).unwrap()
}

pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD takes a plain integer.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// How a process ended, decoded from a wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

pub fn decode(status: libc::c_int) -> Exit {
    if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        panic!("unexpected wait status {status:#x}")
    }
}

/// A process that must be a child of this one (directly, or adopted as subreaper). It is
/// reaped by pid; on drop, if not reaped yet, it is killed by pid and reaped. Since it is our
/// unreaped child, its pid cannot have been recycled, so the kill can only reach it.
pub struct Reaped {
    pub pid: i32,
    status: Option<libc::c_int>,
}

impl Reaped {
    pub fn adopt(pid: i32) -> Reaped {
        assert!(pid > 1, "bad pid {pid}");
        Reaped { pid, status: None }
    }

    fn is_our_unreaped_child(&self) -> bool {
        // SAFETY: siginfo is plain data; WNOWAIT leaves the child waitable.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG | libc::WNOWAIT,
            ) == 0
        }
    }

    /// Reaps the process if it has exited; `None` if it still runs.
    pub fn try_wait(&mut self) -> Option<Exit> {
        if let Some(s) = self.status {
            return Some(decode(s));
        }
        loop {
            let mut status = 0;
            // SAFETY: waits for our child `pid`; `status` is a valid out-pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                self.status = Some(status);
                return Some(decode(status));
            }
            if rc == 0 {
                return None;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            panic!("waitpid({}): {err} (is it our child?)", self.pid);
        }
    }

    /// Waits up to `timeout` for the process to exit, and reaps it. Panics on timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Exit {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_wait() {
                return exit;
            }
            assert!(Instant::now() < deadline, "pid {} did not exit within {timeout:?}", self.pid);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn wait(&mut self) -> Exit {
        self.wait_timeout(Duration::from_secs(20))
    }

    /// SIGKILL by pid (only while it is our unreaped child), then reap.
    pub fn kill_and_reap(&mut self) -> Exit {
        if self.status.is_none() {
            assert!(self.is_our_unreaped_child(), "pid {} is not our child", self.pid);
            // SAFETY: plain integer arguments; the pid is our unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        self.wait()
    }

    pub fn is_reaped(&self) -> bool {
        self.status.is_some()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.status.is_none() && self.is_our_unreaped_child() {
            // SAFETY: as in kill_and_reap.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut status = 0;
                while libc::waitpid(self.pid, &mut status, 0) < 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {}
            }
        }
    }
}

/// Reads everything from `fd` until EOF (the caller keeps ownership of `fd`).
pub fn read_to_end_fd(fd: RawFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            panic!("read: {err}");
        }
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// Exit code of util-linux `flock -n PATH true`: 0 if the lock was free, non-zero if held.
pub fn flock_n(path: &Path) -> i32 {
    let status = Command::new("flock")
        .arg("-n")
        .arg(path)
        .arg("true")
        .stdin(Stdio::null())
        .status()
        .expect("run util-linux flock");
    status.code().expect("flock killed by a signal")
}

/// Whether a fresh `flock -n` on `path` fails (someone holds the lock).
pub fn locked(path: &Path) -> bool {
    flock_n(path) != 0
}

/// Runs `/bin/sh -c script path args…` with its stdout piped, and returns it with the first
/// line it printed (it prints one once it holds its lock).
fn spawn_locker(script: &str, path: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn lock holder");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

/// A separate process holding an exclusive `flock` on a file: `sh` opens the file at fd 9,
/// `flock -n 9` locks that open file description, then `sh` execs `sleep` (one process, still
/// holding fd 9). Killed and reaped by pid on drop.
pub struct LockHolder {
    pub child: Child,
}

impl LockHolder {
    pub fn hold(path: &Path) -> LockHolder {
        let (child, line) = spawn_locker(r#"exec 9<"$0" || exit 2; flock -n 9 || exit 3; echo locked; exec sleep 30"#, path, &[]);
        let holder = LockHolder { child };
        assert_eq!(line, "locked\n", "the lock holder failed to lock {}", path.display());
        holder
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sh` opens `path` at fd 9, locks it with util-linux `flock MODE 9` (waiting for an earlier
/// holder that is still dying), then forks `sleep` (which inherits fd 9, sharing the open file
/// description) and waits. Holds the child and the pids of the shell (the locker) and of the
/// sleep (an inheritor); both are killed on drop.
pub struct Holders {
    child: Child,
    pub shell: i32,
    pub inheritor: i32,
}

impl Holders {
    pub fn hold(path: &Path, mode: &str) -> Holders {
        let (child, line) = spawn_locker(r#"exec 9<"$0" || exit 2; flock -w 10 "$1" 9 || exit 3; sleep 30 & echo "$$ $!"; wait"#, path, &[mode]);
        let mut pids = line.split_whitespace().map(|p| p.parse::<i32>().expect("a pid"));
        let (shell, inheritor) = (pids.next().expect("shell pid"), pids.next().expect("sleep pid"));
        Holders { child, shell, inheritor }
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        // SAFETY: plain integer arguments; the sleep is our child's child, alive until killed
        // here (its parent waits for it), so the pid cannot have been recycled.
        unsafe { libc::kill(self.inheritor, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
