//! Log files: opened for append without being fooled by the path, and written whole line by
//! whole line when the disk fills up.
//!
//! [`open_append`] is the one way daemonkit opens a log file. The last component is never
//! followed if it is a symbolic link, the result must be a regular file with a single link (or a
//! character device such as `/dev/null`), and a FIFO never blocks the open. Run as root it also
//! looks at who could have prepared the path:
//!
//! - if the directory and every directory above it belong to root and nobody else can change
//!   them (not writable by others, nor by a group of the service user, unless sticky), root opens
//!   the file itself; it must then belong to root or to the service user;
//! - otherwise, when the program runs as another user, the file is opened with that user's
//!   credentials (Linux: `setfsuid` / `setfsgid` / `setgroups` on a short-lived thread of its own,
//!   so the rest of the process keeps root), so the user can never make root write anywhere it
//!   could not write itself;
//! - otherwise the file is refused.
//!
//! [`Appender`] writes into such a file and keeps its line boundaries when writes fail (a full
//! disk): a line is in the file whole or not at all, and once writing works again one notice says
//! how many lines and bytes were lost (in `appender`).

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::launch::Credentials;

mod appender;

pub use appender::{Appender, Loss};
use crate::fsutil::{c_path, errno_of, fstat, kind_of, links, lstat, trusted};

/// The mode a new log file is created with (before the umask).
pub const LOG_MODE: libc::mode_t = 0o640;

/// Why a path cannot be used as a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogProblem {
    /// The path is a symbolic link, which is never followed.
    Symlink,
    /// The path names something other than a regular file or a character device.
    NotRegular(&'static str),
    /// The file has other names (hard links): writing to it would write to them too.
    HardLinked(u64),
    /// Root was asked to write in a directory that someone else could change (the directory
    /// named), and there is no service user to open the file as.
    InsecureDirectory(PathBuf),
    /// Root was asked to write into a file owned by another user (uid given).
    ForeignOwner(u32),
    /// The path is a FIFO that no process has open for reading: writing would block or fail.
    FifoWithoutReader,
}

impl fmt::Display for LogProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogProblem::Symlink => f.write_str(
                "it is a symbolic link, which is not followed (only a link owned by root or the caller, in directories nobody else can change, leading to such a place, is)",
            ),
            LogProblem::FifoWithoutReader => f.write_str("it is a FIFO that nobody reads (a FIFO is used only while a reader has it open)"),
            LogProblem::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            LogProblem::HardLinked(n) => write!(f, "it has {n} hard links, which are refused"),
            LogProblem::InsecureDirectory(dir) => write!(
                f,
                "root refuses to write in it: {} can be changed by users other than root",
                dir.display()
            ),
            LogProblem::ForeignOwner(uid) => write!(f, "it is owned by uid {uid}, which root refuses"),
        }
    }
}

/// Why [`open_append`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The path is not safe to use as a log file.
    Unsafe(LogProblem),
    /// A system call failed.
    Io {
        /// What was being done, e.g. `"open"`.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

impl OpenError {
    /// The closest errno, for callers that report failures as one (`ELOOP` for a symbolic link,
    /// `EPERM` for a refused owner or directory, …).
    pub fn errno(&self) -> Errno {
        match self {
            OpenError::Unsafe(LogProblem::Symlink) => Errno::ELOOP,
            OpenError::Unsafe(LogProblem::NotRegular("a directory")) => Errno::EISDIR,
            OpenError::Unsafe(LogProblem::NotRegular(_)) => Errno::EINVAL,
            OpenError::Unsafe(LogProblem::HardLinked(_)) => Errno::EMLINK,
            OpenError::Unsafe(LogProblem::FifoWithoutReader) => Errno::ENXIO,
            OpenError::Unsafe(_) => Errno::EPERM,
            OpenError::Io { errno, .. } => *errno,
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Unsafe(p) => p.fmt(f),
            OpenError::Io { op, errno } => write!(f, "{op} failed: {}", errno.desc()),
        }
    }
}

impl std::error::Error for OpenError {}

fn io(op: &'static str) -> impl Fn(Errno) -> OpenError {
    move |errno| OpenError::Io { op, errno }
}

/// Opens `path` for appending (creating it, mode [`LOG_MODE`]) with the checks described in the
/// [module documentation](self). `service` is the user the program whose output goes there runs
/// as, if not the caller's own. The descriptor is close-on-exec and blocking.
pub fn open_append(path: impl AsRef<Path>, service: Option<&Credentials>) -> Result<OwnedFd, OpenError> {
    let target;
    let path = match follow_trusted_links(path.as_ref())? {
        Followed::NotALink => path.as_ref(),
        Followed::Target(t) => {
            target = t;
            target.as_path()
        }
        Followed::Magic(link) => return open_magic(&link),
    };
    let c = c_path(path).map_err(io("open"))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return open_file(&c);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let given = std::env::current_dir().map_err(|e| errno_of(&e)).map_err(io("getcwd"))?.join(dir);
    let resolved = std::fs::canonicalize(dir).map_err(|e| errno_of(&e)).map_err(io("open"))?;
    let name = path.file_name().ok_or(OpenError::Unsafe(LogProblem::NotRegular("a directory")))?;
    // Both the path as given (its symlinks included) and the directories it leads to.
    let untrusted = untrusted_ancestor(&given, service).or_else(|| untrusted_ancestor(&resolved, service));
    let dir = resolved;
    match untrusted {
        None => {
            // Nobody but root can change anything on the way: open the file as root, at the
            // resolved directory.
            let fd = open_file(&c_path(&dir.join(name)).map_err(io("open"))?)?;
            let st = fstat(fd.as_raw_fd()).map_err(io("fstat"))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_uid != 0 && Some(st.st_uid) != service.map(|s| s.uid) {
                return Err(OpenError::Unsafe(LogProblem::ForeignOwner(st.st_uid)));
            }
            Ok(fd)
        }
        Some(changeable) => match service {
            Some(creds) if creds.uid != 0 => open_as(creds, &c).map_err(|e| match e {
                OpenError::Io { errno: Errno::ENOSYS, .. } => OpenError::Unsafe(LogProblem::InsecureDirectory(changeable)),
                e => e,
            }),
            _ => Err(OpenError::Unsafe(LogProblem::InsecureDirectory(changeable))),
        },
    }
}

/// Where [`follow_trusted_links`] leads.
enum Followed {
    /// The path is not a symbolic link (or names nothing yet).
    NotALink,
    /// The end of a chain of trusted links: a path that is not a link.
    Target(PathBuf),
    /// A trusted link in `/proc/PID/fd` (as `/dev/stdout` leads to): it names an open file,
    /// which may be a pipe or a deleted file, and is opened through the link itself.
    Magic(PathBuf),
}

/// Whether the link at `link`, every directory on its path as written (a link on the way counts
/// as its owner's) and every directory it is in once resolved belong to root or to the caller
/// and are writable by nobody else.
fn trusted_link(link: &Path, euid: u32) -> bool {
    let owned = |st: &libc::stat| st.st_uid == 0 || st.st_uid == euid;
    let Ok(st) = c_path(link).and_then(|c| lstat(&c)) else { return false };
    if !owned(&st) {
        return false;
    }
    let Some(parent) = link.parent() else { return false };
    let Ok(resolved) = std::fs::canonicalize(parent) else { return false };
    parent.ancestors().chain(resolved.ancestors()).all(|d| match c_path(d).and_then(|c| lstat(&c)) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => owned(&st),
        Ok(st) => trusted(&st, euid),
        Err(_) => false,
    })
}

/// Follows `path` while it is a symbolic link that nobody but root (or the caller) could have
/// made or redirected; refuses any other link ([`LogProblem::Symlink`]).
fn follow_trusted_links(path: &Path) -> Result<Followed, OpenError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let mut cur = std::env::current_dir().map_err(|e| errno_of(&e)).map_err(io("getcwd"))?.join(path);
    for hops in 0..8 {
        match c_path(&cur).and_then(|c| lstat(&c)) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {}
            _ if hops == 0 => return Ok(Followed::NotALink),
            _ => return Ok(Followed::Target(cur)),
        }
        if !trusted_link(&cur, euid) {
            return Err(OpenError::Unsafe(LogProblem::Symlink));
        }
        let parent = cur.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        let resolved = std::fs::canonicalize(&parent).map_err(|e| errno_of(&e)).map_err(io("open"))?;
        if resolved.starts_with("/proc") && resolved.file_name() == Some(std::ffi::OsStr::new("fd")) {
            return Ok(Followed::Magic(cur));
        }
        let target = std::fs::read_link(&cur).map_err(|e| errno_of(&e)).map_err(io("readlink"))?;
        cur = resolved.join(target);
    }
    Err(OpenError::Unsafe(LogProblem::Symlink))
}

/// Opens a file already open in this process through its `/proc/PID/fd` link (never creating
/// anything), with the checks of [`open_file`].
fn open_magic(link: &Path) -> Result<OwnedFd, OpenError> {
    let c = c_path(link).map_err(io("open"))?;
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    // SAFETY: `c` is NUL-terminated; no O_CREAT, so no mode argument is read.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        return Err(match Errno::last() {
            // A socket (what Node gives a child for stdio 'pipe') cannot be opened by name.
            Errno::ENXIO => match std::fs::metadata(link) {
                Ok(m) if m.file_type().is_socket() => OpenError::Unsafe(LogProblem::NotRegular("a socket")),
                _ => OpenError::Unsafe(LogProblem::FifoWithoutReader),
            },
            errno => OpenError::Io { op: "open", errno },
        });
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    checked(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The first directory from `dir` up to `/` that someone other than root could change: owned by
/// another user, writable by others, or by a group of `service`, without the sticky bit.
/// A symbolic link on the way counts as its owner's.
fn untrusted_ancestor(dir: &Path, service: Option<&Credentials>) -> Option<PathBuf> {
    for d in dir.ancestors() {
        let Ok(c) = c_path(d) else { return Some(d.to_path_buf()) };
        let Ok(st) = lstat(&c) else { return Some(d.to_path_buf()) };
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            if st.st_uid != 0 {
                return Some(d.to_path_buf());
            }
            continue;
        }
        let sticky = st.st_mode & libc::S_ISVTX != 0;
        let others = st.st_mode & libc::S_IWOTH != 0;
        let group = st.st_mode & libc::S_IWGRP != 0
            && service.is_some_and(|s| s.gid == st.st_gid || s.groups.contains(&st.st_gid));
        if st.st_uid != 0 || ((others || group) && !sticky) {
            return Some(d.to_path_buf());
        }
    }
    None
}

/// The open itself, and the checks on what it opened.
fn open_file(path: &CString) -> Result<OwnedFd, OpenError> {
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    // SAFETY: `path` is NUL-terminated; the mode argument is read because of O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags, LOG_MODE as libc::c_uint) };
    if fd < 0 {
        return Err(match Errno::last() {
            Errno::ELOOP | Errno::EMLINK => OpenError::Unsafe(LogProblem::Symlink),
            Errno::EISDIR => OpenError::Unsafe(LogProblem::NotRegular("a directory")),
            Errno::ENXIO => OpenError::Unsafe(LogProblem::FifoWithoutReader),
            // O_CREAT on another user's link in a sticky directory fails with EACCES
            // (protected_symlinks) before O_NOFOLLOW is looked at: it is still a link.
            Errno::EACCES if lstat(path).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK) => {
                OpenError::Unsafe(LogProblem::Symlink)
            }
            errno => OpenError::Io { op: "open", errno },
        });
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    checked(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Accepts a regular file with one name, a character device or a FIFO (open, so it has a
/// reader), and makes the descriptor blocking.
fn checked(fd: OwnedFd) -> Result<OwnedFd, OpenError> {
    let st = fstat(fd.as_raw_fd()).map_err(io("fstat"))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG if st.st_nlink > 1 => return Err(OpenError::Unsafe(LogProblem::HardLinked(links(&st)))),
        libc::S_IFREG | libc::S_IFCHR | libc::S_IFIFO => {}
        mode => return Err(OpenError::Unsafe(LogProblem::NotRegular(kind_of(mode).unwrap_or("not a regular file")))),
    }
    // O_NONBLOCK was only for the open (a FIFO must not block it); writes must block.
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        Errno::result(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK)).map_err(io("fcntl"))?;
    }
    Ok(fd)
}

/// Opens `path` with the file-system credentials of `creds`, on a thread of its own: on Linux the
/// credentials are per thread (the raw system calls change only the calling thread's, unlike
/// libc's wrappers), and they vanish with the thread.
#[cfg(linux_like)]
fn open_as(creds: &Credentials, path: &CString) -> Result<OwnedFd, OpenError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: raw setgroups / setfsgid / setfsuid with valid arguments; they change
                // this thread's credentials only, and this thread ends right after the open.
                unsafe {
                    let groups = if creds.groups.is_empty() { vec![creds.gid] } else { creds.groups.clone() };
                    Errno::result(libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr())).map_err(io("setgroups"))?;
                    libc::syscall(libc::SYS_setfsgid, creds.gid);
                    libc::syscall(libc::SYS_setfsuid, creds.uid);
                    // Both return the previous id and never fail visibly: ask again to check.
                    let uid = libc::syscall(libc::SYS_setfsuid, u32::MAX) as libc::uid_t;
                    let gid = libc::syscall(libc::SYS_setfsgid, u32::MAX) as libc::gid_t;
                    if uid != creds.uid || gid != creds.gid {
                        return Err(OpenError::Io { op: "setfsuid", errno: Errno::EPERM });
                    }
                }
                open_file(path)
            })
            .join()
            .unwrap_or(Err(OpenError::Io { op: "open", errno: Errno::EIO }))
    })
}

/// Elsewhere credentials are per process: a file in a directory others can change is refused.
#[cfg(not(linux_like))]
fn open_as(_creds: &Credentials, _path: &CString) -> Result<OwnedFd, OpenError> {
    Err(OpenError::Io { op: "open", errno: Errno::ENOSYS })
}
