//! Integration tests of `daemonkit_core::signals` on real processes: launched daemons (adopted
//! as a child subreaper and reaped by pid) and short-lived children of this process.

// These tests need Linux: `/proc`, a child subreaper, Linux-only syscalls or util-linux tools.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::time::{Duration, Instant};

use common::{children_of_self, reaper_setup as setup, Exit, Reaped};
use daemonkit_core::launch::Command;
use daemonkit_core::signals::{is_alive, ProcessHandle};
use daemonkit_core::Errno;

fn launch_sleep() -> Reaped {
    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("30");
    Reaped::adopt(cmd.launch().expect("launch sleep").pid)
}

/// A pid that named a process of ours a moment ago and has been reaped since.
fn reaped_pid() -> i32 {
    let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
    child.wait().unwrap();
    child.id() as i32
}

#[test]
fn process_handle_refuses_reserved_and_missing_pids() {
    let _s = setup();
    for pid in [-1, 0, 1] {
        assert_eq!(ProcessHandle::open(pid).unwrap_err(), Errno::EINVAL, "open({pid})");
    }
    assert_eq!(ProcessHandle::open(reaped_pid()).unwrap_err(), Errno::ESRCH);
}

#[test]
fn process_handle_signals_and_waits_for_a_daemon() {
    let _s = setup();
    let mut d = launch_sleep();
    let handle = ProcessHandle::open(d.pid).expect("open handle");
    assert_eq!(handle.pid(), d.pid);
    // SAFETY: F_GETFD on the handle's descriptor.
    assert_ne!(unsafe { libc::fcntl(handle.as_raw_fd().expect("a pidfd"), libc::F_GETFD) } & libc::FD_CLOEXEC, 0);
    assert!(is_alive(d.pid));
    handle.signal(0).expect("signal 0 to a live process");

    let started = Instant::now();
    assert_eq!(handle.wait_exit(Duration::from_millis(100)), Ok(false));
    assert!(started.elapsed() >= Duration::from_millis(90), "wait_exit returned early");

    handle.signal(libc::SIGTERM).unwrap();
    assert_eq!(handle.wait_exit(Duration::from_secs(10)), Ok(true));
    // Exited but not reaped yet (we are its reaper): a zombie counts as exited.
    assert_eq!(common::read_stat(d.pid).map(|s| s.state), Some('Z'));
    assert!(!is_alive(d.pid));
    assert_eq!(handle.wait_exit(Duration::ZERO), Ok(true));

    assert_eq!(d.wait(), Exit::Signal(libc::SIGTERM));
    assert!(!is_alive(d.pid));
    // The handle stays bound to the dead process, whatever the pid names later.
    assert_eq!(handle.signal(libc::SIGTERM), Err(Errno::ESRCH));
    assert_eq!(handle.wait_exit(Duration::ZERO), Ok(true));
}

#[test]
fn process_handle_delivers_the_requested_signal() {
    let _s = setup();
    for sig in [libc::SIGKILL, libc::SIGINT, libc::SIGUSR1, libc::SIGHUP] {
        let mut d = launch_sleep();
        let handle = ProcessHandle::open(d.pid).unwrap();
        handle.signal(sig).unwrap();
        assert_eq!(handle.wait_exit(Duration::from_secs(10)), Ok(true));
        // The daemon's dispositions are the defaults, so each of these kills it.
        assert_eq!(d.wait(), Exit::Signal(sig));
    }
    assert_eq!(children_of_self(), vec![]);
}

#[test]
fn is_alive_judges_by_process_state() {
    let _s = setup();
    assert!(is_alive(std::process::id() as i32));
    assert!(!is_alive(0));
    assert!(!is_alive(-1));
    assert!(!is_alive(reaped_pid()));

    // A zombie child: exited, not reaped.
    let child = std::process::Command::new("/bin/true").spawn().unwrap();
    let mut z = Reaped::adopt(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::read_stat(z.pid).map(|s| s.state) != Some('Z') {
        assert!(Instant::now() < deadline, "child never exited");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!is_alive(z.pid));
    assert_eq!(z.wait(), Exit::Code(0));
    drop(child);
}
