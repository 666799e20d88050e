//! The supervisor's decisions, driven by hand: no command is started. (None uses
//! `--wait-ready`: its control socket's name is our pid's, which the control tests bind.)

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use super::Supervisor;
use crate::fd::tests::{pipe, test_dir};
use crate::signals::SignalPipe;
use crate::Config;

fn config(args: &[&str]) -> Config {
    daemonkit_core::supervise::parse(args.iter().map(OsString::from)).unwrap()
}

fn supervisor(args: &[&str]) -> Supervisor {
    let (signals, _write_end) = SignalPipe::make().unwrap();
    let (sup, startup_error) = Supervisor::new(config(args), signals);
    assert_eq!(startup_error, None);
    sup
}

/// Everything that can still be read from `fd` (until its write end is closed).
fn read_to_end(fd: RawFd) -> String {
    let mut text = String::new();
    // SAFETY: `fd` is the caller's, given up to the File.
    unsafe { std::fs::File::from_raw_fd(fd) }.read_to_string(&mut text).unwrap();
    text
}

fn me() -> i32 {
    std::process::id() as i32
}

fn wait_status(script: &str) -> i32 {
    std::process::Command::new("/bin/sh").args(["-c", script]).status().unwrap().into_raw()
}

#[test]
fn ready_1_from_the_command_is_reported_once() {
    let dir = test_dir("sup-ready");
    let err = dir.join("err.log");
    let (r, w) = pipe();
    let mut sup = supervisor(&["--ready-fd", &w.to_string(), "--settle", "60000", "--stderr", err.to_str().unwrap(), "--", "app"]);
    assert!(sup.awaiting_ready, "the settle window stands for readiness");
    let socket = sup.ready_socket.as_ref().unwrap().name().to_owned();
    sup.child = Some(me()); // the "command" is this process
    sup.tail.push(b"starting up\n");
    daemonkit_core::notify::notify_to(&socket, "STATUS=almost").unwrap();
    sup.read_ready_socket();
    assert!(sup.awaiting_ready);
    daemonkit_core::notify::notify_to(&socket, "READY=1").unwrap();
    sup.read_ready_socket();
    assert!(!sup.awaiting_ready);
    assert_eq!(sup.tail.text(), "", "the tail is what came after readiness");
    assert_eq!(read_to_end(r), format!("READY {}\n", me()), "one line, then the pipe is closed");
    sup.command_ready(); // a second READY=1 changes nothing
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ready_1_from_a_stranger_is_ignored() {
    let mut stranger = std::process::Command::new("sleep").arg("5").spawn().unwrap();
    let (r, w) = pipe();
    let dir = test_dir("sup-stranger");
    let err = dir.join("err.log");
    let mut sup = supervisor(&["--ready-fd", &w.to_string(), "--settle", "60000", "--stderr", err.to_str().unwrap(), "--", "app"]);
    sup.child = Some(stranger.id() as i32); // we do not descend from it
    daemonkit_core::notify::notify_to(sup.ready_socket.as_ref().unwrap().name(), "READY=1").unwrap();
    sup.read_ready_socket();
    assert!(sup.awaiting_ready);
    assert!(sup.cfg.ready_fd.is_some(), "nothing reported");
    let _ = sup.cfg.ready_fd.take().map(daemonkit_core::stdio::close);
    assert_eq!(read_to_end(r), "");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exits_are_restarted_with_growing_delays() {
    let dir = test_dir("sup-restart");
    let err = dir.join("err.log");
    let mut sup = supervisor(&["--restart", "always", "--backoff-min", "100", "--stderr", err.to_str().unwrap(), "--", "app"]);
    assert!(!sup.awaiting_ready, "no launcher: nothing to wait for");
    assert_eq!(sup.after_exit(wait_status("exit 3")), Duration::from_millis(100));
    assert_eq!(sup.after_exit(wait_status("kill -9 $$")), Duration::from_millis(200));
    assert_eq!(
        std::fs::read_to_string(&err).unwrap(),
        "daemonkit-supervise: command exited with status 3; restarting in 100 ms\n\
         daemonkit-supervise: command exited with status 137; restarting in 200 ms\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_log_that_cannot_be_opened_is_a_startup_failure() {
    let (signals, _write_end) = SignalPipe::make().unwrap();
    let cfg = config(&["--stdout", "/nonexistent-daemonkit-dir/out.log", "--notify", "--", "app"]);
    let (sup, startup_error) = Supervisor::new(cfg, signals);
    let line = startup_error.unwrap();
    assert!(line.starts_with("FAIL logs 2 cannot open the log file /nonexistent-daemonkit-dir/out.log: "), "{line}");
    assert!(sup.ready_socket.is_none(), "nothing more is set up");
}

#[test]
fn a_graceful_restart_is_refused_while_not_ready() {
    let dir = test_dir("sup-refused");
    let err = dir.join("err.log");
    let mut sup = supervisor(&["--stderr", err.to_str().unwrap(), "--", "app"]);
    let (client, server) = UnixStream::pair().unwrap();
    sup.start_upgrade(Some(server));
    let mut answer = String::new();
    (&client).read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "FAIL starting \"the command is not running and ready (starting or restarting); try again\"\n");
    sup.stopping = true;
    sup.start_upgrade(None);
    assert_eq!(
        std::fs::read_to_string(Path::new(&err)).unwrap(),
        "daemonkit-supervise: graceful restart refused: the command is not running and ready (starting or restarting); try again\n\
         daemonkit-supervise: graceful restart refused: the daemon is stopping\n"
    );
    assert!(sup.upgrade.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
