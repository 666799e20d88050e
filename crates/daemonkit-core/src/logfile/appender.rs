//! Writing a stream of output into a log file a whole line at a time when writes fail.

use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::fsutil::fstat;

/// What was lost while writes failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loss {
    /// Complete lines lost.
    pub lines: u64,
    /// Bytes lost (a line cut short counts whole).
    pub bytes: u64,
    /// The error of the first failed write.
    pub errno: i32,
}

/// Writes a stream of output into a log file, a line whole or not at all.
///
/// When a write fails (a full disk, a quota), the unfinished line at the file's end is cut off
/// again and everything up to the next line boundary is dropped, and counted. The next write
/// that works first puts one notice line ([`Appender::notice`]) saying how much was lost.
#[derive(Debug)]
pub struct Appender {
    fd: RawFd,
    /// The file's size after our last write, when it is a regular file.
    size: Option<u64>,
    /// How many bytes at the file's end belong to a line whose newline has not come yet.
    partial: u64,
    loss: Option<Loss>,
    /// During a loss: the last byte dropped was not a newline, so the rest of that line is
    /// dropped too.
    mid_line: bool,
    /// The file ends in a piece of a line that could not be cut off again (someone else wrote
    /// to the file meanwhile): the notice starts on a line of its own.
    torn: bool,
}

impl Appender {
    /// Writes into `fd` (a log file open for append, or any other descriptor), which the caller
    /// keeps owning.
    pub fn new(fd: RawFd) -> Appender {
        let mut a = Appender { fd, size: None, partial: 0, loss: None, mid_line: false, torn: false };
        a.reset();
        a
    }

    /// Forgets what it knew of the file (after another file was put at the descriptor, e.g. on
    /// log rotation). A pending loss is still reported, in the new file.
    pub fn reset(&mut self) {
        self.size = fstat(self.fd).ok().filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG).map(|st| st.st_size as u64);
        self.partial = 0;
    }

    /// What has been lost and not yet reported.
    pub fn loss(&self) -> Option<Loss> {
        self.loss
    }

    /// The line that reports `loss`.
    pub fn notice(loss: &Loss) -> String {
        format!(
            "daemonkit-supervise: {} lines ({} bytes) of output were lost: {}\n",
            loss.lines,
            loss.bytes,
            Errno::from_raw(loss.errno).desc()
        )
    }

    /// Writes `data`, the next piece of the stream.
    pub fn write(&mut self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(mut loss) = self.loss.take() {
            if self.mid_line {
                match data.iter().position(|&b| b == b'\n') {
                    None => {
                        loss.bytes += data.len() as u64;
                        self.loss = Some(loss);
                        return;
                    }
                    Some(i) => {
                        loss.bytes += i as u64 + 1;
                        loss.lines += 1;
                        data = &data[i + 1..];
                        self.mid_line = false;
                    }
                }
            }
            if data.is_empty() {
                self.loss = Some(loss);
                return;
            }
            self.catch_up();
            let notice = format!("{}{}", if self.torn { "\n" } else { "" }, Appender::notice(&loss));
            if let Err((written, _)) = self.raw_write(notice.as_bytes()) {
                self.cut(written as u64);
                loss.bytes += data.len() as u64;
                loss.lines += count_lines(data);
                self.mid_line = data.last() != Some(&b'\n');
                self.loss = Some(loss);
                return;
            }
            self.torn = false;
        }
        self.catch_up();
        match self.raw_write(data) {
            Ok(()) => self.partial = after_last_newline(data, self.partial),
            Err((written, errno)) => {
                let done = &data[..written];
                let unfinished = after_last_newline(done, self.partial);
                let cut = self.cut(unfinished);
                self.torn = !cut;
                let rest = &data[written..];
                self.loss = Some(Loss {
                    lines: count_lines(rest),
                    bytes: rest.len() as u64 + if cut { unfinished } else { 0 },
                    errno: errno as i32,
                });
                self.mid_line = rest.last() != Some(&b'\n');
            }
        }
    }

    /// Someone else may have written to the file since our last write (a line of our own
    /// caller's, a rotation by `copytruncate`): then what we knew of its end is stale.
    fn catch_up(&mut self) {
        if let Some(size) = self.size {
            let current = fstat(self.fd).map(|st| st.st_size as u64).unwrap_or(size);
            if current != size {
                self.size = Some(current);
                self.partial = 0;
            }
        }
    }

    /// Writes all of `data`, or says how much went in before which error.
    fn raw_write(&mut self, mut data: &[u8]) -> Result<(), (usize, Errno)> {
        let mut written = 0;
        while !data.is_empty() {
            // SAFETY: `data` is a valid buffer of data.len() bytes.
            let n = unsafe { libc::write(self.fd, data.as_ptr() as *const libc::c_void, data.len()) };
            if n < 0 {
                match Errno::last() {
                    Errno::EINTR => continue,
                    errno => return Err((written, errno)),
                }
            }
            if n == 0 {
                return Err((written, Errno::ENOSPC));
            }
            let n = n as usize;
            written += n;
            self.size = self.size.map(|s| s + n as u64);
            data = &data[n..];
        }
        Ok(())
    }

    /// Cuts the last `len` bytes off the file, if it still ends where our writes left it.
    /// Returns whether the file now ends at a line boundary.
    fn cut(&mut self, len: u64) -> bool {
        self.partial = 0;
        if len == 0 {
            return true;
        }
        let Some(size) = self.size else { return false };
        let current = fstat(self.fd).map(|st| st.st_size as u64).unwrap_or(u64::MAX);
        if current != size || len > size {
            self.size = Some(current);
            return false;
        }
        // SAFETY: ftruncate on a descriptor the caller keeps open; shrinking only.
        if unsafe { libc::ftruncate(self.fd, (size - len) as libc::off_t) } != 0 {
            return false;
        }
        self.size = Some(size - len);
        true
    }
}

fn count_lines(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

/// How many bytes follow the last newline once `data` is appended to a file that had `before`
/// bytes after its last newline.
fn after_last_newline(data: &[u8], before: u64) -> u64 {
    match data.iter().rposition(|&b| b == b'\n') {
        Some(i) => (data.len() - i - 1) as u64,
        None => before + data.len() as u64,
    }
}
