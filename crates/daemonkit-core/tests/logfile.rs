//! `logfile::open_append` on hostile paths, and `logfile::Appender` when writes fail.

mod common;

use std::ffi::CString;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::TempDir;
use daemonkit_core::launch::Credentials;
use daemonkit_core::logfile::{self, Appender, LogProblem, OpenError};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn creates_a_missing_file_for_append_with_mode_0640() {
    let _serial = serial();
    let dir = TempDir::new("logfile-create");
    let path = dir.join("app.log");
    std::fs::write(&path, "first\n").unwrap();
    let fd = logfile::open_append(&path, None).unwrap();
    // SAFETY: writes a valid buffer to a descriptor we own.
    assert_eq!(unsafe { libc::write(fd.as_raw_fd(), b"second\n".as_ptr() as *const libc::c_void, 7) }, 7);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
    // SAFETY: F_GETFD / F_GETFL on a descriptor we own.
    let (fd_flags, fl) = unsafe { (libc::fcntl(fd.as_raw_fd(), libc::F_GETFD), libc::fcntl(fd.as_raw_fd(), libc::F_GETFL)) };
    assert_ne!(fd_flags & libc::FD_CLOEXEC, 0, "close-on-exec");
    assert_eq!(fl & libc::O_NONBLOCK, 0, "blocking writes");
    assert_ne!(fl & libc::O_APPEND, 0, "append");

    let fresh = dir.join("fresh.log");
    drop(logfile::open_append(&fresh, None).unwrap());
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "at most 0640, got {mode:o}");
}

#[test]
fn refuses_symlinks_hard_links_fifos_and_directories_without_touching_them() {
    let _serial = serial();
    let dir = TempDir::new("logfile-refuse");
    let target = dir.join("target");
    std::fs::write(&target, "untouched\n").unwrap();
    let link = dir.join("link.log");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dangling = dir.join("dangling.log");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    let hard = dir.join("hard.log");
    std::fs::hard_link(&target, &hard).unwrap();
    let fifo = dir.join("fifo.log");
    let c = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is NUL-terminated.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    assert_eq!(logfile::open_append(&link, None).unwrap_err(), OpenError::Unsafe(LogProblem::Symlink));
    assert_eq!(logfile::open_append(&dangling, None).unwrap_err(), OpenError::Unsafe(LogProblem::Symlink));
    assert!(!dir.join("nowhere").exists(), "nothing created where the dangling link points");
    assert_eq!(logfile::open_append(&hard, None).unwrap_err(), OpenError::Unsafe(LogProblem::HardLinked(2)));
    let started = Instant::now();
    assert_eq!(logfile::open_append(&fifo, None).unwrap_err(), OpenError::Unsafe(LogProblem::FifoWithoutReader));
    assert!(started.elapsed() < Duration::from_secs(10), "a FIFO without a reader does not block the open");
    assert_eq!(logfile::open_append(dir.path(), None).unwrap_err().errno(), daemonkit_core::Errno::EISDIR);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    // A character device is a fine log.
    assert!(logfile::open_append("/dev/null", None).is_ok());
}

#[test]
fn as_root_a_directory_the_service_user_owns_is_written_as_that_user() {
    let _serial = serial();
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = TempDir::new("logfile-user");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let logdir = dir.join("logdir");
    std::fs::create_dir(&logdir).unwrap();
    std::os::unix::fs::chown(&logdir, Some(65534), Some(65534)).unwrap();
    let nobody = Credentials { uid: 65534, gid: 65534, groups: vec![65534] };

    let log = logdir.join("app.log");
    drop(logfile::open_append(&log, Some(&nobody)).unwrap());
    assert_eq!(std::fs::metadata(&log).unwrap().uid(), 65534, "created with the service user's credentials");
    // This thread's credentials are untouched.
    // SAFETY: no preconditions.
    assert_eq!(unsafe { (libc::geteuid(), libc::getegid()) }, (0, 0));

    // The user links its log to a file of root's: refused, not followed.
    let secret = dir.join("secret");
    std::fs::write(&secret, "root only\n").unwrap();
    std::fs::remove_file(&log).unwrap();
    std::os::unix::fs::symlink(&secret, &log).unwrap();
    assert_eq!(logfile::open_append(&log, Some(&nobody)).unwrap_err(), OpenError::Unsafe(LogProblem::Symlink));
    // Root alone (no service user) refuses the directory outright.
    assert!(matches!(
        logfile::open_append(logdir.join("other.log"), None).unwrap_err(),
        OpenError::Unsafe(LogProblem::InsecureDirectory(_))
    ));
    // A directory on the way replaced by a link to a root-only one: the user cannot write there.
    let root_only = dir.join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&root_only, logdir.join("sub")).unwrap();
    std::os::unix::fs::lchown(logdir.join("sub"), Some(65534), Some(65534)).unwrap();
    let err = logfile::open_append(logdir.join("sub").join("app.log"), Some(&nobody)).unwrap_err();
    assert_eq!(err.errno(), daemonkit_core::Errno::EACCES, "{err}");
    assert_eq!(std::fs::read_dir(&root_only).unwrap().count(), 0);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only\n");
}

#[test]
fn failed_writes_lose_whole_lines_and_one_notice_counts_them() {
    let _serial = serial();
    let dir = TempDir::new("logfile-loss");
    // /dev/full fails every write with ENOSPC, like a full disk.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap().into_raw_fd();
    let mut out = Appender::new(full);
    out.write(b"a1\na2\npart");
    out.write(b"ial\nb1\n");
    let loss = out.loss().expect("a loss");
    assert_eq!((loss.lines, loss.bytes, loss.errno), (4, 17, libc::ENOSPC));
    out.write(b"still lost\n");

    // Room again: the same descriptor now leads to a regular file (as after a reopen).
    let path = dir.join("app.log");
    let file = std::fs::File::create(&path).unwrap();
    // SAFETY: dup2 onto a descriptor we own.
    assert!(unsafe { libc::dup2(file.as_raw_fd(), full) } >= 0);
    out.reset();
    out.write(b"c1\nc2\n");
    out.write(b"c3\n");
    assert_eq!(out.loss(), None);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, "daemonkit-supervise: 5 lines (28 bytes) of output were lost: No space left on device\nc1\nc2\nc3\n");
    // SAFETY: closes the descriptor we own.
    unsafe { libc::close(full) };
}

#[test]
fn a_line_cut_short_is_taken_back_out_of_the_file() {
    let _serial = serial();
    let dir = TempDir::new("logfile-torn");
    let path = dir.join("app.log");
    let file = std::fs::OpenOptions::new().append(true).create(true).open(&path).unwrap();
    let mut out = Appender::new(file.as_raw_fd());
    // A file size limit stands in for a full disk: writes stop at byte 20, mid-line.
    // SAFETY: plain data and process-wide settings, restored below; SIGXFSZ would end the process.
    let saved = unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut saved: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_FSIZE, &mut saved);
        let limited = libc::rlimit { rlim_cur: 20, rlim_max: saved.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limited), 0);
        saved
    };
    out.write(b"line 01\nline 02\nli");
    out.write(b"ne 03\nline 04\n");
    let loss = out.loss();
    // SAFETY: restores the limit read above.
    unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &saved) };
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 01\nline 02\n", "the piece of line 03 was taken back");
    let loss = loss.expect("a loss");
    assert_eq!((loss.lines, loss.bytes, loss.errno), (2, 16, libc::EFBIG));
    out.write(b"line 05\n");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "line 01\nline 02\ndaemonkit-supervise: 2 lines (16 bytes) of output were lost: File too large\nline 05\n"
    );
}

/// The tests of this file run one at a time: one of them limits the size of every file the
/// process writes.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_fifo_with_a_reader_is_a_fine_log() {
    let _serial = serial();
    let dir = TempDir::new("logfile-fifo-reader");
    let fifo = dir.join("fifo.log");
    let c = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is NUL-terminated.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // SAFETY: `c` is NUL-terminated; a non-blocking read end opens at once.
    let reader = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert!(reader >= 0);
    let fd = logfile::open_append(&fifo, None).unwrap();
    // SAFETY: writes a valid buffer; reads into a valid buffer.
    unsafe {
        assert_eq!(libc::write(fd.as_raw_fd(), b"hi\n".as_ptr() as *const libc::c_void, 3), 3);
        let mut buf = [0u8; 8];
        assert_eq!(libc::read(reader, buf.as_mut_ptr() as *mut libc::c_void, 8), 3);
        libc::close(reader);
    }
}

#[test]
fn dev_stdout_and_other_links_nobody_else_could_have_made_are_followed() {
    let _serial = serial();
    let meta = std::fs::symlink_metadata("/dev/stdout");
    if !meta.is_ok_and(|m| m.file_type().is_symlink() && m.uid() == 0) {
        eprintln!("skipped: /dev/stdout is not root's symbolic link here");
        return;
    }
    // Our fd 1 is whatever cargo gave us (a pipe, a file, a terminal): all fine.
    let fd = logfile::open_append("/dev/stdout", None).unwrap();
    let st = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    let one = std::fs::metadata("/proc/self/fd/1").unwrap();
    assert_eq!((st.dev(), st.ino()), (one.dev(), one.ino()), "/dev/stdout opened our stdout");
    assert!(logfile::open_append("/dev/stderr", None).is_ok());
}

/// Sets a `fs.protected_*` sysctl for the life of the guard.
struct Sysctl(&'static str, String);

impl Sysctl {
    fn set(name: &'static str, value: &str) -> Option<Sysctl> {
        let path = format!("/proc/sys/fs/{name}");
        let old = std::fs::read_to_string(&path).ok()?;
        std::fs::write(&path, value).ok()?;
        Some(Sysctl(name, old))
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("/proc/sys/fs/{}", self.0), self.1.trim());
    }
}

#[test]
fn a_dangling_link_another_user_planted_in_a_sticky_directory_is_refused_as_a_link() {
    let _serial = serial();
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = TempDir::new("logfile-sticky-link");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let link = dir.join("app.log");
    let planted = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ln", "-s"])
        .arg(dir.join("nowhere"))
        .arg(&link)
        .status();
    if !planted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: setpriv (util-linux) is missing");
        return;
    }
    // The default on most systems, which makes the kernel answer EACCES rather than ELOOP.
    let _guard = Sysctl::set("protected_symlinks", "1");
    let err = logfile::open_append(&link, None).unwrap_err();
    assert_eq!(err, OpenError::Unsafe(LogProblem::Symlink));
    assert!(!dir.join("nowhere").exists());
}
