//! Integration tests of `daemonkit_core::exec` and of `Command::spawn` with a session of its
//! own: real processes, inspected through `/proc` and through what they print.

// These tests need Linux: `/proc`, a child subreaper, Linux-only syscalls or util-linux tools.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::ffi::OsStr;
use std::fs;
use std::time::Duration;

use common::{read_stat, serial, Exit, Reaped, TempDir};
use daemonkit_core::exec::exec_replacing;
use daemonkit_core::launch::Command;
use daemonkit_core::Errno;

const HELPER_OUT: &str = "DAEMONKIT_EXEC_HELPER_OUT";

#[test]
fn spawn_in_a_session_of_its_own() {
    let _s = serial();
    // SAFETY: getpgrp and getsid have no preconditions.
    let (our_group, our_session) = unsafe { (libc::getpgrp(), libc::getsid(0)) };
    for own in [false, true] {
        let pid = Command::new("/bin/sleep").arg("30").new_session(own).spawn().expect("spawn").pid;
        let mut child = Reaped::adopt(pid);
        let stat = read_stat(pid).expect("the child runs");
        assert_eq!((stat.session, stat.pgrp), if own { (pid, pid) } else { (our_session, our_group) }, "new_session({own})");
        if own {
            assert_eq!(stat.tty_nr, 0, "no controlling terminal");
        }
        // SAFETY: `pid` is our unreaped child, so the number cannot have been recycled.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(child.wait_timeout(Duration::from_secs(10)), Exit::Signal(libc::SIGKILL));
    }
}

/// Runs in a child copy of this test binary (see below): opens one descriptor close-on-exec
/// (to keep) and one without the flag (to lose), makes its stdout (a file of the test's)
/// close-on-exec and non-blocking as Node.js would, fails one exec, then replaces itself with
/// a shell keeping only the first.
fn exec_helper(out: &str) -> ! {
    let open = |flags| {
        // SAFETY: a plain open(2) of a constant path.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | flags) };
        assert!(fd > 2);
        fd
    };
    let (kept, other) = (open(libc::O_CLOEXEC), open(0));
    // SAFETY: fcntl on this process's own stdout, a file the test made for it.
    unsafe {
        libc::fcntl(1, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(1, libc::F_SETFL, libc::fcntl(1, libc::F_GETFL) | libc::O_NONBLOCK);
    }
    let sh = OsStr::new("/bin/sh");
    let env = [OsStr::new("PATH=/usr/bin:/bin")];
    let script = format!("ls /proc/$$/fd > {out}.fds; echo {kept} {other} > {out}.numbers; grep flags /proc/$$/fdinfo/1 > {out}.stdout-flags");
    let args = [sh, OsStr::new("-c"), OsStr::new(&script)];

    let failed = exec_replacing(OsStr::new("/nonexistent/program"), &args, &env, &[kept]);
    // SAFETY: F_GETFD / F_GETFL on descriptors of this process.
    let (kept_flags, stdout_fd_flags, stdout_flags) =
        unsafe { (libc::fcntl(kept, libc::F_GETFD), libc::fcntl(1, libc::F_GETFD), libc::fcntl(1, libc::F_GETFL)) };
    let failure = format!(
        "{failed:?} {} {} {}",
        kept_flags & libc::FD_CLOEXEC,
        stdout_fd_flags & libc::FD_CLOEXEC,
        (stdout_flags & libc::O_NONBLOCK != 0) as i32
    );
    fs::write(format!("{out}.failure"), failure).unwrap();

    let errno = exec_replacing(sh, &args, &env, &[kept]);
    panic!("exec /bin/sh: {errno}");
}

#[test]
fn exec_replacing_keeps_only_the_chosen_descriptors_and_survives_a_failed_exec() {
    if let Ok(out) = std::env::var(HELPER_OUT) {
        exec_helper(&out);
    }
    let _s = serial();
    let dir = TempDir::new("exec");
    let out = dir.join("out");
    let stdout = fs::File::create(dir.join("stdout")).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exec_replacing_keeps_only_the_chosen_descriptors_and_survives_a_failed_exec", "--test-threads=1", "--nocapture"])
        .env(HELPER_OUT, &out)
        .stdout(stdout)
        .status()
        .expect("run the helper");
    assert!(status.success(), "helper: {status}");

    let failure = fs::read_to_string(dir.join("out.failure")).unwrap();
    assert_eq!(
        failure,
        format!("{:?} {} {} 1", Errno::ENOENT, libc::FD_CLOEXEC, libc::FD_CLOEXEC),
        "the failed exec put the flags back: close-on-exec on the kept fd and stdout, O_NONBLOCK on stdout"
    );
    let numbers = fs::read_to_string(dir.join("out.numbers")).unwrap();
    let (kept, other) = numbers.trim().split_once(' ').unwrap();
    let fds: Vec<String> = fs::read_to_string(dir.join("out.fds")).unwrap().split_whitespace().map(String::from).collect();
    assert!(fds.iter().any(|f| f == kept), "fd {kept} was kept: {fds:?}");
    assert!(!fds.iter().any(|f| f == other), "fd {other} was closed at exec: {fds:?}");
    assert!(fds.iter().any(|f| f == "1"), "stdout was kept although close-on-exec: {fds:?}");
    let stdout_flags = fs::read_to_string(dir.join("out.stdout-flags")).unwrap();
    let octal = u32::from_str_radix(stdout_flags.trim().trim_start_matches("flags:").trim(), 8).unwrap();
    assert_eq!(octal & libc::O_NONBLOCK as u32, 0, "stdout is blocking in the new program: {stdout_flags}");
}
