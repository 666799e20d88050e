use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemonkit_core::launch::{Command, LaunchError, Stdio};
use daemonkit_core::pidfile::{self, AcquireError, InvalidContent, Pidfile, Probe};
use daemonkit_core::signals::ProcessHandle;
use daemonkit_core::{logfile, notify, privileges, stdio, Errno};
use napi::bindgen_prelude::*;
use napi_derive::napi;

type Result<T> = napi::Result<T>;

/// An error for JavaScript with a stable `code`. It is thrown right away (napi-rs has no custom
/// codes on returned errors); the returned `PendingException` tells napi-rs it is already thrown.
fn coded(env: &Env, code: &str, message: impl ToString) -> napi::Error {
    let _ = env.throw_error(&message.to_string(), Some(code));
    napi::Error::from_status(Status::PendingException)
}

fn errno_error(env: &Env, errno: Errno, what: &str) -> napi::Error {
    coded(env, &format!("{errno:?}"), format!("{what}: {}", errno.desc()))
}

/// The binding works on this system.
#[napi]
pub fn supported() -> bool {
    true
}

/// The outcome of taking a pidfile's lock.
#[napi(object)]
pub struct Acquired {
    /// The locked descriptor (close-on-exec), when the lock was taken.
    pub fd: Option<i32>,
    /// Another process holds the lock.
    pub running: bool,
    /// The pid the held file names, if valid.
    pub running_pid: Option<i32>,
    /// The lock is held, but not by the process the file names, or only shared locks are held.
    pub foreign: bool,
    /// With `foreign`: the pid the file names, if valid.
    pub foreign_named_pid: Option<i32>,
    /// The lock was taken on a fresh file: the previous one was held with shared locks only.
    pub replaced_shared: bool,
}

/// Opens, locks and empties the pidfile at `path`.
#[napi]
pub fn acquire_pidfile(env: Env, path: String) -> Result<Acquired> {
    match Pidfile::acquire(&path) {
        Ok(file) => {
            let replaced_shared = file.replaced_shared_lock();
            Ok(Acquired { fd: Some(file.into_raw_fd()), running: false, running_pid: None, foreign: false, foreign_named_pid: None, replaced_shared })
        }
        Err(AcquireError::AlreadyRunning { pid }) => {
            Ok(Acquired { fd: None, running: true, running_pid: pid, foreign: false, foreign_named_pid: None, replaced_shared: false })
        }
        Err(AcquireError::LockedByOther { named }) => {
            Ok(Acquired { fd: None, running: false, running_pid: None, foreign: true, foreign_named_pid: named, replaced_shared: false })
        }
        Err(AcquireError::Unsafe(problem)) => Err(coded(&env, "EPIDFILEUNSAFE", problem)),
        Err(AcquireError::Unstable) => Err(coded(&env, "EPIDFILEUNSAFE", AcquireError::Unstable)),
        Err(AcquireError::Io { op, errno }) => Err(errno_error(&env, errno, op)),
    }
}

/// Writes `pid` and a newline into the pidfile open at `fd`.
#[napi]
pub fn write_pid(env: Env, fd: i32, pid: i32) -> Result<()> {
    pidfile::write_pid_fd(fd, pid).map_err(|e| match e {
        Errno::EMLINK => coded(&env, "EPIDFILEUNSAFE", "writing the pidfile: it has other names (hard links), so it is left untouched"),
        e => errno_error(&env, e, "writing the pidfile"),
    })
}

/// Removes the pidfile at `path` only if it is provably a stale pidfile (see
/// `pidfile::remove_stale`): `"removed"`, `"missing"`, `"locked"`, or why it was kept.
#[napi]
pub fn remove_stale_pidfile(env: Env, path: String) -> Result<String> {
    use pidfile::StaleRemoval;
    Ok(match pidfile::remove_stale(&path).map_err(|e| errno_error(&env, e, "removing the stale pidfile"))? {
        StaleRemoval::Removed => "removed".to_string(),
        StaleRemoval::Missing => "missing".to_string(),
        StaleRemoval::Locked => "locked".to_string(),
        StaleRemoval::Kept(problem) => format!("kept: {problem}"),
    })
}

/// Unlinks `path` if it still names the file open at `fd`; returns whether it did.
#[napi]
pub fn remove_pidfile(env: Env, path: String, fd: i32) -> Result<bool> {
    pidfile::remove_if_same(Path::new(&path), fd).map_err(|e| errno_error(&env, e, "removing the pidfile"))
}

/// What a pidfile says, judged by its lock.
#[napi(object)]
pub struct PidfileProbe {
    /// `"running"`, `"starting"` (locked, no valid pid in it), `"foreign"` (locked, but not by
    /// the process it names, given in `pid`), `"stopped"` or `"unsafe"`.
    pub state: String,
    /// The running daemon's pid.
    pub pid: Option<i32>,
    /// For `"stopped"`: the pid a leftover file names.
    pub stale_pid: Option<i32>,
    /// Whether a file exists at the path.
    pub exists: bool,
    /// Why the content or the path is not trusted, when it is not.
    pub reason: Option<String>,
    /// For `"running"`: why it could not be proven that `pid` holds the lock (another user's
    /// process, or no proof on this platform); absent when it was proven.
    pub unverified: Option<String>,
    /// For `"running"` without proof: the errno name behind it (`"EACCES"`), absent where the
    /// platform offers no proof.
    pub unverified_code: Option<String>,
}

fn describe(content: &InvalidContent) -> String {
    content.to_string()
}

/// Reports whether the pidfile's daemon runs.
#[napi]
pub fn probe_pidfile(env: Env, path: String) -> Result<PidfileProbe> {
    let probe = pidfile::probe(&path).map_err(|e| errno_error(&env, e, "reading the pidfile"))?;
    let p = |state: &str| PidfileProbe {
        state: state.to_string(),
        pid: None,
        stale_pid: None,
        exists: true,
        reason: None,
        unverified: None,
        unverified_code: None,
    };
    Ok(match probe {
        Probe::Running { pid } => PidfileProbe { pid: Some(pid), ..p("running") },
        Probe::RunningUnverified { pid, errno: Some(errno) } => PidfileProbe {
            pid: Some(pid),
            unverified: Some(format!("cannot verify that pid {pid} holds the lock: its descriptors are unreadable ({})", errno.desc())),
            unverified_code: Some(format!("{errno:?}")),
            ..p("running")
        },
        Probe::RunningUnverified { pid, errno: None } => PidfileProbe {
            pid: Some(pid),
            unverified: Some(format!("cannot verify that pid {pid} holds the lock: this system offers no way to")),
            ..p("running")
        },
        Probe::LockedByOther { named } => PidfileProbe {
            pid: named,
            reason: Some(AcquireError::LockedByOther { named }.to_string()),
            ..p("foreign")
        },
        Probe::RunningUnknownPid { content } => PidfileProbe { reason: Some(describe(&content)), ..p("starting") },
        Probe::NotRunning { stale: None } => PidfileProbe { exists: false, ..p("stopped") },
        Probe::NotRunning { stale: Some(Ok(pid)) } => PidfileProbe { stale_pid: Some(pid), ..p("stopped") },
        Probe::NotRunning { stale: Some(Err(content)) } => PidfileProbe { reason: Some(describe(&content)), ..p("stopped") },
        Probe::Unsafe(problem) => PidfileProbe { reason: Some(problem.to_string()), ..p("unsafe") },
    })
}

/// What to launch.
#[napi(object)]
pub struct LaunchSpec {
    /// The program; a name without `/` is looked up on the `PATH` of `env`.
    pub program: String,
    /// The whole argv, `argv[0]` included.
    pub args: Vec<String>,
    /// The whole argv as raw bytes, used instead of `args` when given (arguments that are not
    /// valid UTF-8 pass unchanged).
    pub args_bytes: Option<Vec<Buffer>>,
    /// The whole environment, as `NAME=value` strings.
    pub env: Vec<String>,
    /// Descriptor for stdin; `/dev/null` when absent.
    pub stdin: Option<i32>,
    /// Descriptor for stdout; `/dev/null` when absent.
    pub stdout: Option<i32>,
    /// Descriptor for stderr; `/dev/null` when absent.
    pub stderr: Option<i32>,
    /// Descriptors to pass, appearing at 3, 4, … in the daemon.
    pub pass_fds: Vec<i32>,
    /// Working directory to change to before `execve`.
    pub cwd: Option<String>,
    /// Umask to set before `execve`.
    pub umask: Option<u32>,
    /// User (name or uid) to run as; supplementary groups come from the group database.
    pub user: Option<String>,
    /// Group (name or gid) to run as.
    pub group: Option<String>,
    /// Directory to `chroot` into before `execve`.
    pub chroot: Option<String>,
}

/// A launched daemon.
#[napi(object)]
pub struct LaunchResult {
    /// Its pid.
    pub pid: i32,
}

fn stdio_of(fd: Option<i32>) -> Stdio {
    fd.map_or(Stdio::Null, Stdio::Fd)
}

/// Launches a daemon (double fork + execve); returns once it has exec'd.
#[napi]
pub fn launch(env: Env, spec: LaunchSpec) -> Result<LaunchResult> {
    use std::os::unix::ffi::OsStrExt;
    let mut cmd = Command::new(&spec.program);
    if let Some(raw) = &spec.args_bytes {
        if let Some((first, rest)) = raw.split_first() {
            cmd.arg0(std::ffi::OsStr::from_bytes(first)).args(rest.iter().map(|a| std::ffi::OsStr::from_bytes(a)));
        }
    } else if let Some((first, rest)) = spec.args.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_list(spec.env.iter().map(|e| e.split_once('=').unwrap_or((e.as_str(), ""))))
        .stdin(stdio_of(spec.stdin))
        .stdout(stdio_of(spec.stdout))
        .stderr(stdio_of(spec.stderr))
        .pass_fds(&spec.pass_fds);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    if let Some(mask) = spec.umask {
        cmd.umask(mask as _);
    }
    if let Some(root) = &spec.chroot {
        cmd.chroot(root);
    }
    let credentials = privileges::resolve(spec.user.as_deref(), spec.group.as_deref()).map_err(|e| coded(&env, "EUSER", e))?;
    if let Some(found) = credentials {
        cmd.credentials(found);
    }
    match cmd.launch() {
        Ok(launched) => Ok(LaunchResult { pid: launched.pid }),
        Err(err @ LaunchError::Child { errno, .. }) => Err(coded(&env, &format!("{errno:?}"), err)),
        Err(err @ LaunchError::NotFound(_)) => Err(coded(&env, "ENOENT", err)),
        Err(err @ LaunchError::Prepare(errno)) => Err(coded(&env, &format!("{errno:?}"), err)),
        Err(err) => Err(coded(&env, "ELAUNCH", err)),
    }
}

/// Opens the log file at `path` for append (created 0640), close-on-exec, refusing a symbolic
/// link, a hard-linked file, anything but a regular file or character device and, as root, a path
/// others could have prepared; where `user` (and `group`) could have, it is opened as that user.
#[napi]
pub fn open_log(env: Env, path: String, user: Option<String>, group: Option<String>) -> Result<i32> {
    use std::os::fd::IntoRawFd;
    let credentials = privileges::resolve(user.as_deref(), group.as_deref()).map_err(|e| coded(&env, "EUSER", e))?;
    match logfile::open_append(&path, credentials.as_ref()) {
        Ok(fd) => Ok(fd.into_raw_fd()),
        Err(e @ logfile::OpenError::Unsafe(_)) => Err(coded(&env, "ELOGFILEUNSAFE", e)),
        Err(logfile::OpenError::Io { op, errno }) => Err(errno_error(&env, errno, op)),
    }
}

/// Creates a close-on-exec pipe; returns `[read, write]`.
#[napi]
pub fn pipe(env: Env) -> Result<Vec<i32>> {
    use std::os::fd::IntoRawFd;
    let (r, w) = stdio::pipe_cloexec().map_err(|e| errno_error(&env, e, "pipe"))?;
    Ok(vec![r.into_raw_fd(), w.into_raw_fd()])
}

/// `dup2(from, to)`.
#[napi]
pub fn dup2(env: Env, from: i32, to: i32) -> Result<()> {
    stdio::dup_onto(from, to).map_err(|e| errno_error(&env, e, "dup2"))
}

/// Sets or clears close-on-exec on `fd`.
#[napi]
pub fn set_cloexec(env: Env, fd: i32, on: bool) -> Result<()> {
    stdio::set_cloexec(fd, on).map_err(|e| errno_error(&env, e, "fcntl"))
}

/// Replaces this process with `program` (`execve`): `args` is the whole argv, `env` the whole
/// environment as `NAME=value`. Descriptors 0-2 and `keep_fds` are inherited, no other. Only
/// returns by throwing, with the errno, the process otherwise unchanged.
#[napi]
pub fn exec_replacing(env: Env, program: String, args: Vec<String>, environment: Vec<String>, keep_fds: Vec<i32>) -> Result<()> {
    use std::ffi::OsStr;
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let environment: Vec<&OsStr> = environment.iter().map(OsStr::new).collect();
    let errno = daemonkit_core::exec::exec_replacing(OsStr::new(&program), &args, &environment, &keep_fds);
    Err(errno_error(&env, errno, &format!("exec {program}")))
}

/// A handle on one process that cannot be confused with a later process of the same pid.
#[napi]
pub struct Process {
    pid: i32,
    inner: Mutex<Option<Arc<ProcessHandle>>>,
}

/// Opens a handle on process `pid` (> 1).
#[napi]
pub fn open_process(env: Env, pid: i32) -> Result<Process> {
    let inner = ProcessHandle::open(pid).map_err(|e| errno_error(&env, e, &format!("opening process {pid}")))?;
    Ok(Process { pid, inner: Mutex::new(Some(Arc::new(inner))) })
}

#[napi]
impl Process {

    /// The pid.
    #[napi(getter)]
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn handle(&self, env: &Env) -> Result<Arc<ProcessHandle>> {
        let guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.clone().ok_or_else(|| coded(env, "EBADF", format!("the handle on process {} is closed", self.pid)))
    }

    /// Whether signals through this handle can never reach a recycled pid (a pidfd). When
    /// false, check the pidfile lock again right before each `kill`.
    #[napi(getter)]
    pub fn race_free(&self, env: Env) -> Result<bool> {
        Ok(self.handle(&env)?.is_race_free())
    }

    /// Sends signal number `signal`.
    #[napi]
    pub fn kill(&self, env: Env, signal: i32) -> Result<()> {
        self.handle(&env)?.signal(signal).map_err(|e| errno_error(&env, e, &format!("signalling process {}", self.pid)))
    }

    /// Resolves `true` once the process has exited, `false` after `timeoutMs`. Waits off the
    /// main thread.
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn wait_exit(&self, env: Env, timeout_ms: u32) -> Result<AsyncTask<WaitExit>> {
        let handle = self.handle(&env)?;
        Ok(AsyncTask::new(WaitExit { handle, timeout: Duration::from_millis(timeout_ms.into()) }))
    }

    /// Whether the process has exited, asked without waiting and without a thread (a launcher
    /// must not depend on being able to start one: `RLIMIT_NPROC` may forbid it).
    #[napi]
    pub fn has_exited(&self, env: Env) -> Result<bool> {
        self.handle(&env)?.wait_exit(Duration::ZERO).map_err(|e| errno_error(&env, e, &format!("waiting for process {}", self.pid)))
    }

    /// Releases the handle (its pidfd closes once no wait is using it). Idempotent.
    #[napi]
    pub fn close(&self) {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }
}

/// The background wait behind [`Process::wait_exit`].
pub struct WaitExit {
    handle: Arc<ProcessHandle>,
    timeout: Duration,
}

impl Task for WaitExit {
    type Output = bool;
    type JsValue = bool;

    fn compute(&mut self) -> napi::Result<bool> {
        self.handle.wait_exit(self.timeout).map_err(|e| napi::Error::from_reason(e.desc()))
    }

    fn resolve(&mut self, _env: Env, output: bool) -> napi::Result<bool> {
        Ok(output)
    }
}

/// Sends `state` to systemd's `$NOTIFY_SOCKET`; returns false when it is not set.
#[napi]
pub fn sd_notify(env: Env, state: String) -> Result<bool> {
    notify::notify(&state).map_err(|e| coded(&env, "ENOTIFY", format!("sd_notify: {e}")))
}

/// How a descriptor is open.
#[napi(object)]
pub struct FdAccess {
    /// Open for reading.
    pub readable: bool,
    /// Open for writing.
    pub writable: bool,
}

/// The access mode of `fd` (`F_GETFL`).
#[napi]
pub fn fd_access(env: Env, fd: i32) -> Result<FdAccess> {
    let (readable, writable) = stdio::access_mode(fd).map_err(|e| errno_error(&env, e, "fcntl"))?;
    Ok(FdAccess { readable, writable })
}

/// Checks that `fd`, inherited by this process, holds the exclusive lock on the regular file at
/// `path`; returns `null` when it does, else why not.
#[napi]
pub fn inherited_lock_problem(fd: i32, path: String) -> Option<String> {
    pidfile::verify_inherited_lock(fd, &path).err().map(|p| p.to_string())
}

/// Whether `$NOTIFY_SOCKET` names a datagram socket that can be connected to (nothing is sent):
/// `null` when it can, or when the variable is not set; else why not.
#[napi]
pub fn notify_socket_problem() -> Option<String> {
    let path = notify::socket_path()?;
    notify::reachable(&path).err().map(|e| e.to_string())
}

/// Binds a listening stream socket at `address` (`IPV4:PORT`, `[IPV6]:PORT`, `unix:PATH`);
/// returns its descriptor (close-on-exec). A unix socket's file is given `user`'s (and
/// `group`'s) ownership and the mode `umask` leaves, before it listens. Errors carry the errno
/// name as `code`.
#[napi]
pub fn bind_listener(env: Env, address: String, user: Option<String>, group: Option<String>, umask: Option<u32>) -> Result<i32> {
    use std::os::fd::IntoRawFd;
    let parsed = daemonkit_core::listen::Address::parse(&address).map_err(|e| coded(&env, &format!("{:?}", e.errno), e.message))?;
    let credentials = privileges::resolve(user.as_deref(), group.as_deref()).map_err(|e| coded(&env, "EUSER", e))?;
    let access = daemonkit_core::listen::SocketAccess {
        uid: if user.is_some() { credentials.as_ref().map(|c| c.uid) } else { None },
        gid: credentials.as_ref().map(|c| c.gid),
        umask: umask.map(|m| m as _),
    };
    daemonkit_core::listen::bind_listener_with(&parsed, &access).map(IntoRawFd::into_raw_fd).map_err(|e| coded(&env, &format!("{:?}", e.errno), e.message))
}

/// Whether `fd` is a stream socket that listens.
#[napi]
pub fn is_listening_socket(env: Env, fd: i32) -> Result<bool> {
    daemonkit_core::listen::is_listening_socket(fd).map_err(|e| errno_error(&env, e, "getsockopt"))
}

#[cfg(target_os = "linux")]
fn io_error(env: &Env, e: std::io::Error, what: &str) -> napi::Error {
    errno_error(env, Errno::from_raw(e.raw_os_error().unwrap_or(5)), what)
}

/// Listens on this process's graceful-restart control socket (Linux); returns the descriptor.
#[napi]
pub fn bind_control(env: Env) -> Result<i32> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::IntoRawFd;
        let name = daemonkit_core::listen::control_name(std::process::id() as i32);
        daemonkit_core::listen::bind_abstract(&name).map(IntoRawFd::into_raw_fd).map_err(|e| io_error(&env, e, "binding the control socket"))
    }
    #[cfg(not(target_os = "linux"))]
    Err(coded(&env, "ENOSYS", "graceful restarts need Linux"))
}

/// Connects to the graceful-restart control socket of `pid` (Linux); returns the descriptor.
#[napi]
pub fn connect_control(env: Env, pid: i32) -> Result<i32> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::IntoRawFd;
        let name = daemonkit_core::listen::control_name(pid);
        daemonkit_core::listen::connect_abstract(&name).map(IntoRawFd::into_raw_fd).map_err(|e| io_error(&env, e, "connecting to the control socket"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Err(coded(&env, "ENOSYS", "graceful restarts need Linux"))
    }
}

/// The user id of the peer of the unix socket `fd` (Linux).
#[napi]
pub fn peer_uid(env: Env, fd: i32) -> Result<u32> {
    #[cfg(target_os = "linux")]
    {
        daemonkit_core::listen::peer_uid(fd).map_err(|e| errno_error(&env, e, "getsockopt"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(coded(&env, "ENOSYS", "graceful restarts need Linux"))
    }
}

/// The process id of the peer of the unix socket `fd` (Linux): for a client, the process that
/// listens on the socket it connected to.
#[napi]
pub fn peer_pid(env: Env, fd: i32) -> Result<i32> {
    #[cfg(target_os = "linux")]
    {
        daemonkit_core::listen::peer_pid(fd).map_err(|e| errno_error(&env, e, "getsockopt"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(coded(&env, "ENOSYS", "graceful restarts need Linux"))
    }
}

/// Replaces the pid in the locked pidfile at `fd` without the file ever reading empty.
#[napi]
pub fn replace_pid(env: Env, fd: i32, pid: i32) -> Result<()> {
    pidfile::replace_pid_fd(fd, pid).map_err(|e| match e {
        Errno::EMLINK => coded(&env, "EPIDFILEUNSAFE", "writing the pidfile: it has other names (hard links), so it is left untouched"),
        e => errno_error(&env, e, "writing the pidfile"),
    })
}

/// Closes `fd`, a descriptor the binding handed out (`pipe`, `acquirePidfile`) or inherited.
/// Bun and Deno keep tables of their own descriptors, whose `fs.closeSync` refuses these.
#[napi]
pub fn close_fd(env: Env, fd: i32) -> Result<()> {
    stdio::close(fd).map_err(|e| errno_error(&env, e, "close"))
}

/// Writes `data` to `fd` (one `write`); returns how many bytes were written.
#[napi]
pub fn write_fd(env: Env, fd: i32, data: Buffer) -> Result<u32> {
    let n = stdio::write(fd, &data).map_err(|e| errno_error(&env, e, "write"))?;
    Ok(n as u32)
}

/// What `fd` has to read right now, without blocking: `null` when nothing yet, an empty
/// buffer at end of file.
#[napi]
pub fn read_available(env: Env, fd: i32) -> Result<Option<Buffer>> {
    let mut buf = vec![0u8; 64 * 1024];
    match stdio::read_available(fd, &mut buf).map_err(|e| errno_error(&env, e, "read"))? {
        None => Ok(None),
        Some(n) => {
            buf.truncate(n);
            Ok(Some(buf.into()))
        }
    }
}

/// What an open descriptor is on (`fstat`).
#[napi(object)]
pub struct FdStat {
    /// A pipe or FIFO.
    pub fifo: bool,
    /// A directory.
    pub directory: bool,
    /// The device number.
    pub dev: f64,
    /// The inode number.
    pub ino: f64,
}

/// `fstat(fd)`, for descriptors the runtime's own `fs` does not know (Deno's).
#[napi]
pub fn fd_stat(env: Env, fd: i32) -> Result<FdStat> {
    let id = stdio::file_id(fd).map_err(|e| errno_error(&env, e, "fstat"))?;
    Ok(FdStat {
        fifo: id.is_fifo(),
        directory: id.is_dir(),
        dev: id.dev as f64,
        ino: id.ino as f64,
    })
}

/// This process's own argv as the kernel gave it (`argv[0]` included), for runtimes whose
/// `process.argv` / `execArgv` do not show it all (Deno hides `run -A`). Throws `EILSEQ` when
/// an argument is not UTF-8.
#[napi]
pub fn process_argv(env: Env) -> Result<Vec<String>> {
    std::env::args_os()
        .map(|a| a.into_string().map_err(|a| coded(&env, "EILSEQ", format!("argument {a:?} is not UTF-8"))))
        .collect()
}
