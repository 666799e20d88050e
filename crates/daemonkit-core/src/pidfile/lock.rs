//! Taking and probing a pidfile's `flock`, and proving that an inherited descriptor holds it.

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

use super::path::locate;
use super::AcquireError;
use crate::fsutil::{fstat, kind_of};

/// How often `acquire` retries a lock that is held, to ride out a reader's momentary probe.
pub(super) const BUSY_RETRIES: u32 = 5;

/// Tries to take a non-blocking `flock`. `Ok(false)` means someone else holds a conflicting one.
pub(super) fn try_flock(fd: RawFd, exclusive: bool) -> Result<bool, Errno> {
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

/// Which locks others hold on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockState {
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
pub(super) fn lock_state(fd: RawFd) -> Result<LockState, Errno> {
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
