//! The supervisor's protocol (`daemonkit_core::supervise`) for the launcher in TypeScript: its
//! defaults, its command line, its report lines and the errno names they carry.

use std::ffi::OsString;
use std::time::Duration;

use daemonkit_core::supervise::{self, Config, Report, Restart};
use napi_derive::napi;

/// The supervisor's defaults; durations in ms.
#[napi(object)]
pub struct SupervisorDefaults {
    /// The restart policy: `never`, `on-failure` or `always`.
    pub restart: String,
    /// The first restart delay, doubled on each restart.
    pub restart_delay: u32,
    /// The cap on the restart delay.
    pub restart_delay_max: u32,
    /// At most this many restarts within `restartWindow`.
    pub restart_burst: u32,
    /// The burst window.
    pub restart_window: u32,
    /// How long an old command has between SIGTERM and SIGKILL after a graceful restart.
    pub stop_timeout: u32,
    /// How long a graceful restart waits for the new command's `READY=1`.
    pub upgrade_timeout: u32,
    /// How long the command must stay up before the supervisor reports it ready (0: at exec).
    pub settle: u32,
    /// The settle window `daemonkit start` uses by default.
    pub start_settle: u32,
    /// How many bytes of the command's stderr a readiness failure carries (its last ones).
    pub tail_limit: u32,
    /// The supervisor executable's file name.
    pub name: String,
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The supervisor's defaults.
#[napi]
pub fn supervisor_defaults() -> SupervisorDefaults {
    let d = Config::default();
    SupervisorDefaults {
        restart: d.restart.as_str().to_string(),
        restart_delay: ms(d.backoff_min),
        restart_delay_max: ms(d.backoff_max),
        restart_burst: d.burst,
        restart_window: ms(d.burst_window),
        stop_timeout: ms(d.stop_timeout),
        upgrade_timeout: ms(d.upgrade_timeout),
        settle: ms(d.settle),
        start_settle: ms(supervise::START_SETTLE),
        tail_limit: supervise::TAIL_LIMIT as u32,
        name: supervise::SUPERVISOR_NAME.to_string(),
    }
}

/// A listening socket handed to the supervisor: its descriptor number there, and its name.
#[napi(object)]
pub struct SupervisorSocket {
    /// The descriptor number in the supervisor.
    pub fd: i32,
    /// The socket's name (`LISTEN_FDNAMES`).
    pub name: String,
}

/// What the supervisor is to do; unset options take the supervisor's defaults. Durations in ms.
#[napi(object)]
pub struct SupervisorOptions {
    /// The command to run.
    pub program: String,
    /// Its arguments (without `argv[0]`).
    pub args: Vec<String>,
    /// The descriptor (in the supervisor) it reports on.
    pub ready_fd: Option<i32>,
    /// The pidfile's locked descriptor (in the supervisor).
    pub lock_fd: Option<i32>,
    /// The pidfile locked through `lockFd`.
    pub pidfile: Option<String>,
    /// The command's stdout log file.
    pub stdout: Option<String>,
    /// The command's stderr log file.
    pub stderr: Option<String>,
    /// The restart policy: `never`, `on-failure` or `always`.
    pub restart: Option<String>,
    /// The first restart delay.
    pub restart_delay: Option<u32>,
    /// The cap on the restart delay.
    pub restart_delay_max: Option<u32>,
    /// At most this many restarts within `restartWindow`.
    pub restart_burst: Option<u32>,
    /// The burst window.
    pub restart_window: Option<u32>,
    /// Run the command as this user (name or uid).
    pub user: Option<String>,
    /// Run the command with this group (name or gid).
    pub group: Option<String>,
    /// `chroot` into this directory before exec.
    pub chroot: Option<String>,
    /// The command's working directory.
    pub cwd: Option<String>,
    /// The command's umask.
    pub umask: Option<u32>,
    /// Tell systemd `READY=1` / `STOPPING=1`.
    pub notify: Option<bool>,
    /// Pass SIGHUP on even when it reopens the log files.
    pub forward_hup: Option<bool>,
    /// Start the command in a session of its own.
    pub new_session: Option<bool>,
    /// Report ready only once the command says `READY=1`.
    pub wait_ready: Option<bool>,
    /// Listening sockets to pass to the command.
    pub listen: Option<Vec<SupervisorSocket>>,
    /// How long an old command has to end after a graceful restart.
    pub stop_timeout: Option<u32>,
    /// How long a graceful restart waits for the new command's `READY=1`.
    pub upgrade_timeout: Option<u32>,
    /// How long the command must stay up before it is reported ready.
    pub settle: Option<u32>,
}

/// The supervisor's arguments (after `argv[0]`) for `options`, ending with `--`, the program
/// and its arguments. An unknown restart policy throws.
#[napi]
pub fn supervisor_argv(options: SupervisorOptions) -> napi::Result<Vec<String>> {
    let d = Config::default();
    let restart = match options.restart.as_deref() {
        None => d.restart,
        Some(name) => Restart::from_name(name).ok_or_else(|| napi::Error::new(napi::Status::InvalidArg, format!("unknown restart policy {name:?}")))?,
    };
    let millis = |v: Option<u32>, default: Duration| v.map_or(default, |v| Duration::from_millis(v.into()));
    let cfg = Config {
        program: options.program.into(),
        args: options.args.into_iter().map(OsString::from).collect(),
        ready_fd: options.ready_fd,
        lock_fd: options.lock_fd,
        pidfile: options.pidfile.map(Into::into),
        stdout: options.stdout.map(Into::into),
        stderr: options.stderr.map(Into::into),
        restart,
        backoff_min: millis(options.restart_delay, d.backoff_min),
        backoff_max: millis(options.restart_delay_max, d.backoff_max),
        burst: options.restart_burst.unwrap_or(d.burst),
        burst_window: millis(options.restart_window, d.burst_window),
        user: options.user,
        group: options.group,
        credentials: None,
        chroot: options.chroot.map(Into::into),
        cwd: options.cwd.map(Into::into),
        umask: options.umask.map(|m| m as _),
        notify: options.notify.unwrap_or(d.notify),
        forward_hup: options.forward_hup.unwrap_or(d.forward_hup),
        new_session: options.new_session.unwrap_or(d.new_session),
        wait_ready: options.wait_ready.unwrap_or(d.wait_ready),
        listen: options.listen.unwrap_or_default().into_iter().map(|s| (s.fd, s.name)).collect(),
        stop_timeout: millis(options.stop_timeout, d.stop_timeout),
        upgrade_timeout: millis(options.upgrade_timeout, d.upgrade_timeout),
        settle: millis(options.settle, d.settle),
    };
    Ok(cfg.to_argv().into_iter().map(|a| a.to_string_lossy().into_owned()).collect())
}

/// The supervisor's report line, by `kind`.
#[napi(discriminant = "kind", discriminant_case = "camelCase")]
pub enum SupervisorReport {
    /// `READY <pid>`: the command runs.
    Ready {
        /// The command's pid.
        pid: i32,
    },
    /// `NOTREADY <status> <stderr>`: the command exited before it was ready.
    NotReady {
        /// Its exit status, or 128 + the signal that killed it.
        status: i32,
        /// The end of its stderr.
        stderr: String,
    },
    /// `FAIL <stage> <errno> <message>`: the command could not be started.
    Fail {
        /// What failed: `config`, `pidfile`, `logs`, `setup`, `exec`, `chdir`, …
        stage: String,
        /// The error number behind it.
        errno: i32,
        /// What failed, in words.
        message: String,
    },
}

/// The report in `line` (without its newline), or `null` if it is not one.
#[napi]
pub fn decode_supervisor_report(line: String) -> Option<SupervisorReport> {
    Some(match Report::decode(&line)? {
        Report::Ready { pid } => SupervisorReport::Ready { pid },
        Report::NotReady { status, stderr } => SupervisorReport::NotReady { status, stderr },
        Report::Fail { stage, errno, message } => SupervisorReport::Fail { stage, errno, message },
    })
}

/// The name of error number `errno` (`2` → `"ENOENT"`), or `null` if the system has none.
#[napi]
pub fn errno_name(errno: i32) -> Option<String> {
    supervise::errno_name(errno)
}

/// The system's description of error number `errno` (`2` → `"No such file or directory"`).
#[napi]
pub fn errno_message(errno: i32) -> String {
    supervise::errno_message(errno).to_string()
}
