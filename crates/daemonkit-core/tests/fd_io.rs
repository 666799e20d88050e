//! The descriptor helpers Bun and Deno use instead of their own `fs`: non-blocking reads of a
//! pipe, writes, and `fstat`, on real pipes and files.

use std::os::fd::AsRawFd;

use daemonkit_core::stdio;

#[test]
fn read_available_sees_nothing_then_data_then_end_of_file() {
    let (r, w) = stdio::pipe_cloexec().unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(stdio::read_available(r.as_raw_fd(), &mut buf).unwrap(), None, "empty pipe: nothing yet, no blocking");
    assert_eq!(stdio::write(w.as_raw_fd(), b"READY x 1\n").unwrap(), 10);
    assert_eq!(stdio::read_available(r.as_raw_fd(), &mut buf).unwrap(), Some(10));
    assert_eq!(&buf[..10], b"READY x 1\n");
    drop(w);
    assert_eq!(stdio::read_available(r.as_raw_fd(), &mut buf).unwrap(), Some(0), "writer gone: end of file");
}

#[test]
fn read_available_on_a_descriptor_that_is_not_open_is_ebadf() {
    // A number above any RLIMIT_NOFILE: never open, even with other tests running alongside.
    let mut buf = [0u8; 4];
    assert_eq!(stdio::read_available(i32::MAX, &mut buf), Err(daemonkit_core::Errno::EBADF));
}

#[test]
fn write_to_a_pipe_without_reader_is_epipe() {
    // SAFETY: ignoring SIGPIPE for this test process, as Node, Bun and Deno do.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let (r, w) = stdio::pipe_cloexec().unwrap();
    drop(r);
    assert_eq!(stdio::write(w.as_raw_fd(), b"x"), Err(daemonkit_core::Errno::EPIPE));
}

#[test]
fn peer_closed_tells_when_the_last_reader_of_a_pipe_is_gone() {
    let (r, w) = stdio::pipe_cloexec().unwrap();
    let second_reader = nix::unistd::dup(&r).unwrap();
    assert_eq!(stdio::peer_closed(w.as_raw_fd()), Ok(false), "a reader is there");
    assert_eq!(stdio::write(w.as_raw_fd(), b"x").unwrap(), 1);
    assert_eq!(stdio::peer_closed(w.as_raw_fd()), Ok(false), "unread data does not count");
    drop(r);
    assert_eq!(stdio::peer_closed(w.as_raw_fd()), Ok(false), "one reader is left");
    drop(second_reader);
    assert_eq!(stdio::peer_closed(w.as_raw_fd()), Ok(true), "every reader is gone");
    assert_eq!(stdio::peer_closed(i32::MAX), Err(daemonkit_core::Errno::EBADF));
}

#[test]
fn file_id_tells_pipes_directories_and_files_apart() {
    let (r, w) = stdio::pipe_cloexec().unwrap();
    let (ri, wi) = (stdio::file_id(r.as_raw_fd()).unwrap(), stdio::file_id(w.as_raw_fd()).unwrap());
    assert!(ri.is_fifo() && !ri.is_dir());
    assert_eq!((ri.dev, ri.ino), (wi.dev, wi.ino), "both ends are one pipe");
    let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
    let di = stdio::file_id(dir.as_raw_fd()).unwrap();
    assert!(di.is_dir() && !di.is_fifo());
    let file = std::fs::File::open("/proc/self/cmdline").unwrap();
    let fi = stdio::file_id(file.as_raw_fd()).unwrap();
    assert!(!fi.is_dir() && !fi.is_fifo());
    assert_ne!((fi.dev, fi.ino), (ri.dev, ri.ino));
}
