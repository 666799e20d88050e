//! Pidfiles locked with `flock`.
//!
//! A pidfile holds the daemon's decimal pid and a newline. Whether the daemon runs is decided by
//! the lock, never by the pid: the daemon holds an exclusive `flock` on the file for its whole
//! life (the lock belongs to the open file description, so it survives fork and execve and is
//! released only when the last descriptor to it closes, whatever way the process ends). A pid
//! read from a file nobody locks is history, and may by now name an unrelated process.
//!
//! Paths are opened with `O_NOFOLLOW | O_NONBLOCK` and checked to be regular files, so a symlink,
//! FIFO, directory or device planted at the path is refused without being followed, blocking or
//! being read.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::holder::Holder;

/// The largest pidfile content read; a pid and a newline fit many times over.
const MAX_CONTENT: usize = 64;

/// How often `acquire` retries a lock that is held, to ride out a reader's momentary probe.
const BUSY_RETRIES: u32 = 5;

/// How often a lock held by someone other than the named process is looked at again before it
/// is reported as such: the named daemon may be exiting, its lock about to be released.
const HOLDER_ROUNDS: u32 = 3;

/// Why a pidfile's content was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidContent {
    /// The file is empty.
    Empty,
    /// The file is larger than any pid and newline.
    TooLarge(u64),
    /// The content is not a decimal number followed by a newline.
    NotAPid(String),
    /// The number is 0, 1 or negative: never a daemon's pid, and dangerous to signal.
    Reserved(i64),
    /// The number is larger than any pid.
    OutOfRange(String),
}

impl fmt::Display for InvalidContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidContent::Empty => f.write_str("the pidfile is empty"),
            InvalidContent::TooLarge(n) => write!(f, "the pidfile is {n} bytes long, too large for a pid"),
            InvalidContent::NotAPid(s) => write!(f, "the pidfile does not hold a pid and a newline: {s:?}"),
            InvalidContent::Reserved(n) => write!(f, "the pidfile names pid {n}, which is never a daemon"),
            InvalidContent::OutOfRange(s) => write!(f, "the pidfile names {s}, out of the range of pids"),
        }
    }
}

/// Why a path cannot be used as a pidfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    /// The path is a symbolic link (never followed).
    Symlink,
    /// The path names something other than a regular file: `"a directory"`, `"a FIFO"`, …
    NotRegular(&'static str),
    /// Root was asked to use a pidfile in a directory that others may write to (without the
    /// sticky bit): anyone could replace the file between two looks.
    InsecureDirectory,
    /// Root was asked to use a pidfile owned by another user (uid given), who could have put
    /// anything in it.
    ForeignOwner(u32),
    /// The file has other names (hard links; the count is given): writing it would change
    /// another file, so it is never written, truncated or removed.
    HardLinked(u64),
    /// The file holds something other than a pid (its size is given): it is not a pidfile and
    /// is never written, truncated or removed.
    NotAPidfile(u64),
    /// The path to the pidfile's directory goes through this symbolic link, which sits below a
    /// directory that users other than the caller (and root) can change: it is not followed.
    UntrustedSymlink(PathBuf),
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::Symlink => f.write_str("the pidfile is a symbolic link, which is never followed"),
            PathProblem::NotRegular(kind) => write!(f, "the pidfile is {kind}, not a regular file"),
            PathProblem::InsecureDirectory => {
                f.write_str("the pidfile's directory is writable by others and not sticky, which root refuses")
            }
            PathProblem::ForeignOwner(uid) => write!(f, "the pidfile is owned by uid {uid}, which root refuses"),
            PathProblem::HardLinked(n) => {
                write!(f, "the file has {n} hard links, so it is not a pidfile of its own; it is left untouched")
            }
            PathProblem::NotAPidfile(size) => {
                write!(f, "the file is not a pidfile ({size} bytes that are not a pid); it is left untouched")
            }
            PathProblem::UntrustedSymlink(link) => write!(
                f,
                "the path goes through the symbolic link {}, which others could have planted (a directory on the way can be changed by other users); it is not followed",
                link.display()
            ),
        }
    }
}

/// Why [`Pidfile::acquire`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireError {
    /// Another process holds the lock. `pid` is what the file names, when it holds a valid pid
    /// (a daemon being launched right now may not have written it yet).
    AlreadyRunning {
        /// The running daemon's pid, if the file names one.
        pid: Option<i32>,
    },
    /// Another process holds the lock, but not the process the file names (`named`), or only
    /// shared locks are held (a daemon always holds an exclusive one): someone else locked the
    /// file. Nothing is known about a daemon.
    LockedByOther {
        /// The pid the file names, if it names a valid one.
        named: Option<i32>,
    },
    /// The path is not usable as a pidfile.
    Unsafe(PathProblem),
    /// The path kept being replaced while it was being locked.
    Unstable,
    /// A system call failed.
    Io {
        /// What was being done, e.g. `"open"`.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::AlreadyRunning { pid: Some(pid) } => write!(f, "already running (pid {pid})"),
            AcquireError::AlreadyRunning { pid: None } => f.write_str("already running (starting up, pid not yet written)"),
            AcquireError::LockedByOther { named } => f.write_str(&locked_by_other(*named)),
            AcquireError::Unsafe(p) => p.fmt(f),
            AcquireError::Unstable => f.write_str("the pidfile path kept changing while it was being locked"),
            AcquireError::Io { op, errno } => write!(f, "{op} failed: {}", errno.desc()),
        }
    }
}

impl std::error::Error for AcquireError {}

/// What a pidfile says about its daemon, as judged by its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The lock is held by the process the file names (proven on Linux, see [`crate::holder`]).
    Running {
        /// The daemon's pid.
        pid: i32,
    },
    /// The lock is held and the file names this pid, but whether that process holds the lock
    /// cannot be checked: its descriptors are unreadable to us (`errno`, e.g. `EACCES` for
    /// another user's process), or the platform offers no proof (`errno` is `None`).
    RunningUnverified {
        /// The pid the file names.
        pid: i32,
        /// Why it could not be checked; `None` where the platform has no way to.
        errno: Option<Errno>,
    },
    /// The lock is held, but not by the process the file names (`named`, which may not even
    /// exist), or only shared locks are held (a daemon always holds an exclusive one): someone
    /// else locked the file. Never act on it.
    LockedByOther {
        /// The pid the file names, if it names a valid one.
        named: Option<i32>,
    },
    /// The lock is held but the file holds no valid pid yet (a daemon is starting), or holds
    /// garbage. Never act on it.
    RunningUnknownPid {
        /// What is wrong with the content.
        content: InvalidContent,
    },
    /// Nobody holds the lock: not running. `stale` is what the file said, if it exists.
    NotRunning {
        /// `None` if there is no file; else the pid it names, or why its content is invalid.
        stale: Option<Result<i32, InvalidContent>>,
    },
    /// The path is not a pidfile that can be trusted.
    Unsafe(PathProblem),
}

/// Parses pidfile content strictly: a decimal pid greater than 1 and one newline.
pub fn parse_pid(content: &[u8]) -> Result<i32, InvalidContent> {
    if content.is_empty() {
        return Err(InvalidContent::Empty);
    }
    let text = String::from_utf8_lossy(content).into_owned();
    let digits = content.strip_suffix(b"\n").ok_or_else(|| InvalidContent::NotAPid(text.clone()))?;
    let (negative, magnitude) = match digits.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, digits),
    };
    if magnitude.is_empty() || !magnitude.iter().all(u8::is_ascii_digit) {
        return Err(InvalidContent::NotAPid(text));
    }
    if magnitude.len() > 1 && magnitude[0] == b'0' {
        return Err(InvalidContent::NotAPid(text));
    }
    let shown = String::from_utf8_lossy(digits).into_owned();
    let value: i64 = match shown.parse() {
        Ok(v) => v,
        Err(_) => return Err(if negative { InvalidContent::Reserved(i64::MIN) } else { InvalidContent::OutOfRange(shown) }),
    };
    if value <= 1 {
        return Err(InvalidContent::Reserved(value));
    }
    i32::try_from(value).map_err(|_| InvalidContent::OutOfRange(shown))
}

pub(crate) fn c_path(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

pub(crate) fn kind_of(mode: libc::mode_t) -> Option<&'static str> {
    match mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFDIR => Some("a directory"),
        libc::S_IFIFO => Some("a FIFO"),
        libc::S_IFSOCK => Some("a socket"),
        libc::S_IFCHR => Some("a character device"),
        libc::S_IFBLK => Some("a block device"),
        libc::S_IFLNK => Some("a symbolic link"),
        _ => Some("not a regular file"),
    }
}

pub(crate) fn lstat(path: &CString) -> Result<libc::stat, Errno> {
    // SAFETY: `st` is plain data written by lstat; `path` is NUL-terminated.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        Errno::result(libc::lstat(path.as_ptr(), &mut st)).map(|_| st)
    }
}

pub(crate) fn fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    // SAFETY: `st` is plain data written by fstat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        Errno::result(libc::fstat(fd, &mut st)).map(|_| st)
    }
}

/// How directories on a pidfile's path are opened: only to walk through them.
#[cfg(linux_like)]
const DIR_FLAGS: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
#[cfg(not(linux_like))]
const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// The most symbolic links followed on one path (as the kernel's own limit).
const MAX_SYMLINKS: u32 = 40;

/// Whether a directory (or link) could only have been changed by root or by `euid`: owned by
/// one of them and writable by nobody else. A sticky directory writable by others does not
/// count, since anyone can create a link in it.
pub(crate) fn trusted(st: &libc::stat, euid: u32) -> bool {
    (st.st_uid == 0 || st.st_uid == euid) && st.st_mode & (libc::S_IWGRP | libc::S_IWOTH) == 0
}

/// A pidfile's directory, opened by walking the path one component at a time, and the file's
/// name in it. Every later look at the file goes through the directory descriptor, so a
/// directory on the path swapped for a symlink afterwards changes nothing.
pub(crate) struct Located {
    dir: OwnedFd,
    name: CString,
}

impl Located {
    /// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
    fn lstat(&self) -> Result<libc::stat, Errno> {
        // SAFETY: `st` is plain data written by fstatat; `name` is NUL-terminated.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            Errno::result(libc::fstatat(self.dir.as_raw_fd(), self.name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW))
                .map(|_| st)
        }
    }

    /// `unlinkat(dir, name, 0)`.
    fn unlink(&self) -> Result<(), Errno> {
        // SAFETY: `name` is NUL-terminated; the directory descriptor is open.
        Errno::result(unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) }).map(drop)
    }

    /// `openat(dir, name, flags, 0644)`.
    fn open(&self, flags: libc::c_int) -> Result<OwnedFd, Errno> {
        // SAFETY: `name` is NUL-terminated; the mode argument is read only with O_CREAT.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), self.name.as_ptr(), flags, 0o644 as libc::c_uint) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn open_dir_at(dir: RawFd, name: &CString) -> Result<OwnedFd, Errno> {
    // SAFETY: `name` is NUL-terminated; no O_CREAT, so no mode is read.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), DIR_FLAGS) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn readlink_at(dir: RawFd, name: &CString) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: `buf` has room for buf.len() bytes; `name` is NUL-terminated.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if n < 0 {
        return Err(Errno::last());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn components_of(path: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").map(<[u8]>::to_vec)
}

/// Opens the directory of the pidfile at `path` without trusting symbolic links others could
/// have planted: the path is walked one component at a time from `/` (relative paths start at
/// the current directory's absolute path); a symbolic link is followed only while every
/// directory reached so far (and the link) belongs to root or to the caller and is writable by
/// nobody else, otherwise it is refused with [`PathProblem::UntrustedSymlink`].
pub(crate) fn locate(path: &Path) -> Result<Located, AcquireError> {
    let io = |op: &'static str| move |errno| AcquireError::Io { op, errno };
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| io("getcwd")(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?.join(path)
    };
    let bytes = abs.as_os_str().as_bytes();
    let name = match components_of(bytes).last() {
        Some(n) if !bytes.ends_with(b"/") && n != b".." => n,
        _ => return Err(AcquireError::Unsafe(PathProblem::NotRegular("a directory"))),
    };
    let name = CString::new(name).map_err(|_| io("open")(Errno::EINVAL))?;
    let mut pending: std::collections::VecDeque<Vec<u8>> = components_of(bytes).collect();
    pending.pop_back();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let root = CString::new("/").expect("no NUL");
    let mut cur = open_dir_at(libc::AT_FDCWD, &root).map_err(io("open"))?;
    let mut safe = trusted(&fstat(cur.as_raw_fd()).map_err(io("fstat"))?, euid);
    let mut walked = PathBuf::from("/");
    let mut links = 0;
    while let Some(comp) = pending.pop_front() {
        let c = CString::new(comp.clone()).map_err(|_| io("open")(Errno::EINVAL))?;
        // SAFETY: `st` is plain data written by fstatat; `c` is NUL-terminated.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            Errno::result(libc::fstatat(cur.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW)).map(|_| st)
        }
        .map_err(io("stat"))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            if !safe || !(st.st_uid == 0 || st.st_uid == euid) {
                return Err(AcquireError::Unsafe(PathProblem::UntrustedSymlink(walked.join(std::ffi::OsStr::from_bytes(&comp)))));
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io("open")(Errno::ELOOP));
            }
            let target = readlink_at(cur.as_raw_fd(), &c).map_err(io("readlink"))?;
            if target.starts_with(b"/") {
                cur = open_dir_at(libc::AT_FDCWD, &root).map_err(io("open"))?;
                safe = safe && trusted(&fstat(cur.as_raw_fd()).map_err(io("fstat"))?, euid);
                walked = PathBuf::from("/");
            }
            for t in components_of(&target).collect::<Vec<_>>().into_iter().rev() {
                pending.push_front(t);
            }
            continue;
        }
        let next = open_dir_at(cur.as_raw_fd(), &c).map_err(io("open"))?;
        safe = safe && trusted(&fstat(next.as_raw_fd()).map_err(io("fstat"))?, euid);
        if comp == b".." {
            walked.pop();
        } else {
            walked.push(std::ffi::OsStr::from_bytes(&comp));
        }
        cur = next;
    }
    Ok(Located { dir: cur, name })
}

/// Refuses anything but a regular file (or nothing) at `loc`, without opening it.
fn check_path(loc: &Located) -> Result<(), AcquireError> {
    match loc.lstat() {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => Err(AcquireError::Unsafe(PathProblem::Symlink)),
        Ok(st) => match kind_of(st.st_mode) {
            Some(kind) => Err(AcquireError::Unsafe(PathProblem::NotRegular(kind))),
            None => Ok(()),
        },
        Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(AcquireError::Io { op: "stat", errno }),
    }
}

fn open_checked(loc: &Located, flags: libc::c_int) -> Result<OwnedFd, AcquireError> {
    check_path(loc)?;
    let flags = flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    let fd = loc.open(flags).map_err(|errno| match errno {
        Errno::ELOOP => AcquireError::Unsafe(PathProblem::Symlink),
        Errno::EISDIR => AcquireError::Unsafe(PathProblem::NotRegular("a directory")),
        errno => AcquireError::Io { op: "open", errno },
    })?;
    let st = fstat(fd.as_raw_fd()).map_err(|errno| AcquireError::Io { op: "fstat", errno })?;
    if let Some(kind) = kind_of(st.st_mode) {
        return Err(AcquireError::Unsafe(PathProblem::NotRegular(kind)));
    }
    Ok(fd)
}

/// Tries to take a non-blocking `flock`. `Ok(false)` means someone else holds a conflicting one.
fn try_flock(fd: RawFd, exclusive: bool) -> Result<bool, Errno> {
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    loop {
        // SAFETY: flock takes plain integers.
        let rc = unsafe { libc::flock(fd, op) };
        if rc == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EWOULDBLOCK => return Ok(false),
            errno => return Err(errno),
        }
    }
}

/// Reads and parses the content behind `fd`.
pub fn read_pid_fd(fd: RawFd) -> Result<i32, InvalidContent> {
    let size = fstat(fd).map(|st| st.st_size as u64).unwrap_or(0);
    if size > MAX_CONTENT as u64 {
        return Err(InvalidContent::TooLarge(size));
    }
    let mut buf = [0u8; MAX_CONTENT];
    // SAFETY: reads at most buf.len() bytes into `buf`.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    if n < 0 {
        return Err(InvalidContent::NotAPid(format!("unreadable: {}", Errno::last().desc())));
    }
    parse_pid(&buf[..n as usize])
}

/// Replaces the content behind `fd` with `pid` and a newline: truncate, write, fsync.
///
/// Fails with `EMLINK`, writing nothing, if the file has more than one name (a hard link to it
/// would be changed too).
pub fn write_pid_fd(fd: RawFd, pid: i32) -> Result<(), Errno> {
    if fstat(fd)?.st_nlink > 1 {
        return Err(Errno::EMLINK);
    }
    let text = format!("{pid}\n");
    // SAFETY: plain integer arguments; `text` outlives the pwrite call.
    unsafe {
        Errno::result(libc::ftruncate(fd, 0))?;
        let n = Errno::result(libc::pwrite(fd, text.as_ptr() as *const libc::c_void, text.len(), 0))?;
        if n as usize != text.len() {
            return Err(Errno::EIO);
        }
        Errno::result(libc::fsync(fd))?;
    }
    Ok(())
}

/// Replaces the pid in the locked pidfile at `fd` with `pid` without the file ever reading empty
/// (a graceful restart hands the pidfile over while others poll it): writes over the old
/// content, then cuts what is left of it. Same checks as [`write_pid_fd`].
pub fn replace_pid_fd(fd: RawFd, pid: i32) -> Result<(), Errno> {
    if fstat(fd)?.st_nlink > 1 {
        return Err(Errno::EMLINK);
    }
    let text = format!("{pid}\n");
    // SAFETY: plain integer arguments; `text` outlives the pwrite call.
    unsafe {
        let n = Errno::result(libc::pwrite(fd, text.as_ptr() as *const libc::c_void, text.len(), 0))?;
        if n as usize != text.len() {
            return Err(Errno::EIO);
        }
        Errno::result(libc::ftruncate(fd, text.len() as libc::off_t))?;
        Errno::result(libc::fsync(fd))?;
    }
    Ok(())
}

/// Unlinks `path` if it still names the file open at `fd` (same device and inode). Returns
/// whether it was removed. Call it while holding the lock, so that no new daemon can have
/// created and locked a new file at the path in between. A file with other names (hard links)
/// is left in place.
///
/// The path is resolved again as [`Pidfile::acquire`] does: a symbolic link on it that someone
/// else could have planted meanwhile leaves the file in place.
pub fn remove_if_same(path: &Path, fd: RawFd) -> Result<bool, Errno> {
    let loc = match locate(path) {
        Ok(loc) => loc,
        Err(AcquireError::Io { errno: Errno::ENOENT, .. }) | Err(AcquireError::Io { errno: Errno::ENOTDIR, .. }) => return Ok(false),
        Err(AcquireError::Io { errno, .. }) => return Err(errno),
        Err(_) => return Ok(false),
    };
    let ours = fstat(fd)?;
    match loc.lstat() {
        Ok(st) if st.st_dev == ours.st_dev && st.st_ino == ours.st_ino && st.st_nlink == 1 => {
            loc.unlink()?;
            Ok(true)
        }
        Ok(_) | Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Unlinks the file open at `fd` (held by others with shared locks only) if it reads as a
/// pidfile, belongs to root when we are root, and the name still leads to it.
fn replace_shared(loc: &Located, fd: RawFd, as_root: bool) -> Result<(), AcquireError> {
    let io = |op: &'static str| move |errno| AcquireError::Io { op, errno };
    let st = fstat(fd).map_err(io("fstat"))?;
    if as_root && st.st_uid != 0 {
        return Err(AcquireError::Unsafe(PathProblem::ForeignOwner(st.st_uid)));
    }
    check_pidfile_like(fd, &st).map_err(AcquireError::Unsafe)?;
    match loc.lstat() {
        Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => loc.unlink().or_else(|e| if e == Errno::ENOENT { Ok(()) } else { Err(e) }).map_err(io("unlink")),
        Ok(_) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(io("stat")(errno)),
    }
}

/// Refuses, for root, a directory that others may write to without the sticky bit.
fn check_directory_for_root(loc: &Located) -> Result<(), AcquireError> {
    let st = fstat(loc.dir.as_raw_fd()).map_err(|errno| AcquireError::Io { op: "stat", errno })?;
    let writable_by_others = st.st_mode & libc::S_IWOTH != 0;
    let sticky = st.st_mode & libc::S_ISVTX != 0;
    if writable_by_others && !sticky {
        return Err(AcquireError::Unsafe(PathProblem::InsecureDirectory));
    }
    Ok(())
}

/// A pidfile whose exclusive lock this process holds.
///
/// Dropping it closes the descriptor. The lock is released when the *last* descriptor of the
/// open file description closes: if it was passed to a daemon, the daemon keeps it.
#[derive(Debug)]
pub struct Pidfile {
    fd: OwnedFd,
    path: PathBuf,
    replaced_shared: bool,
}

impl Pidfile {
    /// Opens (creating, mode 0644) and locks the pidfile at `path`, and empties it.
    ///
    /// After locking it checks that the path still names the locked file (a previous holder
    /// may have unlinked it between our open and our lock) and starts over if not.
    pub fn acquire(path: impl AsRef<Path>) -> Result<Pidfile, AcquireError> {
        let path = path.as_ref();
        let loc = locate(path)?;
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            check_directory_for_root(&loc)?;
        }
        let mut replaced_shared = false;
        'open: for _ in 0..16 {
            let fd = open_checked(&loc, libc::O_RDWR | libc::O_CREAT)?;
            if as_root {
                let st = fstat(fd.as_raw_fd()).map_err(|errno| AcquireError::Io { op: "fstat", errno })?;
                if st.st_uid != 0 {
                    return Err(AcquireError::Unsafe(PathProblem::ForeignOwner(st.st_uid)));
                }
            }
            let flock_error = |errno| AcquireError::Io { op: "flock", errno };
            let mut locked = false;
            for round in 0..HOLDER_ROUNDS {
                for attempt in 0..=BUSY_RETRIES {
                    locked = try_flock(fd.as_raw_fd(), true).map_err(flock_error)?;
                    if locked || attempt == BUSY_RETRIES {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                if locked {
                    break;
                }
                let pid = read_pid_fd(fd.as_raw_fd()).ok();
                let not_holder = matches!(pid, Some(named) if crate::holder::check(named, fd.as_raw_fd()) == Holder::NotHolder);
                match lock_state(fd.as_raw_fd()).map_err(flock_error)? {
                    // Released meanwhile, and lock_state left it locked by us.
                    LockState::Free => {
                        locked = true;
                        break;
                    }
                    // Only shared locks: no daemon's (a daemon holds an exclusive one). The file
                    // is replaced by a fresh one; its readers keep their locks on the old inode.
                    LockState::SharedOnly => {
                        replace_shared(&loc, fd.as_raw_fd(), as_root)?;
                        replaced_shared = true;
                        continue 'open;
                    }
                    LockState::Exclusive if !not_holder => return Err(AcquireError::AlreadyRunning { pid }),
                    LockState::Exclusive if round + 1 == HOLDER_ROUNDS => {
                        return Err(AcquireError::LockedByOther { named: pid })
                    }
                    // The named daemon may have exited just now, its lock not yet released.
                    LockState::Exclusive => {}
                }
            }
            if !locked {
                return Err(AcquireError::AlreadyRunning { pid: None });
            }
            let ours = fstat(fd.as_raw_fd()).map_err(|errno| AcquireError::Io { op: "fstat", errno })?;
            match loc.lstat() {
                Ok(st) if st.st_dev == ours.st_dev && st.st_ino == ours.st_ino => {
                    // Only now, holding the lock on the file the path names, may it be emptied:
                    // and only if it is nobody's but ours and reads as a pidfile.
                    check_pidfile_like(fd.as_raw_fd(), &ours).map_err(AcquireError::Unsafe)?;
                    // SAFETY: plain integer arguments on a descriptor we own.
                    Errno::result(unsafe { libc::ftruncate(fd.as_raw_fd(), 0) })
                        .map_err(|errno| AcquireError::Io { op: "ftruncate", errno })?;
                    return Ok(Pidfile { fd, path: path.to_path_buf(), replaced_shared });
                }
                Ok(_) | Err(Errno::ENOENT) => continue,
                Err(errno) => return Err(AcquireError::Io { op: "stat", errno }),
            }
        }
        Err(AcquireError::Unstable)
    }

    /// Takes over a locked pidfile descriptor handed down by a launcher.
    ///
    /// # Safety
    ///
    /// `fd` must be an open descriptor owned by nobody else in this process.
    pub unsafe fn from_raw_fd(fd: RawFd, path: impl AsRef<Path>) -> Pidfile {
        Pidfile { fd: OwnedFd::from_raw_fd(fd), path: path.as_ref().to_path_buf(), replaced_shared: false }
    }

    /// Whether [`Pidfile::acquire`] found the previous file held with shared locks only (which
    /// no daemon holds) and replaced it with a new one.
    pub fn replaced_shared_lock(&self) -> bool {
        self.replaced_shared
    }

    /// Writes `pid` (truncate, write, fsync).
    pub fn write_pid(&self, pid: i32) -> Result<(), Errno> {
        write_pid_fd(self.fd.as_raw_fd(), pid)
    }

    /// The path this pidfile was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unlinks the file if the path still names it; see [`remove_if_same`].
    pub fn remove(&self) -> Result<bool, Errno> {
        remove_if_same(&self.path, self.fd.as_raw_fd())
    }

    /// Gives up ownership of the descriptor (the lock stays held while it is open).
    pub fn into_raw_fd(self) -> RawFd {
        std::os::fd::IntoRawFd::into_raw_fd(self.fd)
    }
}

impl AsRawFd for Pidfile {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Reports whether the daemon of the pidfile at `path` runs, judged by the lock.
///
/// The lock is tested by taking a shared `flock` for an instant; [`Pidfile::acquire`] retries
/// briefly so that a concurrent probe never makes a launch fail.
pub fn probe(path: impl AsRef<Path>) -> Result<Probe, Errno> {
    let loc = match locate(path.as_ref()) {
        Ok(loc) => loc,
        Err(AcquireError::Unsafe(problem)) => return Ok(Probe::Unsafe(problem)),
        Err(AcquireError::Io { errno: Errno::ENOENT, .. }) => return Ok(Probe::NotRunning { stale: None }),
        Err(AcquireError::Io { errno, .. }) => return Err(errno),
        Err(_) => return Err(Errno::EIO),
    };
    let fd = match open_checked(&loc, libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(AcquireError::Unsafe(problem)) => return Ok(Probe::Unsafe(problem)),
        Err(AcquireError::Io { errno: Errno::ENOENT, .. }) => return Ok(Probe::NotRunning { stale: None }),
        Err(AcquireError::Io { errno, .. }) => return Err(errno),
        Err(_) => return Err(Errno::EIO),
    };
    // A file with other names may be another service's pidfile: never report it as ours.
    let st = fstat(fd.as_raw_fd())?;
    if st.st_nlink > 1 {
        return Ok(Probe::Unsafe(PathProblem::HardLinked(links(&st))));
    }
    let mut round = 0;
    loop {
        round += 1;
        let state = lock_state(fd.as_raw_fd())?;
        let content = read_pid_fd(fd.as_raw_fd());
        return Ok(match (state, content) {
            (LockState::Free, stale) => Probe::NotRunning { stale: Some(stale) },
            // Worded as shared locks, whatever the file names: no daemon holds those.
            (LockState::SharedOnly, _) => Probe::LockedByOther { named: None },
            (LockState::Exclusive, Ok(pid)) => match crate::holder::check(pid, fd.as_raw_fd()) {
                Holder::Proven => Probe::Running { pid },
                // The daemon may have exited between the two looks: look at the lock again.
                Holder::NotHolder if round < HOLDER_ROUNDS => continue,
                Holder::NotHolder => Probe::LockedByOther { named: Some(pid) },
                Holder::Unverifiable(errno) => Probe::RunningUnverified { pid, errno: Some(errno) },
                Holder::Unsupported => Probe::RunningUnverified { pid, errno: None },
            },
            (LockState::Exclusive, Err(content)) => Probe::RunningUnknownPid { content },
        });
    }
}

fn locked_by_other(named: Option<i32>) -> String {
    match named {
        Some(pid) => format!("the pidfile is locked, but not by pid {pid} that it names: another process holds its lock"),
        None => "the pidfile is locked with shared locks only, which no daemon holds: another process holds them".to_string(),
    }
}

/// Which locks others hold on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockState {
    /// None.
    Free,
    /// An exclusive one (as a daemon does).
    Exclusive,
    /// Only shared ones, steadily: not a daemon's.
    SharedOnly,
}

/// Finds out which locks others hold on the file open at `fd` (ours, holding none), taking at
/// most an instant's lock itself. A shared lock seen for a moment may be another reader's
/// probe: only shared locks that last through the retries count as [`LockState::SharedOnly`].
/// Leaves `fd` locked or not; the caller closes it.
fn lock_state(fd: RawFd) -> Result<LockState, Errno> {
    for attempt in 0..=BUSY_RETRIES {
        if !try_flock(fd, false)? {
            return Ok(LockState::Exclusive);
        }
        // A failed conversion drops our shared lock, so concurrent probes cannot lock each
        // other out for good.
        match try_flock(fd, true) {
            Ok(true) => return Ok(LockState::Free),
            Ok(false) => {}
            // Where flock is emulated with record locks (NFS), a read-only descriptor cannot
            // lock exclusively: the shared lock is all there is to go by.
            Err(Errno::EBADF) => return Ok(LockState::Free),
            Err(errno) => return Err(errno),
        }
        if attempt < BUSY_RETRIES {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    Ok(LockState::SharedOnly)
}

/// Whether `content` reads as some pidfile's: empty, or a decimal number (a sign allowed) with
/// at most one newline after it. Stricter checks ([`parse_pid`]) decide whether to act on it;
/// this one decides whether the file may be emptied or removed at all.
fn looks_like_pidfile(content: &[u8]) -> bool {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    if content.is_empty() {
        return true;
    }
    let digits = body.strip_prefix(b"-").unwrap_or(body);
    !digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit)
}

/// The number of names of a file (`nlink_t` is 16 bits on macOS, 64 on Linux x86_64).
#[allow(clippy::unnecessary_cast)]
fn links(st: &libc::stat) -> u64 {
    st.st_nlink as u64
}

/// Refuses a file with other names, or whose content is not a pidfile's.
fn check_pidfile_like(fd: RawFd, st: &libc::stat) -> Result<(), PathProblem> {
    if st.st_nlink > 1 {
        return Err(PathProblem::HardLinked(links(st)));
    }
    let size = st.st_size as u64;
    if size > MAX_CONTENT as u64 {
        return Err(PathProblem::NotAPidfile(size));
    }
    let mut buf = [0u8; MAX_CONTENT];
    // SAFETY: reads at most buf.len() bytes into `buf`.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
    if n < 0 || !looks_like_pidfile(&buf[..n as usize]) {
        return Err(PathProblem::NotAPidfile(size));
    }
    Ok(())
}

/// What [`remove_stale`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleRemoval {
    /// The file was a pidfile nobody locked; it is gone.
    Removed,
    /// There was no file.
    Missing,
    /// Someone holds its lock: it is not stale, and stays.
    Locked,
    /// The path is not provably a stale pidfile of this kind; it was not touched.
    Kept(PathProblem),
}

/// Removes the pidfile at `path` if, and only if, it is provably a stale pidfile: a regular
/// file with one name, content that reads as a pid (or nothing), not owned by another user
/// when we are root, and nobody holds its lock.
///
/// It is opened without `O_CREAT` and read only, never written or truncated; the exclusive lock
/// is taken (non-blocking) before the path is checked to still name the same file and
/// unlinked, so a daemon starting at the same moment never loses its new pidfile.
pub fn remove_stale(path: impl AsRef<Path>) -> Result<StaleRemoval, Errno> {
    let loc = match locate(path.as_ref()) {
        Ok(loc) => loc,
        Err(AcquireError::Unsafe(problem)) => return Ok(StaleRemoval::Kept(problem)),
        Err(AcquireError::Io { errno: Errno::ENOENT, .. }) => return Ok(StaleRemoval::Missing),
        Err(AcquireError::Io { errno, .. }) => return Err(errno),
        Err(_) => return Err(Errno::EIO),
    };
    let fd = match open_checked(&loc, libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(AcquireError::Unsafe(problem)) => return Ok(StaleRemoval::Kept(problem)),
        Err(AcquireError::Io { errno: Errno::ENOENT, .. }) => return Ok(StaleRemoval::Missing),
        Err(AcquireError::Io { errno, .. }) => return Err(errno),
        Err(_) => return Err(Errno::EIO),
    };
    let st = fstat(fd.as_raw_fd())?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 && st.st_uid != 0 {
        return Ok(StaleRemoval::Kept(PathProblem::ForeignOwner(st.st_uid)));
    }
    if let Err(problem) = check_pidfile_like(fd.as_raw_fd(), &st) {
        return Ok(StaleRemoval::Kept(problem));
    }
    if !try_flock(fd.as_raw_fd(), true)? {
        return Ok(StaleRemoval::Locked);
    }
    // Locked: nobody can start on this file now. The path must still name it, once.
    match loc.lstat() {
        Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino && now.st_nlink == 1 => {
            loc.unlink()?;
            Ok(StaleRemoval::Removed)
        }
        Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {
            Ok(StaleRemoval::Kept(PathProblem::HardLinked(links(&now))))
        }
        Ok(_) | Err(Errno::ENOENT) => Ok(StaleRemoval::Missing),
        Err(errno) => Err(errno),
    }
}

/// Why [`verify_inherited_lock`] does not accept a descriptor as the pidfile's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InheritedLockProblem {
    /// The descriptor is not open.
    NotOpen,
    /// The descriptor is not a regular file (the kind is given).
    NotRegular(&'static str),
    /// The descriptor is not open for writing, as a launcher's pidfile descriptor is.
    NotWritable,
    /// The path is a symbolic link, or names nothing or another file than the descriptor.
    OtherFile,
    /// Nobody holds an exclusive lock on the file.
    NotLocked,
    /// An exclusive lock is held, but through another open file description than this one.
    LockedByOther,
    /// A system call failed.
    Io(Errno),
}

impl fmt::Display for InheritedLockProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InheritedLockProblem::NotOpen => f.write_str("the descriptor is not open"),
            InheritedLockProblem::NotRegular(kind) => write!(f, "the descriptor is {kind}, not a regular file"),
            InheritedLockProblem::NotWritable => f.write_str("the descriptor is not open for writing"),
            InheritedLockProblem::OtherFile => f.write_str("the path does not name the file open at the descriptor"),
            InheritedLockProblem::NotLocked => f.write_str("nobody holds the file's exclusive lock"),
            InheritedLockProblem::LockedByOther => f.write_str("the file's exclusive lock is held through another descriptor"),
            InheritedLockProblem::Io(errno) => write!(f, "checking the lock failed: {}", errno.desc()),
        }
    }
}

impl std::error::Error for InheritedLockProblem {}

/// Proves that `fd`, a descriptor this process inherited, holds the exclusive `flock` on the
/// regular file at `path`.
///
/// Checked, in order: `fd` is an open regular file, open for writing; `path` is not a symbolic
/// link and names the same device and inode; a fresh descriptor of `path` cannot take a shared
/// lock (so someone holds it exclusively), while an exclusive lock through `fd` succeeds (so the
/// holder is `fd`'s open file description: taking a lock one already holds is a no-op). The
/// fresh descriptor is closed before returning, releasing nothing it did not take.
///
/// The lock through `fd` is left as it was when the proof holds; when nobody held it, the
/// exclusive attempt is never made, so a failed proof takes no lock.
pub fn verify_inherited_lock(fd: RawFd, path: impl AsRef<Path>) -> Result<(), InheritedLockProblem> {
    let ours = match fstat(fd) {
        Ok(st) => st,
        Err(Errno::EBADF) => return Err(InheritedLockProblem::NotOpen),
        Err(errno) => return Err(InheritedLockProblem::Io(errno)),
    };
    if let Some(kind) = kind_of(ours.st_mode) {
        return Err(InheritedLockProblem::NotRegular(kind));
    }
    // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
    let flags = Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFL) }).map_err(InheritedLockProblem::Io)?;
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        return Err(InheritedLockProblem::NotWritable);
    }
    let loc = match locate(path.as_ref()) {
        Ok(loc) => loc,
        Err(AcquireError::Io { errno, .. }) if errno != Errno::ENOENT && errno != Errno::ENOTDIR => {
            return Err(InheritedLockProblem::Io(errno))
        }
        Err(_) => return Err(InheritedLockProblem::OtherFile),
    };
    match loc.lstat() {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_dev == ours.st_dev && st.st_ino == ours.st_ino => {}
        Ok(_) | Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => return Err(InheritedLockProblem::OtherFile),
        Err(errno) => return Err(InheritedLockProblem::Io(errno)),
    }
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    let fresh = loc.open(flags).map_err(|errno| match errno {
        Errno::ELOOP | Errno::ENOENT => InheritedLockProblem::OtherFile,
        errno => InheritedLockProblem::Io(errno),
    })?;
    let st = fstat(fresh.as_raw_fd()).map_err(InheritedLockProblem::Io)?;
    if st.st_dev != ours.st_dev || st.st_ino != ours.st_ino {
        return Err(InheritedLockProblem::OtherFile);
    }
    if try_flock(fresh.as_raw_fd(), false).map_err(InheritedLockProblem::Io)? {
        // Shared lock granted: nobody holds it exclusively. Closing `fresh` releases it.
        return Err(InheritedLockProblem::NotLocked);
    }
    drop(fresh);
    if !try_flock(fd, true).map_err(InheritedLockProblem::Io)? {
        return Err(InheritedLockProblem::LockedByOther);
    }
    Ok(())
}
