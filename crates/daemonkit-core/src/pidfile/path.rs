//! Finding a pidfile by path without trusting what others could have planted on the way: the
//! directory walk ([`locate`]) and the checks on what the path names.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::{AcquireError, PathProblem};
use crate::fsutil::{errno_of, fstat, kind_of, trusted};

/// How directories on a pidfile's path are opened: only to walk through them.
#[cfg(linux_like)]
const DIR_FLAGS: libc::c_int = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
#[cfg(not(linux_like))]
const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// The most symbolic links followed on one path (as the kernel's own limit).
const MAX_SYMLINKS: u32 = 40;

/// A pidfile's directory, opened by walking the path one component at a time, and the file's
/// name in it. Every later look at the file goes through the directory descriptor, so a
/// directory on the path swapped for a symlink afterwards changes nothing.
pub(super) struct Located {
    dir: OwnedFd,
    name: CString,
}

impl Located {
    /// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
    pub(super) fn lstat(&self) -> Result<libc::stat, Errno> {
        // SAFETY: `st` is plain data written by fstatat; `name` is NUL-terminated.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            Errno::result(libc::fstatat(self.dir.as_raw_fd(), self.name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW))
                .map(|_| st)
        }
    }

    /// `unlinkat(dir, name, 0)`.
    pub(super) fn unlink(&self) -> Result<(), Errno> {
        // SAFETY: `name` is NUL-terminated; the directory descriptor is open.
        Errno::result(unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.name.as_ptr(), 0) }).map(drop)
    }

    /// `openat(dir, name, flags, 0644)`.
    pub(super) fn open(&self, flags: libc::c_int) -> Result<OwnedFd, Errno> {
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
pub(super) fn locate(path: &Path) -> Result<Located, AcquireError> {
    let io = |op: &'static str| move |errno| AcquireError::Io { op, errno };
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| io("getcwd")(errno_of(&e)))?.join(path)
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

pub(super) fn open_checked(loc: &Located, flags: libc::c_int) -> Result<OwnedFd, AcquireError> {
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

/// Refuses, for root, a directory that others may write to without the sticky bit.
pub(super) fn check_directory_for_root(loc: &Located) -> Result<(), AcquireError> {
    let st = fstat(loc.dir.as_raw_fd()).map_err(|errno| AcquireError::Io { op: "stat", errno })?;
    let writable_by_others = st.st_mode & libc::S_IWOTH != 0;
    let sticky = st.st_mode & libc::S_ISVTX != 0;
    if writable_by_others && !sticky {
        return Err(AcquireError::Unsafe(PathProblem::InsecureDirectory));
    }
    Ok(())
}
