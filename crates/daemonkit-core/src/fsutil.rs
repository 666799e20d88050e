//! Small file-status helpers shared by the modules that open files by path ([`crate::pidfile`],
//! [`crate::logfile`], [`crate::holder`]).

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

/// `path` as a C string (`EINVAL` if it contains a NUL byte).
pub(crate) fn c_path(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// What a file of mode `mode` is, as words for a message, or `None` for a regular file.
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

/// `lstat(path)`.
pub(crate) fn lstat(path: &CString) -> Result<libc::stat, Errno> {
    // SAFETY: `st` is plain data written by lstat; `path` is NUL-terminated.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        Errno::result(libc::lstat(path.as_ptr(), &mut st)).map(|_| st)
    }
}

/// `fstat(fd)`.
pub(crate) fn fstat(fd: RawFd) -> Result<libc::stat, Errno> {
    // SAFETY: `st` is plain data written by fstat.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        Errno::result(libc::fstat(fd, &mut st)).map(|_| st)
    }
}

/// Whether a directory (or link) could only have been changed by root or by `euid`: owned by
/// one of them and writable by nobody else. A sticky directory writable by others does not
/// count, since anyone can create a link in it.
pub(crate) fn trusted(st: &libc::stat, euid: u32) -> bool {
    (st.st_uid == 0 || st.st_uid == euid) && st.st_mode & (libc::S_IWGRP | libc::S_IWOTH) == 0
}

/// The number of names of a file (`nlink_t` is 16 bits on macOS, 64 on Linux x86_64).
#[allow(clippy::unnecessary_cast)]
pub(crate) fn links(st: &libc::stat) -> u64 {
    st.st_nlink as u64
}

/// The errno behind an I/O error (`EIO` if it has none).
pub(crate) fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}
