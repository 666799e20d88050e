//! What a daemon checks before it trusts a hand-off: [`pidfile::verify_inherited_lock`] on real
//! files and real `flock`s (one held by a util-linux `flock` in another process), and
//! [`notify::reachable`] on real datagram sockets.

mod common;

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use common::{locked, serial, LockHolder, TempDir};
use daemonkit_core::notify;
use daemonkit_core::pidfile::{verify_inherited_lock, InheritedLockProblem, Pidfile};

fn rw(path: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(path).unwrap()
}

#[test]
fn the_descriptor_that_holds_the_lock_is_proven() {
    let _guard = serial();
    let dir = TempDir::new("inherited-ok");
    let path = dir.join("d.pid");
    let pidfile = Pidfile::acquire(&path).unwrap();
    assert_eq!(verify_inherited_lock(pidfile.as_raw_fd(), &path), Ok(()));
    // Twice: the proof leaves the lock as it was.
    assert_eq!(verify_inherited_lock(pidfile.as_raw_fd(), &path), Ok(()));
    assert!(locked(&path));
    drop(pidfile);
    assert!(!locked(&path));
}

#[test]
fn an_unlocked_file_is_refused_and_the_proof_takes_no_lock() {
    let _guard = serial();
    let dir = TempDir::new("inherited-unlocked");
    let path = dir.join("d.pid");
    fs::write(&path, "").unwrap();
    let file = rw(&path);
    assert_eq!(verify_inherited_lock(file.as_raw_fd(), &path), Err(InheritedLockProblem::NotLocked));
    assert!(!locked(&path), "no lock left behind by the failed proof");
}

#[test]
fn a_lock_held_through_another_open_file_description_is_refused() {
    let _guard = serial();
    let dir = TempDir::new("inherited-other");
    let path = dir.join("d.pid");
    fs::write(&path, "").unwrap();
    let _holder = LockHolder::hold(&path);
    let file = rw(&path);
    assert_eq!(verify_inherited_lock(file.as_raw_fd(), &path), Err(InheritedLockProblem::LockedByOther));
    assert!(locked(&path), "the holder still holds it");
}

#[test]
fn another_file_a_symlink_or_a_replaced_path_is_refused() {
    let _guard = serial();
    let dir = TempDir::new("inherited-file");
    let path = dir.join("d.pid");
    let pidfile = Pidfile::acquire(&path).unwrap();

    let other = dir.join("precious.log");
    fs::write(&other, "precious\n").unwrap();
    let file = rw(&other);
    assert_eq!(verify_inherited_lock(file.as_raw_fd(), &path), Err(InheritedLockProblem::OtherFile));
    assert_eq!(fs::read_to_string(&other).unwrap(), "precious\n");

    let link = dir.join("link.pid");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert_eq!(verify_inherited_lock(pidfile.as_raw_fd(), &link), Err(InheritedLockProblem::OtherFile));

    let missing = dir.join("missing.pid");
    assert_eq!(verify_inherited_lock(pidfile.as_raw_fd(), &missing), Err(InheritedLockProblem::OtherFile));

    fs::remove_file(&path).unwrap();
    fs::write(&path, "").unwrap();
    assert_eq!(verify_inherited_lock(pidfile.as_raw_fd(), &path), Err(InheritedLockProblem::OtherFile));
}

#[test]
fn a_read_only_descriptor_a_pipe_or_a_closed_descriptor_is_refused() {
    let _guard = serial();
    let dir = TempDir::new("inherited-kind");
    let path = dir.join("d.pid");
    let _pidfile = Pidfile::acquire(&path).unwrap();
    let read_only = File::open(&path).unwrap();
    assert_eq!(verify_inherited_lock(read_only.as_raw_fd(), &path), Err(InheritedLockProblem::NotWritable));

    let (r, w) = daemonkit_core::stdio::pipe_cloexec().unwrap();
    assert_eq!(verify_inherited_lock(w.as_raw_fd(), &path), Err(InheritedLockProblem::NotRegular("a FIFO")));
    drop(r);

    let closed = File::open(&path).unwrap().into_raw_fd();
    daemonkit_core::stdio::close(closed).unwrap();
    assert_eq!(verify_inherited_lock(closed, &path), Err(InheritedLockProblem::NotOpen));
}

#[test]
fn a_notify_socket_is_reachable_only_when_someone_listens() {
    let dir = TempDir::new("notify-reachable");
    let path = dir.join("notify.sock");
    assert!(notify::reachable(path.as_os_str()).is_err(), "nothing at the path");
    let listener = UnixDatagram::bind(&path).unwrap();
    notify::reachable(path.as_os_str()).unwrap();
    drop(listener);
    assert!(notify::reachable(path.as_os_str()).is_err(), "a socket file nobody listens on");

    assert!(notify::reachable(std::ffi::OsStr::new("not a socket at all")).is_err());
    // Nothing was sent: a datagram would be waiting on a listener that is still there.
    let listener = UnixDatagram::bind(dir.join("quiet.sock")).unwrap();
    notify::reachable(dir.join("quiet.sock").as_os_str()).unwrap();
    listener.set_nonblocking(true).unwrap();
    assert!(listener.recv(&mut [0u8; 16]).is_err(), "no datagram arrived");
}

#[cfg(target_os = "linux")]
#[test]
fn an_abstract_notify_socket_is_reachable_only_while_bound() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("@daemonkit-test-{}-reachable", std::process::id());
    assert!(notify::reachable(std::ffi::OsStr::new(&name)).is_err(), "an abstract name nobody bound");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap();
    let bound = UnixDatagram::bind_addr(&addr).unwrap();
    notify::reachable(std::ffi::OsStr::new(&name)).unwrap();
    drop(bound);
    assert!(notify::reachable(std::ffi::OsStr::new(&name)).is_err());
}
