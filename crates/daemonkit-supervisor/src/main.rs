//! `daemonkit-supervise`: runs one command for daemonkit and holds the daemon's pidfile lock
//! for the command's whole life.
//!
//! It is started by daemonkit's launcher as the daemon (so it is the process the pidfile
//! names), and it:
//! - starts the command as its child, with the requested user, group, chroot, cwd and umask,
//!   and with `PR_SET_PDEATHSIG` so the command dies if the supervisor is killed;
//! - tells the launcher `READY <child pid>` once the command has exec'd, or
//!   `FAIL <stage> <errno> <message>` if it could not; with `--wait-ready`, only once the
//!   command has said `READY=1` on the `$NOTIFY_SOCKET` it is given (the systemd protocol, which
//!   a Node program using daemonkit speaks by itself), or `NOTREADY <status> <stderr as JSON>`
//!   if it exits first; with `--settle MS`, once it has said `READY=1` or stayed up that long;
//! - forwards SIGTERM, SIGINT, SIGQUIT, SIGUSR1 and SIGUSR2 to the command, and SIGHUP too unless it
//!   writes log files: then SIGHUP reopens them (so `logrotate` works without `copytruncate`)
//!   and reaches the command only with `--forward-hup`, since most programs die of it;
//! - with `--wait-ready`, answers a graceful restart (SIGUSR2, or `UPGRADE` on its control
//!   socket, see `daemonkit_core::listen::control_name`): starts a new copy of the command beside the running one,
//!   with the same listening sockets, waits for its `READY=1`, then stops the old one
//!   (SIGTERM, SIGKILL after `--stop-timeout`); a new copy that exits or is not ready within
//!   `--upgrade-timeout` is killed and the old one keeps running untouched;
//! - optionally restarts the command when it dies, with exponential backoff and a burst limit;
//! - is a child subreaper, so the processes the command leaves behind are re-parented to it:
//!   once the command has exited (stopped or by itself), every remaining descendant gets
//!   SIGTERM, then SIGKILL after a grace period (see [`supervision`]), before a restart or the supervisor's exit;
//! - keeps a guard process (see [`guard`]) that ends the command's process group if the
//!   supervisor is killed;
//! - at the end removes the pidfile while still holding its lock, and exits with the
//!   command's status.
//!
//! Usage: `daemonkit-supervise [options] -- PROGRAM [ARGS...]` (see `usage()`).

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::Path;

use daemonkit_core::supervise::{parse_args, usage, ArgsError, Config, Report, Restart};
use daemonkit_core::{pidfile, stdio};

mod command;
mod control;
mod fd;
mod guard;
mod logs;
mod readiness;
mod reports;
mod restart;
mod signals;
mod supervision;

use fd::write_all;

/// The raw value after `flag` on our command line, for the error path, where the arguments as a
/// whole could not be parsed.
fn raw_arg(flag: &str) -> Option<OsString> {
    std::env::args_os().skip_while(|a| a != flag).nth(1)
}

/// The descriptor after `flag` on our command line, if it is one (error path, as [`raw_arg`]).
fn raw_fd_arg(flag: &str) -> Option<RawFd> {
    raw_arg(flag)?.to_str()?.parse::<RawFd>().ok().filter(|&fd| fd >= 0)
}

/// With arguments we cannot use, nothing else will clean up a pidfile already handed over to
/// us (`--lock-fd N --pidfile PATH`): remove it while its lock is still ours.
fn remove_handed_over_pidfile() {
    if let (Some(fd), Some(path)) = (raw_fd_arg("--lock-fd"), raw_arg("--pidfile")) {
        let _ = pidfile::remove_if_same(Path::new(&path), fd);
    }
}

fn main() {
    let cfg = match parse_args(std::env::args_os().collect()) {
        Ok(cfg) => cfg,
        Err(ArgsError { message: msg, usage: show_usage }) => {
            let ready = raw_fd_arg("--ready-fd");
            let line = Report::Fail { stage: "config".into(), errno: libc::EINVAL, message: msg.clone() }.encode();
            if let Some(fd) = ready {
                write_all(fd, line.as_bytes());
            }
            if show_usage {
                eprintln!("daemonkit-supervise: {msg}\n{}", usage());
            } else {
                eprintln!("daemonkit-supervise: {msg}");
            }
            remove_handed_over_pidfile();
            std::process::exit(2);
        }
    };
    // Our children must not inherit the lock, the readiness pipe or the logs.
    for fd in cfg.ready_fd.iter().chain(cfg.lock_fd.iter()).chain(cfg.listen.iter().map(|(fd, _)| fd)) {
        let _ = stdio::set_cloexec(*fd, true);
    }
    if let (Some(fd), Some(path)) = (cfg.lock_fd, &cfg.pidfile) {
        if let Err(errno) = pidfile::write_pid_fd(fd, std::process::id() as i32) {
            // A pidfile without our pid makes every later start, stop and status wrong: fail.
            let msg = format!("cannot write the pid into {}: {}", path.display(), errno.desc());
            match cfg.ready_fd {
                Some(ready) => write_all(ready, Report::Fail { stage: "pidfile".into(), errno: errno as i32, message: msg }.encode().as_bytes()),
                None => eprintln!("daemonkit-supervise: {msg}"),
            }
            let _ = pidfile::remove_if_same(path, fd);
            std::process::exit(1);
        }
        // A new start ends the failed state of the last one, and counts restarts from zero.
        reports::remove_side_files(path);
    }
    let signals = signals::SignalPipe::install().expect("self-pipe");
    supervision::supervise(cfg, signals)
}
