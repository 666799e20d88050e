//! Integration tests of `daemonkit_core::stdio`, the descriptor helpers.

mod common;

use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::MetadataExt;

use common::{fd_is_open, serial};
use daemonkit_core::stdio;
use daemonkit_core::Errno;

fn cloexec(fd: i32) -> bool {
    // SAFETY: F_GETFD takes a plain integer.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(flags >= 0, "fd {fd} is not open");
    flags & libc::FD_CLOEXEC != 0
}

/// A descriptor number not open in this process (tests holding `serial()` only).
fn free_fd() -> i32 {
    (200..2000).find(|&fd| !fd_is_open(fd)).unwrap()
}

#[test]
fn pipe_cloexec_gives_a_working_pipe_closed_on_exec() {
    let (r, w) = stdio::pipe_cloexec().unwrap();
    assert!(cloexec(r.as_raw_fd()));
    assert!(cloexec(w.as_raw_fd()));
    // SAFETY: plain reads and writes on our own descriptors.
    unsafe {
        assert_eq!(libc::write(w.as_raw_fd(), b"ping".as_ptr() as *const libc::c_void, 4), 4);
        drop(w);
    }
    assert_eq!(common::read_to_end_fd(r.as_raw_fd()), b"ping");
}

#[test]
fn open_dev_null_is_read_write_and_closed_on_exec() {
    let fd = stdio::open_dev_null().unwrap();
    assert!(cloexec(fd.as_raw_fd()));
    let null = std::fs::metadata("/dev/null").unwrap();
    let opened = std::fs::File::from(fd.try_clone().unwrap()).metadata().unwrap();
    assert_eq!((opened.dev(), opened.ino()), (null.dev(), null.ino()));
    // SAFETY: F_GETFL takes a plain integer.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(flags & libc::O_ACCMODE, libc::O_RDWR);
    assert_eq!(common::read_to_end_fd(fd.as_raw_fd()), b"");
}

#[test]
fn set_cloexec_sets_and_clears_the_flag() {
    let (r, _w) = stdio::pipe_cloexec().unwrap();
    let fd = r.as_raw_fd();
    stdio::set_cloexec(fd, false).unwrap();
    assert!(!cloexec(fd));
    stdio::set_cloexec(fd, false).unwrap();
    assert!(!cloexec(fd));
    stdio::set_cloexec(fd, true).unwrap();
    assert!(cloexec(fd));
    let _s = serial();
    assert_eq!(stdio::set_cloexec(free_fd(), true), Err(Errno::EBADF));
}

#[test]
fn dup_onto_places_a_copy_without_cloexec_and_close_closes_it() {
    let _s = serial();
    let (r, w) = stdio::pipe_cloexec().unwrap();
    let target = free_fd();
    stdio::dup_onto(w.as_raw_fd(), target).unwrap();
    assert!(!cloexec(target));
    // The copy is the same pipe: write through it, read from the other end.
    drop(w);
    // SAFETY: a plain write on the copy we own.
    unsafe { assert_eq!(libc::write(target, b"x".as_ptr() as *const libc::c_void, 1), 1) };
    stdio::close(target).unwrap();
    assert!(!fd_is_open(target));
    assert_eq!(common::read_to_end_fd(r.as_raw_fd()), b"x");
    assert_eq!(stdio::close(target), Err(Errno::EBADF));
    assert_eq!(stdio::dup_onto(target, free_fd()), Err(Errno::EBADF));

    // close gives up an owned descriptor for good.
    let (r2, w2) = stdio::pipe_cloexec().unwrap();
    let raw = w2.into_raw_fd();
    stdio::close(raw).unwrap();
    assert_eq!(common::read_to_end_fd(r2.as_raw_fd()), b"");
}
