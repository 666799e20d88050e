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
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemonkit_core::launch::Credentials;
use daemonkit_core::{pidfile, privileges, stdio};

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

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Restart {
    Never,
    OnFailure,
    Always,
}

struct Config {
    program: OsString,
    args: Vec<OsString>,
    ready_fd: Option<RawFd>,
    lock_fd: Option<RawFd>,
    pidfile: Option<PathBuf>,
    stdout: Option<PathBuf>,
    stderr: Option<PathBuf>,
    restart: Restart,
    backoff_min: Duration,
    backoff_max: Duration,
    burst: u32,
    burst_window: Duration,
    credentials: Option<Credentials>,
    chroot: Option<OsString>,
    cwd: Option<OsString>,
    umask: Option<libc::mode_t>,
    notify: bool,
    forward_hup: bool,
    /// Start the command in a session of its own (`daemonkit run` in a terminal: Ctrl-C then
    /// reaches it once, forwarded, instead of twice, and the terminal's job control cannot
    /// stop it).
    new_session: bool,
    wait_ready: bool,
    /// Listening sockets we hold and pass to every command we start, with their names.
    listen: Vec<(RawFd, String)>,
    /// How long an old command has between SIGTERM and SIGKILL after a graceful restart.
    stop_timeout: Duration,
    /// How long a graceful restart waits for the new command's `READY=1`.
    upgrade_timeout: Duration,
    /// With a launcher: report `READY` only once the command has stayed up this long (or said
    /// `READY=1` before); an exit within it is a failed start (`NOTREADY`). Zero: at exec.
    settle: Duration,
}

fn usage() -> &'static str {
    "usage: daemonkit-supervise [--ready-fd N] [--lock-fd N --pidfile PATH] [--stdout PATH] [--stderr PATH]\n\
     \x20      [--restart never|on-failure|always] [--backoff-min MS] [--backoff-max MS] [--burst N] [--burst-window MS]\n\
     \x20      [--user USER] [--group GROUP] [--chroot DIR] [--cwd DIR] [--umask OCTAL] [--notify] [--forward-hup] [--wait-ready]\n\
     \x20      [--settle MS] [--new-session] [--listen-fd N:NAME ...]
     \x20      [--stop-timeout MS] [--upgrade-timeout MS]
     \x20      -- PROGRAM [ARGS...]"
}

/// What is wrong with the arguments; `usage`: whether it is a matter of syntax (then the usage
/// text helps), rather than a name that does not resolve.
struct ArgsError {
    message: String,
    usage: bool,
}

fn parse_args(argv: Vec<OsString>) -> Result<Config, ArgsError> {
    let (mut cfg, user, group) = parse_options(argv).map_err(|message| ArgsError { message, usage: true })?;
    cfg.credentials = privileges::resolve(user.as_deref(), group.as_deref()).map_err(|e| ArgsError { message: e.to_string(), usage: false })?;
    Ok(cfg)
}

/// The options as given; `--user` and `--group` still as names.
fn parse_options(argv: Vec<OsString>) -> Result<(Config, Option<String>, Option<String>), String> {
    let mut it = argv.into_iter().skip(1);
    let mut cfg = Config {
        program: OsString::new(),
        args: Vec::new(),
        ready_fd: None,
        lock_fd: None,
        pidfile: None,
        stdout: None,
        stderr: None,
        restart: Restart::Never,
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(30),
        burst: 5,
        burst_window: Duration::from_secs(60),
        credentials: None,
        chroot: None,
        cwd: None,
        umask: None,
        notify: false,
        forward_hup: false,
        new_session: false,
        wait_ready: false,
        listen: Vec::new(),
        stop_timeout: Duration::from_secs(10),
        upgrade_timeout: Duration::from_secs(30),
        settle: Duration::ZERO,
    };
    let mut user: Option<String> = None;
    let mut group: Option<String> = None;
    loop {
        let Some(flag) = it.next() else { return Err("missing -- PROGRAM".into()) };
        let flag = flag.into_string().map_err(|f| format!("bad option {f:?}"))?;
        if flag == "--" {
            break;
        }
        if flag == "--notify" {
            cfg.notify = true;
            continue;
        }
        if flag == "--new-session" {
            cfg.new_session = true;
            continue;
        }
        if flag == "--forward-hup" {
            cfg.forward_hup = true;
            continue;
        }
        if flag == "--wait-ready" {
            cfg.wait_ready = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let text = || value.clone().into_string().map_err(|_| format!("{flag}: not UTF-8"));
        let number = |t: String| t.parse::<u64>().map_err(|_| format!("{flag}: not a number: {t}"));
        let fd = |t: String| t.parse::<RawFd>().ok().filter(|&fd| fd >= 0).ok_or_else(|| format!("{flag}: not a descriptor: {t}"));
        match flag.as_str() {
            "--ready-fd" => cfg.ready_fd = Some(fd(text()?)?),
            "--lock-fd" => cfg.lock_fd = Some(fd(text()?)?),
            "--listen-fd" => {
                let t = text()?;
                let (n, name) = t.split_once(':').unwrap_or((t.as_str(), "unknown"));
                if name.is_empty() || name.contains(':') || name.len() > 255 {
                    return Err(format!("--listen-fd: bad socket name {name:?}"));
                }
                cfg.listen.push((fd(n.to_string())?, name.to_string()));
            }
            "--pidfile" => cfg.pidfile = Some(PathBuf::from(value)),
            "--stdout" => cfg.stdout = Some(PathBuf::from(value)),
            "--stderr" => cfg.stderr = Some(PathBuf::from(value)),
            "--restart" => {
                cfg.restart = match text()?.as_str() {
                    "never" | "no" => Restart::Never,
                    "on-failure" => Restart::OnFailure,
                    "always" => Restart::Always,
                    other => return Err(format!("--restart: unknown policy {other}")),
                }
            }
            "--stop-timeout" => cfg.stop_timeout = Duration::from_millis(number(text()?)?),
            "--upgrade-timeout" => cfg.upgrade_timeout = Duration::from_millis(number(text()?)?),
            "--backoff-min" => cfg.backoff_min = Duration::from_millis(number(text()?)?),
            "--backoff-max" => cfg.backoff_max = Duration::from_millis(number(text()?)?),
            "--burst" => cfg.burst = number(text()?)? as u32,
            "--burst-window" => cfg.burst_window = Duration::from_millis(number(text()?)?),
            "--settle" => cfg.settle = Duration::from_millis(number(text()?)?),
            "--user" => user = Some(text()?),
            "--group" => group = Some(text()?),
            "--chroot" => cfg.chroot = Some(value),
            "--cwd" => cfg.cwd = Some(value),
            "--umask" => {
                let t = text()?;
                cfg.umask = Some(libc::mode_t::from_str_radix(&t, 8).map_err(|_| format!("--umask: not octal: {t}"))?)
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    cfg.program = it.next().ok_or("missing PROGRAM after --")?;
    cfg.args = it.collect();
    Ok((cfg, user, group))
}

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
            let line = format!("FAIL config 22 {msg}\n");
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
                Some(ready) => write_all(ready, format!("FAIL pidfile {} {msg}\n", errno as i32).as_bytes()),
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
