//! What a pidfile holds: a decimal pid and a newline, read and written whole.

use std::fmt;
use std::os::fd::RawFd;

use nix::errno::Errno;

use super::PathProblem;
use crate::fsutil::{fstat, links};

/// The largest pidfile content read; a pid and a newline fit many times over.
const MAX_CONTENT: usize = 64;

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

/// Refuses a file with other names, or whose content is not a pidfile's.
pub(super) fn check_pidfile_like(fd: RawFd, st: &libc::stat) -> Result<(), PathProblem> {
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
