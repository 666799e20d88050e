//! Replacing the calling process with another program (`execve`), for a launcher that hands
//! over to a native program instead of staying alive as its parent.

use std::ffi::{CString, OsStr};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use crate::argv::CStringArray;
use crate::stdio;

/// Replaces the calling process with `program`: `args` is the whole argv (`argv[0]` included)
/// and `env` the whole environment, as `NAME=value` entries.
///
/// Descriptors 0, 1, 2 and those in `keep` are inherited by the program, even if they were
/// close-on-exec (Node.js marks its standard streams so); every other descriptor is marked
/// close-on-exec first, since the caller may itself have inherited some without the flag.
/// Descriptors 0, 1 and 2 are made blocking: a Node.js process that has written to a pipe
/// has set `O_NONBLOCK` on it, which most programs do not expect (they would get `EAGAIN`).
/// Returns only if `execve` failed, with its errno; the flags of 0, 1, 2 and `keep` are then
/// as they were (the others stay marked, which only affects later `exec`s).
///
/// `execve` from a multi-threaded process is sound: the kernel ends the other threads.
pub fn exec_replacing(program: &OsStr, args: &[&OsStr], env: &[&OsStr], keep: &[RawFd]) -> Errno {
    let array = |list: &[&OsStr]| CStringArray::new(list.iter().map(|s| s.as_bytes()));
    let (Ok(program), Ok(argv), Ok(envp)) = (CString::new(program.as_bytes()), array(args), array(env)) else {
        return Errno::EINVAL;
    };

    let inherited: Vec<RawFd> = [0, 1, 2].iter().chain(keep).copied().collect();
    // The flags to put back if the exec fails; a closed standard descriptor is left alone.
    let before: Vec<(RawFd, bool)> = inherited.iter().filter_map(|&fd| Some((fd, is_cloexec(fd)?))).collect();
    for &fd in keep {
        if is_cloexec(fd).is_none() {
            return Errno::EBADF;
        }
    }
    // SAFETY (both closures): F_GETFL / F_SETFL only read and change a descriptor's status
    // flags; on a descriptor that is not open they fail with EBADF.
    let status = |fd: RawFd| unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let set_status = |fd: RawFd, flags: libc::c_int| unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    let nonblocking: Vec<(RawFd, libc::c_int)> =
        (0..=2).map(|fd| (fd, status(fd))).filter(|&(_, flags)| flags >= 0 && flags & libc::O_NONBLOCK != 0).collect();
    let undo = |errno: Errno| {
        restore(&before);
        for &(fd, flags) in &nonblocking {
            set_status(fd, flags);
        }
        errno
    };
    mark_all_cloexec();
    for &(fd, _) in &before {
        if let Err(errno) = stdio::set_cloexec(fd, false) {
            return undo(errno);
        }
    }
    for &(fd, flags) in &nonblocking {
        if set_status(fd, flags & !libc::O_NONBLOCK) < 0 {
            return undo(Errno::last());
        }
    }
    // SAFETY: `program`, `argv` and `envp` are NUL-terminated strings and NULL-terminated
    // arrays that live until the call returns (it only returns on failure).
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    undo(Errno::last())
}

/// Whether `fd` is close-on-exec; `None` if it is not open.
fn is_cloexec(fd: RawFd) -> Option<bool> {
    // SAFETY: F_GETFD only reads the descriptor's flags; an invalid descriptor yields -1.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    (flags >= 0).then_some(flags & libc::FD_CLOEXEC != 0)
}

fn restore(before: &[(RawFd, bool)]) {
    for &(fd, cloexec) in before {
        let _ = stdio::set_cloexec(fd, cloexec);
    }
}

/// Marks every descriptor from 3 up close-on-exec.
fn mark_all_cloexec() {
    #[cfg(linux_like)]
    {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags (Linux 5.11+).
        let rc = unsafe { libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) };
        if rc == 0 {
            return;
        }
    }
    // Older kernels and macOS: the open descriptors, listed first (listing opens one more).
    let open: Vec<RawFd> = match std::fs::read_dir("/dev/fd") {
        Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => return,
    };
    for fd in open.into_iter().filter(|&fd| fd > 2) {
        let _ = stdio::set_cloexec(fd, true); // EBADF for the listing's own, already closed
    }
}
