//! Descriptor helpers the supervisor's modules share.

use std::os::fd::RawFd;

use daemonkit_core::{stdio, Errno};

/// Writes all of `data` to `fd`. A failed write drops the rest: a full disk must not stop the
/// supervisor, the line is lost.
pub fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        match stdio::write(fd, data) {
            Ok(n) if n > 0 => data = &data[n..],
            _ => return,
        }
    }
}

/// Makes reads and writes on `fd` return `EAGAIN` instead of blocking.
pub fn set_nonblocking(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: fcntl on a descriptor the caller owns; an invalid one yields EBADF.
    let flags = Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    Errno::result(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Reads what `fd` (non-blocking) holds now into `buf`: the number of bytes, 0 at end of file
/// or when nothing is waiting.
pub fn read_now(fd: RawFd, buf: &mut [u8]) -> usize {
    // SAFETY: reads into a valid buffer of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    n.max(0) as usize
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    /// A fresh private directory for a test, removed first if a previous run left it.
    pub(crate) fn test_dir(name: &str) -> std::path::PathBuf {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("daemonkit-supervise-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    /// A pipe as raw descriptors `(read, write)`, both close-on-exec.
    pub(crate) fn pipe() -> (RawFd, RawFd) {
        let (r, w) = stdio::pipe_cloexec().unwrap();
        (r.into_raw_fd(), w.into_raw_fd())
    }

    #[test]
    fn write_all_then_read_now() {
        let (r, w) = pipe();
        set_nonblocking(r).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(read_now(r, &mut buf), 0, "nothing written yet: no blocking");
        write_all(w, b"hello\n");
        let n = read_now(r, &mut buf);
        assert_eq!(&buf[..n], b"hello\n");
        stdio::close(w).unwrap();
        assert_eq!(read_now(r, &mut buf), 0);
        stdio::close(r).unwrap();
    }

    #[test]
    fn write_all_writes_more_than_a_pipe_holds_at_once() {
        let (r, w) = pipe();
        let data = vec![b'x'; 200_000];
        let reader = std::thread::spawn(move || {
            let mut got = 0;
            let mut buf = [0u8; 65536];
            loop {
                // SAFETY: reads into a valid buffer (blocking read end).
                let n = unsafe { libc::read(r, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
                if n <= 0 {
                    break;
                }
                got += n as usize;
            }
            stdio::close(r).unwrap();
            got
        });
        write_all(w, &data);
        stdio::close(w).unwrap();
        assert_eq!(reader.join().unwrap(), data.len());
    }

    #[test]
    fn write_all_without_a_reader_gives_up() {
        let (r, w) = pipe();
        stdio::close(r).unwrap();
        write_all(w, b"lost\n"); // EPIPE (SIGPIPE is ignored): returns instead of retrying
        stdio::close(w).unwrap();
    }
}
