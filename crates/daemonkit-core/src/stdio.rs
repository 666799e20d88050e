//! File-descriptor helpers used around a launch: pipes, `dup2`, close-on-exec.

use std::os::fd::{OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::stat::SFlag;

/// Creates a pipe whose both ends are close-on-exec. Returns `(read, write)`.
///
/// Atomic (`pipe2`) where the system has it. Apple's systems have no `pipe2`: there the flag
/// is set right after `pipe`, so a thread that forks and execs in between could leak the ends
/// into that child; daemonkit's own launches prepare every descriptor before they fork.
pub fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), Errno> {
    #[cfg(not(apple_targets))]
    {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
    }
    #[cfg(apple_targets)]
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

/// Reads what `fd` has available right now into `buf`, without blocking: `Ok(None)` when
/// nothing is there yet, `Ok(Some(0))` at end of file, else the number of bytes read.
pub fn read_available(fd: RawFd, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // SAFETY: `fd` is only used for the duration of the call; an invalid descriptor yields EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLIN)];
    let ready = loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    if ready == 0 {
        return Ok(None);
    }
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    if revents.contains(PollFlags::POLLNVAL) {
        return Err(Errno::EBADF);
    }
    match nix::unistd::read(borrowed, buf) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether nothing is left at the other end of `fd`: for the write end of a pipe, whether every
/// read end is closed. Asks `poll`, without waiting, whether `fd` is writable: Linux answers
/// `POLLERR` for a pipe without readers, macOS and the BSDs `POLLHUP` (they report nothing at
/// all for a descriptor polled for no event, so `POLLOUT` is asked; its own answer is not used).
pub fn peer_closed(fd: RawFd) -> Result<bool, Errno> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // SAFETY: `fd` is only used for the duration of the call; an invalid descriptor yields EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLOUT)];
    while let Err(e) = poll(&mut fds, PollTimeout::ZERO) {
        if e != Errno::EINTR {
            return Err(e);
        }
    }
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    if revents.contains(PollFlags::POLLNVAL) {
        return Err(Errno::EBADF);
    }
    Ok(revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

/// Writes `data` to `fd` (one `write`, retried on EINTR); returns how much was written.
pub fn write(fd: RawFd, data: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `fd` is only used for the duration of the call; an invalid descriptor yields EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    loop {
        match nix::unistd::write(borrowed, data) {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// What `fstat` says about an open descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// The file's device.
    pub dev: u64,
    /// The file's inode number.
    pub ino: u64,
    /// The file type bits of `st_mode` (`S_IFMT`).
    pub kind: SFlag,
}

impl FileId {
    /// A pipe or FIFO.
    pub fn is_fifo(&self) -> bool {
        self.kind == SFlag::S_IFIFO
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind == SFlag::S_IFDIR
    }
}

/// `fstat(fd)`: the device, inode and type of what `fd` is open on.
pub fn file_id(fd: RawFd) -> Result<FileId, Errno> {
    // SAFETY: `fd` is only used for the duration of the call; an invalid descriptor yields EBADF.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let st = nix::sys::stat::fstat(borrowed)?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    // The field types differ between platforms (st_dev is i32 on macOS).
    #[allow(clippy::unnecessary_cast)]
    Ok(FileId { dev: st.st_dev as u64, ino: st.st_ino as u64, kind })
}
