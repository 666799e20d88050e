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
//!
//! The path walk is in `path`, the content in `content`, the lock and its probes in `lock`; this
//! file holds the pidfile handle ([`Pidfile`]) and what callers do with a path.

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::fsutil::{fstat, links};
use crate::holder::Holder;

mod content;
mod lock;
mod path;

pub use content::{parse_pid, read_pid_fd, replace_pid_fd, write_pid_fd, InvalidContent};
pub use lock::{verify_inherited_lock, InheritedLockProblem};

use content::check_pidfile_like;
use lock::{lock_state, try_flock, LockState, BUSY_RETRIES};
use path::{check_directory_for_root, locate, open_checked, Located};

/// How often a lock held by someone other than the named process is looked at again before it
/// is reported as such: the named daemon may be exiting, its lock about to be released.
const HOLDER_ROUNDS: u32 = 3;

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

    /// Replaces the pid in the file without it ever reading empty; see [`replace_pid_fd`].
    pub fn replace_pid(&self, pid: i32) -> Result<(), Errno> {
        replace_pid_fd(self.fd.as_raw_fd(), pid)
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
