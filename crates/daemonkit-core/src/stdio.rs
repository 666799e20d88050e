//! File-descriptor helpers used around a launch: pipes, `dup2`, close-on-exec.

use std::os::fd::{OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

/// Creates a pipe whose both ends are close-on-exec. Returns `(read, write)`.
///
/// Atomic (`pipe2`) where the system has it. Apple's systems have no `pipe2`: there the flag
/// is set right after `pipe`, so a thread that forks and execs in between could leak the ends
/// into that child; daemonkit's own launches prepare every descriptor before they fork.
pub fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), Errno> {
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
    }
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    {
        use std::os::fd::AsRawFd;
        let (read, write) = nix::unistd::pipe()?;
        set_cloexec(read.as_raw_fd(), true)?;
        set_cloexec(write.as_raw_fd(), true)?;
        Ok((read, write))
    }
}

/// Opens `/dev/null` for reading and writing, close-on-exec.
pub fn open_dev_null() -> Result<OwnedFd, Errno> {
    let fd = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    Ok(fd)
}

/// Sets or clears the close-on-exec flag of `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> Result<(), Errno> {
    // SAFETY: `fd` is only used for the duration of the call; an invalid descriptor yields EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let current = FdFlag::from_bits_truncate(fcntl(borrowed, FcntlArg::F_GETFD)?);
    let wanted = if on {
        current | FdFlag::FD_CLOEXEC
    } else {
        current - FdFlag::FD_CLOEXEC
    };
    fcntl(borrowed, FcntlArg::F_SETFD(wanted))?;
    Ok(())
}

/// Duplicates `from` onto `to` (`dup2`); the copy at `to` is not close-on-exec.
pub fn dup_onto(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 takes plain integers; it fails with EBADF on an invalid `from`.
    let rc = unsafe { libc::dup2(from, to) };
    Errno::result(rc).map(drop)
}

/// Closes a raw descriptor that the caller owns.
pub fn close(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: close takes a plain integer; the caller gives up `fd`, which is not used again.
    Errno::result(unsafe { libc::close(fd) }).map(drop)
}

/// Whether `fd` is open for reading and for writing (its access mode, `F_GETFL`).
pub fn access_mode(fd: RawFd) -> Result<(bool, bool), Errno> {
    // SAFETY: `fd` is only used for the duration of the call; an invalid descriptor yields EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = OFlag::from_bits_truncate(fcntl(borrowed, FcntlArg::F_GETFL)?);
    Ok(match flags & OFlag::O_ACCMODE {
        OFlag::O_RDONLY => (true, false),
        OFlag::O_WRONLY => (false, true),
        _ => (true, true),
    })
}
