//! The protocol between a launcher and the supervisor `daemonkit-supervise`.
//!
//! A launcher starts the supervisor with the command line [`Config::to_argv`] builds; the
//! supervisor reads it back with [`parse_args`]. It answers on the descriptor given as
//! `--ready-fd` with one [`Report`] line. The defaults of every option are those of
//! [`Config::default`], the only place they are written.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;

use crate::launch::{Credentials, LaunchError};
use crate::privileges;

/// The file name of the supervisor executable.
pub const SUPERVISOR_NAME: &str = "daemonkit-supervise";

/// How much of the command's stderr (its last bytes) a [`Report::NotReady`] carries.
pub const TAIL_LIMIT: usize = 8192;

/// How long `daemonkit start` waits by default for a command that does not say `READY=1`
/// (the settle window it passes as `--settle`; the supervisor's own default is zero).
pub const START_SETTLE: Duration = Duration::from_secs(1);

/// When the supervisor restarts the command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Restart {
    /// Never: the supervisor exits with the command.
    Never,
    /// When the command exits with a non-zero status or is killed by a signal.
    OnFailure,
    /// Whenever the command exits.
    Always,
}

impl Restart {
    /// The policy's name on the command line: `never`, `on-failure` or `always`.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Never => "never",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        }
    }

    /// The policy named `name` (`no` is accepted for `never`).
    pub fn from_name(name: &str) -> Option<Restart> {
        match name {
            "never" | "no" => Some(Restart::Never),
            "on-failure" => Some(Restart::OnFailure),
            "always" => Some(Restart::Always),
            _ => None,
        }
    }
}

/// Everything the supervisor is told on its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The command to run.
    pub program: OsString,
    /// Its arguments (without `argv[0]`).
    pub args: Vec<OsString>,
    /// Where the launcher waits for the [`Report`].
    pub ready_fd: Option<RawFd>,
    /// The pidfile's locked descriptor, handed over by the launcher.
    pub lock_fd: Option<RawFd>,
    /// The pidfile locked through `lock_fd`.
    pub pidfile: Option<PathBuf>,
    /// The command's stdout log file.
    pub stdout: Option<PathBuf>,
    /// The command's stderr log file.
    pub stderr: Option<PathBuf>,
    /// When the command is restarted.
    pub restart: Restart,
    /// The first restart delay, doubled on each restart.
    pub backoff_min: Duration,
    /// The cap on the restart delay.
    pub backoff_max: Duration,
    /// At most this many restarts within `burst_window`; then the supervisor gives up.
    pub burst: u32,
    /// The window of `burst`.
    pub burst_window: Duration,
    /// The user to run the command as, as given (a name or a numeric id).
    pub user: Option<String>,
    /// The group to run the command with, as given (a name or a numeric id).
    pub group: Option<String>,
    /// `user` and `group` resolved (see [`Config::resolve_credentials`]).
    pub credentials: Option<Credentials>,
    /// The directory to `chroot` into before exec.
    pub chroot: Option<OsString>,
    /// The command's working directory.
    pub cwd: Option<OsString>,
    /// The command's umask.
    pub umask: Option<libc::mode_t>,
    /// Tell systemd `READY=1` / `STOPPING=1` over `$NOTIFY_SOCKET`.
    pub notify: bool,
    /// Pass SIGHUP on to the command even when it reopens the log files.
    pub forward_hup: bool,
    /// Start the command in a session of its own (`daemonkit run` in a terminal: Ctrl-C then
    /// reaches it once, forwarded, instead of twice, and the terminal's job control cannot
    /// stop it).
    pub new_session: bool,
    /// Report `READY` only once the command says `READY=1` on its `$NOTIFY_SOCKET`.
    pub wait_ready: bool,
    /// Listening sockets we hold and pass to every command we start, with their names.
    pub listen: Vec<(RawFd, String)>,
    /// How long an old command has between SIGTERM and SIGKILL after a graceful restart.
    pub stop_timeout: Duration,
    /// How long a graceful restart waits for the new command's `READY=1`.
    pub upgrade_timeout: Duration,
    /// With a launcher: report `READY` only once the command has stayed up this long (or said
    /// `READY=1` before); an exit within it is a failed start (`NOTREADY`). Zero: at exec.
    pub settle: Duration,
}

impl Default for Config {
    /// The defaults of every option; no program yet.
    fn default() -> Config {
        Config {
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
            user: None,
            group: None,
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
        }
    }
}

/// The usage text of the supervisor.
pub fn usage() -> &'static str {
    "usage: daemonkit-supervise [--ready-fd N] [--lock-fd N --pidfile PATH] [--stdout PATH] [--stderr PATH]\n\
     \x20      [--restart never|on-failure|always] [--backoff-min MS] [--backoff-max MS] [--burst N] [--burst-window MS]\n\
     \x20      [--user USER] [--group GROUP] [--chroot DIR] [--cwd DIR] [--umask OCTAL] [--notify] [--forward-hup] [--wait-ready]\n\
     \x20      [--settle MS] [--new-session] [--listen-fd N:NAME ...]
     \x20      [--stop-timeout MS] [--upgrade-timeout MS]
     \x20      -- PROGRAM [ARGS...]"
}

/// What is wrong with the arguments; `usage`: whether it is a matter of syntax (then the usage
/// text helps), rather than a name that does not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgsError {
    /// What is wrong, in words.
    pub message: String,
    /// A matter of syntax.
    pub usage: bool,
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ArgsError {}

fn syntax(message: String) -> ArgsError {
    ArgsError { message, usage: true }
}

/// The supervisor's whole command line (`argv[0]` first) as a [`Config`], with `--user` and
/// `--group` resolved into [`Config::credentials`].
pub fn parse_args(argv: Vec<OsString>) -> Result<Config, ArgsError> {
    let mut cfg = parse(argv.into_iter().skip(1))?;
    cfg.resolve_credentials()?;
    Ok(cfg)
}

/// The supervisor's arguments (after `argv[0]`) as a [`Config`]; `--user` and `--group` stay
/// names ([`Config::credentials`] is `None`). Every error is one of syntax.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Config, ArgsError> {
    parse_options(args.into_iter()).map_err(syntax)
}

fn parse_options(mut it: impl Iterator<Item = OsString>) -> Result<Config, String> {
    let mut cfg = Config::default();
    loop {
        let Some(flag) = it.next() else { return Err("missing -- PROGRAM".into()) };
        let flag = flag.into_string().map_err(|f| format!("bad option {f:?}"))?;
        match flag.as_str() {
            "--" => break,
            "--notify" => cfg.notify = true,
            "--new-session" => cfg.new_session = true,
            "--forward-hup" => cfg.forward_hup = true,
            "--wait-ready" => cfg.wait_ready = true,
            _ => {
                let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                option(&mut cfg, &flag, value)?;
            }
        }
    }
    cfg.program = it.next().ok_or("missing PROGRAM after --")?;
    cfg.args = it.collect();
    Ok(cfg)
}

/// Applies the option `flag` with its `value`.
fn option(cfg: &mut Config, flag: &str, value: OsString) -> Result<(), String> {
    let text = || value.clone().into_string().map_err(|_| format!("{flag}: not UTF-8"));
    let number = |t: String| t.parse::<u64>().map_err(|_| format!("{flag}: not a number: {t}"));
    let millis = |t: String| number(t).map(Duration::from_millis);
    let fd = |t: String| t.parse::<RawFd>().ok().filter(|&fd| fd >= 0).ok_or_else(|| format!("{flag}: not a descriptor: {t}"));
    match flag {
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
            let t = text()?;
            cfg.restart = Restart::from_name(&t).ok_or_else(|| format!("--restart: unknown policy {t}"))?;
        }
        "--stop-timeout" => cfg.stop_timeout = millis(text()?)?,
        "--upgrade-timeout" => cfg.upgrade_timeout = millis(text()?)?,
        "--backoff-min" => cfg.backoff_min = millis(text()?)?,
        "--backoff-max" => cfg.backoff_max = millis(text()?)?,
        "--burst" => cfg.burst = number(text()?)? as u32,
        "--burst-window" => cfg.burst_window = millis(text()?)?,
        "--settle" => cfg.settle = millis(text()?)?,
        "--user" => cfg.user = Some(text()?),
        "--group" => cfg.group = Some(text()?),
        "--chroot" => cfg.chroot = Some(value),
        "--cwd" => cfg.cwd = Some(value),
        "--umask" => {
            let t = text()?;
            cfg.umask = Some(libc::mode_t::from_str_radix(&t, 8).map_err(|_| format!("--umask: not octal: {t}"))?)
        }
        _ => return Err(format!("unknown option {flag}")),
    }
    Ok(())
}

impl Config {
    /// Resolves `user` and `group` into `credentials` through the user and group databases.
    pub fn resolve_credentials(&mut self) -> Result<(), ArgsError> {
        self.credentials = privileges::resolve(self.user.as_deref(), self.group.as_deref()).map_err(|e| ArgsError { message: e.to_string(), usage: false })?;
        Ok(())
    }

    /// The supervisor's arguments (after `argv[0]`) that [`parse`] reads back as this `Config`
    /// (`credentials` aside: they travel as `user` and `group`). The restart, backoff, burst
    /// and stop-timeout values are always given; the other options only when set.
    pub fn to_argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: Option<OsString>| {
            argv.push(name.into());
            argv.extend(value);
        };
        let ms = |d: Duration| Some(OsString::from(d.as_millis().to_string()));
        if let Some(fd) = self.ready_fd {
            flag("--ready-fd", Some(fd.to_string().into()));
        }
        if let Some(path) = &self.stdout {
            flag("--stdout", Some(path.into()));
        }
        if let Some(path) = &self.stderr {
            flag("--stderr", Some(path.into()));
        }
        flag("--restart", Some(self.restart.as_str().into()));
        flag("--backoff-min", ms(self.backoff_min));
        flag("--backoff-max", ms(self.backoff_max));
        flag("--burst", Some(self.burst.to_string().into()));
        flag("--burst-window", ms(self.burst_window));
        if let Some(cwd) = &self.cwd {
            flag("--cwd", Some(cwd.clone()));
        }
        if let Some(umask) = self.umask {
            flag("--umask", Some(format!("{umask:o}").into()));
        }
        for (name, value) in [("--user", &self.user), ("--group", &self.group)] {
            if let Some(value) = value {
                flag(name, Some(value.into()));
            }
        }
        if let Some(dir) = &self.chroot {
            flag("--chroot", Some(dir.clone()));
        }
        for (name, on) in [("--notify", self.notify), ("--forward-hup", self.forward_hup)] {
            if on {
                flag(name, None);
            }
        }
        flag("--stop-timeout", ms(self.stop_timeout));
        if self.wait_ready {
            flag("--wait-ready", None);
        }
        if self.wait_ready || self.upgrade_timeout != Config::default().upgrade_timeout {
            flag("--upgrade-timeout", ms(self.upgrade_timeout));
        }
        if !self.settle.is_zero() {
            flag("--settle", ms(self.settle));
        }
        if self.new_session {
            flag("--new-session", None);
        }
        if let Some(fd) = self.lock_fd {
            flag("--lock-fd", Some(fd.to_string().into()));
        }
        if let Some(path) = &self.pidfile {
            flag("--pidfile", Some(path.into()));
        }
        for (fd, name) in &self.listen {
            flag("--listen-fd", Some(format!("{fd}:{name}").into()));
        }
        argv.push("--".into());
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// The supervisor's one-line answer to its launcher, on `--ready-fd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// `READY <pid>`: the command runs (and said `READY=1`, or stayed up for the settle window).
    Ready {
        /// The command's pid.
        pid: i32,
    },
    /// `NOTREADY <status> <stderr as a JSON string>`: the command exited before it was ready.
    NotReady {
        /// Its exit status, or 128 + the signal that killed it.
        status: i32,
        /// The last [`TAIL_LIMIT`] bytes of its stderr.
        stderr: String,
    },
    /// `FAIL <stage> <errno> <message>`: the command could not be started.
    Fail {
        /// What failed, one word: `config`, `pidfile`, `logs`, `setup`, `exec`, `chdir`, …
        stage: String,
        /// The error number behind it.
        errno: i32,
        /// What failed, in words (one line).
        message: String,
    },
}

impl Report {
    /// The report of a failed launch of the command: the stage that failed (spaces as `-`) and
    /// its errno; `ENOENT` for a program not found on `PATH`, `EIO` for anything else.
    pub fn launch_failed(error: &LaunchError) -> Report {
        let (stage, errno) = match error {
            LaunchError::Child { stage, errno } => (stage.name().replace(' ', "-"), *errno),
            LaunchError::NotFound(_) => ("exec".to_string(), Errno::ENOENT),
            _ => ("launch".to_string(), Errno::EIO),
        };
        Report::Fail { stage, errno: errno as i32, message: error.to_string() }
    }

    /// The report as the line the supervisor writes, newline included.
    pub fn encode(&self) -> String {
        match self {
            Report::Ready { pid } => format!("READY {pid}\n"),
            Report::NotReady { status, stderr } => format!("NOTREADY {status} {}\n", json_string(stderr)),
            Report::Fail { stage, errno, message } => format!("FAIL {stage} {errno} {message}\n"),
        }
    }

    /// The report in `line` (without its newline), if it is one.
    pub fn decode(line: &str) -> Option<Report> {
        let (word, rest) = line.split_once(' ')?;
        match word {
            "READY" => Some(Report::Ready { pid: decimal(rest)? }),
            "NOTREADY" => {
                let (status, stderr) = rest.split_once(' ')?;
                Some(Report::NotReady { status: decimal(status)?, stderr: json_unstring(stderr)? })
            }
            "FAIL" => {
                let (stage, rest) = rest.split_once(' ')?;
                let (errno, message) = rest.split_once(' ')?;
                if stage.is_empty() || stage.contains(char::is_whitespace) {
                    return None;
                }
                Some(Report::Fail { stage: stage.to_string(), errno: decimal(errno)?, message: message.to_string() })
            }
            _ => None,
        }
    }
}

/// A non-negative decimal number of ASCII digits only.
fn decimal(text: &str) -> Option<i32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `s` as a JSON string literal, all ASCII: every other character as `\uXXXX` (surrogate pairs
/// beyond the BMP), so no reader can split the line at a U+2028 or mid-character.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_ascii() && (c as u32) >= 0x20 && c != '\u{7f}' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
        }
    }
    out.push('"');
    out
}

/// The string a JSON string literal (the whole of `literal`) stands for; a lone surrogate
/// becomes U+FFFD.
pub fn json_unstring(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut units: Vec<u16> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            c if (c as u32) < 0x20 => return None,
            '\\' => {
                let unit = match chars.next()? {
                    '"' => b'"' as u16,
                    '\\' => b'\\' as u16,
                    '/' => b'/' as u16,
                    'b' => 8,
                    'f' => 12,
                    'n' => b'\n' as u16,
                    'r' => b'\r' as u16,
                    't' => b'\t' as u16,
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return None;
                        }
                        u16::from_str_radix(&hex, 16).ok()?
                    }
                    _ => return None,
                };
                units.push(unit);
            }
            c => {
                let mut buf = [0u16; 2];
                units.extend_from_slice(c.encode_utf16(&mut buf));
            }
        }
    }
    Some(char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect())
}

/// The name of error number `errno` (`2` → `"ENOENT"`), if the system has one.
pub fn errno_name(errno: i32) -> Option<String> {
    let e = Errno::from_raw(errno);
    (e != Errno::UnknownErrno).then(|| format!("{e:?}"))
}

/// The system's description of error number `errno` (`2` → `"No such file or directory"`).
pub fn errno_message(errno: i32) -> &'static str {
    Errno::from_raw(errno).desc()
}
