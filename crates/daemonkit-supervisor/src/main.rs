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
//!   SIGTERM, then SIGKILL after [`TREE_GRACE`], before a restart or the supervisor's exit;
//! - keeps a guard process (see [`guard`]) that ends the command's process group if the
//!   supervisor is killed;
//! - at the end removes the pidfile while still holding its lock, and exits with the
//!   command's status.
//!
//! Usage: `daemonkit-supervise [options] -- PROGRAM [ARGS...]` (see `usage()`).

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use daemonkit_core::launch::{Command, Credentials, LaunchError, Stdio};
use daemonkit_core::supervise::{parse_args, usage, ArgsError, Config, Report, Restart, TAIL_LIMIT};
use daemonkit_core::{logfile, notify, pidfile, stdio, tree};

mod guard;

/// How long the command's leftover descendants have between SIGTERM and SIGKILL.
const TREE_GRACE: Duration = Duration::from_secs(3);
/// How long after SIGKILL the supervisor still waits for them to go (a process in
/// uninterruptible sleep dies only when it wakes).
const TREE_KILL_WAIT: Duration = Duration::from_secs(2);

/// The shortest run after which a restarted command's backoff starts over.
const STABLE_RUN: Duration = Duration::from_secs(10);
const FORWARDED: [libc::c_int; 6] = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

/// The write end of the self-pipe the signal handler writes signal numbers to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The calling thread's errno.
fn errno_location() -> *mut libc::c_int {
    // SAFETY: both functions return the calling thread's errno address and have no preconditions.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return unsafe { libc::__errno_location() };
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    return unsafe { libc::__error() };
}

extern "C" fn on_signal(signo: libc::c_int) {
    // Async-signal-safe: one write(2) of one byte; errno is saved and restored.
    // SAFETY: errno_location() is this thread's errno; write takes a valid 1-byte buffer.
    unsafe {
        let saved = *errno_location();
        let byte = signo as u8;
        libc::write(SIGNAL_PIPE.load(Ordering::Relaxed), &byte as *const u8 as *const libc::c_void, 1);
        *errno_location() = saved;
    }
}

fn install_handlers(write_end: RawFd) {
    SIGNAL_PIPE.store(write_end, Ordering::Relaxed);
    for sig in FORWARDED.iter().copied().chain([libc::SIGCHLD]) {
        // SAFETY: `action` is fully initialised; `on_signal` only does async-signal-safe work.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// Opens a log file safely (see `daemonkit_core::logfile`): as root, with `service`'s
/// credentials where that user could have prepared the path.
fn open_log(path: &Path, service: Option<&Credentials>) -> Result<RawFd, logfile::OpenError> {
    use std::os::fd::IntoRawFd;
    Ok(logfile::open_append(path, service)?.into_raw_fd())
}

fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: `data` is a valid buffer of data.len() bytes.
        let n = unsafe { libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return; // a full disk must not stop the supervisor; the line is lost
        }
        data = &data[n as usize..];
    }
}

/// A log stream: the pipe the command writes into and the file it lands in.
struct Log {
    /// `None` for output that is only watched (for a readiness failure), then dropped.
    path: Option<PathBuf>,
    /// The user the file is opened as, where that user could have prepared its path.
    service: Option<Credentials>,
    file: RawFd,
    out: logfile::Appender,
    pipe_read: RawFd,
    pipe_write: RawFd,
}

impl Log {
    fn open(path: &Path, service: Option<&Credentials>) -> Result<Log, String> {
        let file = open_log(path, service).map_err(|e| format!("{} {}: {e}", e.errno() as i32, path.display()))?;
        let mut log = Log::with_file(Some(path.to_path_buf()), file).map_err(|e| format!("{} {}: {e}", e.raw_os_error().unwrap_or(5), path.display()))?;
        log.service = service.cloned();
        Ok(log)
    }

    /// Output that passes through us on its way to our own stderr (where it would have gone
    /// anyway), so that its tail can be shown if the command fails to start.
    fn pass_through_stderr() -> std::io::Result<Log> {
        // SAFETY: F_DUPFD_CLOEXEC on our own fd 2 returns a new descriptor or -1.
        let file = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
        if file < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Log::with_file(None, file)
    }

    fn with_file(path: Option<PathBuf>, file: RawFd) -> std::io::Result<Log> {
        let (r, w) = stdio::pipe_cloexec().map_err(std::io::Error::from)?;
        use std::os::fd::IntoRawFd;
        let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
        set_nonblocking(r);
        Ok(Log { path, service: None, file, out: logfile::Appender::new(file), pipe_read: r, pipe_write: w })
    }

    /// Copies what is in the pipe now into the file, showing each chunk to `watch`.
    fn drain(&mut self, watch: &mut dyn FnMut(&[u8])) {
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: reads into a valid buffer.
            let n = unsafe { libc::read(self.pipe_read, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if n <= 0 {
                return;
            }
            watch(&buf[..n as usize]);
            // Whole lines or none, and a notice of what a full disk cost once it has room again.
            self.out.write(&buf[..n as usize]);
        }
    }

    /// Reopens the file at its path (after a rotation), keeping the descriptor number. A path
    /// that is refused now keeps the old file, which says why.
    fn reopen(&mut self) {
        self.drain(&mut |_| {});
        let Some(path) = &self.path else { return };
        match open_log(path, self.service.as_ref()) {
            Ok(fresh) => {
                let _ = stdio::dup_onto(fresh, self.file);
                let _ = stdio::set_cloexec(self.file, true);
                let _ = stdio::close(fresh);
                self.out.reset();
            }
            Err(e) => {
                let msg = format!("daemonkit-supervise: cannot reopen {}: {e}; still writing here\n", path.display());
                self.out.write(msg.as_bytes());
            }
        }
    }
}

struct Supervisor {
    cfg: Config,
    stdout: Option<Log>,
    stderr: Option<Log>,
    signal_read: RawFd,
    child: Option<i32>,
    stopping: bool,
    restarts: Vec<Instant>,
    attempt: u32,
    started_at: Instant,
    /// With `--wait-ready`: the socket the command says `READY=1` on, and its `$NOTIFY_SOCKET`.
    ready_socket: Option<(std::os::unix::net::UnixDatagram, OsString)>,
    /// Still waiting for the command's `READY=1` (or the end of the settle window).
    awaiting_ready: bool,
    /// When the settle window of the first command ends.
    settle_at: Option<Instant>,
    /// The last bytes of the command's stderr (since readiness, or from the start).
    tail: Vec<u8>,
    /// How many times the command was restarted, in all.
    restart_count: u32,
    /// Started with the first command; `None` before, or if it could not be started.
    guard: Option<guard::Guard>,
    guard_started: bool,
    /// The cgroup of our own we entered, if any: left and removed at exit.
    cgroup: Option<PathBuf>,
    /// With `--wait-ready` (Linux): where graceful restarts are asked for.
    control: Option<std::os::unix::net::UnixListener>,
    /// The graceful restart in progress.
    upgrade: Option<Upgrade>,
    /// Old commands told to stop after a graceful restart: pid, and when to SIGKILL them.
    retiring: Vec<(i32, Instant)>,
}

/// A graceful restart in progress: the new command, not ready yet.
struct Upgrade {
    pid: i32,
    deadline: Instant,
    /// Who asked, to be told the outcome (none for SIGUSR2).
    reply: Option<std::os::unix::net::UnixStream>,
    /// The wait status of the old command, had it exited meanwhile.
    old_exit: Option<i32>,
}

/// Binds the control socket (Linux only: an abstract name leaves nothing on disk); `Ok(None)`
/// elsewhere.
fn bind_control() -> std::io::Result<Option<std::os::unix::net::UnixListener>> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid has no preconditions.
        let name = daemonkit_core::listen::control_name(unsafe { libc::getpid() });
        let listener: std::os::unix::net::UnixListener = daemonkit_core::listen::bind_abstract(&name)?.into();
        listener.set_nonblocking(true)?;
        Ok(Some(listener))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(None)
    }
}

/// The uid of the process at the other end of `stream` (SO_PEERCRED).
#[cfg(target_os = "linux")]
fn peer_uid(stream: &std::os::unix::net::UnixStream) -> Option<libc::uid_t> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe { libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut libc::ucred as *mut libc::c_void, &mut len) };
    (rc == 0).then_some(cred.uid)
}

#[cfg(not(target_os = "linux"))]
fn peer_uid(_stream: &std::os::unix::net::UnixStream) -> Option<libc::uid_t> {
    None
}

/// How many of its last lines a recorded failure keeps.
const FAILURE_LINES: usize = 20;

/// A file beside the pidfile: `PIDFILE<suffix>`.
fn side_path(pidfile: Option<&Path>, suffix: &str) -> Option<PathBuf> {
    let mut name = pidfile?.as_os_str().to_owned();
    name.push(suffix);
    Some(PathBuf::from(name))
}

/// Where a failure of the daemon of `pidfile` is recorded: `PIDFILE.failed`.
fn failure_path(pidfile: Option<&Path>) -> Option<PathBuf> {
    side_path(pidfile, ".failed")
}

/// Writes `data` to a fresh 0600 file beside `path` (never through a symlink) and renames it over `path`.
fn write_replacing(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&tmp)?;
    let written = f.write_all(data).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Binds a fresh datagram socket for the command's readiness message: in Linux's abstract
/// namespace (nothing on disk), elsewhere in the temporary directory.
fn bind_ready_socket() -> std::io::Result<(std::os::unix::net::UnixDatagram, OsString)> {
    use std::os::unix::net::UnixDatagram;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = format!("daemonkit-ready-{}-{nanos}", std::process::id());
    #[cfg(target_os = "linux")]
    let socket = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        (UnixDatagram::bind_addr(&addr)?, OsString::from(format!("@{name}")))
    };
    #[cfg(not(target_os = "linux"))]
    let socket = {
        let path = std::env::temp_dir().join(format!("{name}.sock"));
        (UnixDatagram::bind(&path)?, path.into_os_string())
    };
    socket.0.set_nonblocking(true)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads one c_int from a live local.
        let rc = unsafe {
            libc::setsockopt(
                socket.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(socket)
}

/// Receives one datagram; on Linux also the sender's pid (SO_PASSCRED). `None` when nothing is
/// waiting.
fn recv_with_sender(socket: &std::os::unix::net::UnixDatagram, buf: &mut [u8]) -> Option<(usize, Option<i32>)> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
        // Room for one SCM_CREDENTIALS message, aligned as cmsghdr requires.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; every pointer in it refers to a live local buffer.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `msg` describes valid buffers; the socket is non-blocking.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            return None;
        }
        let mut sender = None;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled in, within
        // msg_controllen; SCM_CREDENTIALS data is a `ucred`.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS {
                    let cred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::ucred);
                    sender = Some(cred.pid);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Some((n as usize, sender))
    }
    #[cfg(not(target_os = "linux"))]
    {
        socket.recv(buf).ok().map(|n| (n, None))
    }
}

/// Whether `pid` is `ancestor` or one of its descendants (walks the parents in /proc).
fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        if pid <= 1 {
            return false;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some(parent) = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<i32>().ok()) else {
            return false;
        };
        pid = parent;
    }
    false
}

/// Tells whoever asked for a graceful restart how it went; nobody to tell is fine.
fn reply(to: Option<std::os::unix::net::UnixStream>, line: &str) {
    if let Some(stream) = to {
        use std::io::Write;
        let _ = (&stream).write_all(line.as_bytes());
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_ascii() && (c as u32) >= 0x20 && c != '\u{7f}' => out.push(c),
            c => {
                // Everything else as \uXXXX (surrogate pairs beyond the BMP): the line stays
                // ASCII, so no reader can split it at a U+2028 or mid-character.
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

impl Supervisor {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.cfg.program);
        cmd.args(&self.cfg.args);
        cmd.stdin(Stdio::Null);
        cmd.stdout(self.stdout.as_ref().map_or(Stdio::Fd(1), |l| Stdio::Fd(l.pipe_write)));
        cmd.stderr(match (&self.stderr, &self.stdout, self.cfg.stderr == self.cfg.stdout) {
            (Some(l), _, _) => Stdio::Fd(l.pipe_write),
            (None, Some(l), true) => Stdio::Fd(l.pipe_write),
            _ => Stdio::Fd(2),
        });
        if let Some(root) = &self.cfg.chroot {
            cmd.chroot(root);
        }
        if let Some(dir) = &self.cfg.cwd {
            cmd.current_dir(dir);
        }
        if let Some(mask) = self.cfg.umask {
            cmd.umask(mask);
        }
        if let Some(creds) = &self.cfg.credentials {
            cmd.credentials(creds.clone());
        }
        if self.ready_socket.is_some() || !self.cfg.listen.is_empty() {
            let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
                .filter(|(k, _)| {
                    let replaced_notify = k == "NOTIFY_SOCKET" && self.ready_socket.is_some();
                    let listen_var = matches!(k.to_str(), Some("LISTEN_FDS" | "LISTEN_PID" | "LISTEN_FDNAMES"));
                    !replaced_notify && !listen_var
                })
                .collect();
            if let Some((_, name)) = &self.ready_socket {
                // The command tells us, not systemd, that it is ready.
                vars.push(("NOTIFY_SOCKET".into(), name.clone()));
            }
            if !self.cfg.listen.is_empty() {
                // The systemd socket-activation protocol: the sockets at 3, 4, …, LISTEN_PID
                // written by the command's own process just before execve.
                let fds: Vec<RawFd> = self.cfg.listen.iter().map(|(fd, _)| *fd).collect();
                cmd.pass_fds(&fds);
                cmd.listen_pid(true);
                vars.push(("LISTEN_FDS".into(), fds.len().to_string().into()));
                let names: Vec<&str> = self.cfg.listen.iter().map(|(_, n)| n.as_str()).collect();
                vars.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
            }
            cmd.env_list(vars);
        }
        cmd.parent_death_signal(libc::SIGKILL);
        cmd.new_session(self.cfg.new_session);
        // Its group is what the guard ends if we are killed.
        cmd.process_group(true);
        cmd
    }

    fn spawn(&mut self) -> Result<i32, LaunchError> {
        if !self.guard_started {
            self.guard_started = true;
            let cgroup = self.make_cgroup();
            match guard::Guard::start(TREE_GRACE, TREE_KILL_WAIT, cgroup.clone()) {
                Ok(g) => self.guard = Some(g),
                Err(e) => self.log_line(&format!("cannot start the guard process: {e}")),
            }
            // Only now: as a subreaper we would have adopted the guard.
            if let Err(e) = tree::set_child_subreaper() {
                if e != daemonkit_core::Errno::ENOSYS {
                    self.log_line(&format!("cannot become a child subreaper: {e}"));
                }
            }
            // The guard stays outside; we enter it, so the command and all it starts are inside.
            if let Some(dir) = cgroup {
                if self.guard.is_none() || tree::enter_cgroup(&dir).is_err() {
                    let _ = std::fs::remove_dir(&dir);
                } else {
                    self.cgroup = Some(dir);
                }
            }
        }
        let pid = self.command().spawn()?.pid;
        self.child = Some(pid);
        self.started_at = Instant::now();
        if self.guard.as_ref().is_some_and(|g| !g.watch(pid)) {
            self.guard_lost();
        }
        Ok(pid)
    }

    /// Ends every process below us that is left (the command has exited or is being ended):
    /// SIGTERM, then SIGKILL after [`TREE_GRACE`]. As a subreaper we are the parent of every
    /// orphan among them, so they are reaped here too. The guard is not part of the tree.
    fn end_tree(&mut self) {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let guard = self.guard.as_ref().map(|g| g.pid);
        let ended = tree::end_processes(
            || tree::descendants(me).into_iter().filter(|p| Some(p.pid) != guard).collect(),
            || {
                self.reap_orphans();
                self.drain_logs();
            },
            TREE_GRACE,
            TREE_KILL_WAIT,
        );
        if ended.killed {
            self.log_line(&format!("killed the command's remaining processes after {} ms", TREE_GRACE.as_millis()));
        }
        if ended.left {
            self.log_line("some of the command's processes did not end after SIGKILL");
        }
        if self.guard.as_ref().is_some_and(|g| !g.watch(0)) {
            self.guard_lost();
        }
    }

    /// The guard process is gone (killed): says that the protection it gave is gone too.
    fn guard_lost(&mut self) {
        if let Some(g) = self.guard.take() {
            self.log_line(&format!(
                "the guard process (pid {}) has ended: if this supervisor is killed now, the command's processes are no longer ended",
                g.pid
            ));
        }
    }

    /// Leaves our cgroup for its parent and removes it, so that it does not outlive us when no
    /// guard is left to remove it.
    fn leave_cgroup(&mut self) {
        let Some(dir) = self.cgroup.take() else { return };
        if let Some(parent) = dir.parent() {
            if tree::enter_cgroup(parent).is_ok() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }

    /// Where it can (root, or a delegated cgroup v2 subtree), makes a cgroup of our own below
    /// ours, for the guard: the processes in it can be found and killed whatever session or
    /// group they moved to, even once we are dead. Not under systemd (`--notify`), which
    /// already ends the service's whole cgroup.
    fn make_cgroup(&self) -> Option<PathBuf> {
        if self.cfg.notify {
            return None;
        }
        let parent = tree::own_cgroup_dir()?;
        // SAFETY: getpid has no preconditions.
        let dir = parent.join(format!("daemonkit-{}", unsafe { libc::getpid() }));
        std::fs::create_dir(&dir).ok()?;
        Some(dir)
    }

    /// Reaps whatever children of ours have exited, without waiting.
    fn reap_orphans(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: reaps any child of ours without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if Some(pid) == self.guard.as_ref().map(|g| g.pid) {
                self.guard = None;
            }
        }
    }

    /// Tells the launcher how the start went (`READY <pid>` / `FAIL ...`); without a launcher
    /// (`daemonkit run`), a failure is said on stderr in plain words.
    fn report(&mut self, line: &str) {
        match self.cfg.ready_fd.take() {
            Some(fd) => {
                write_all(fd, line.as_bytes());
                let _ = stdio::close(fd);
            }
            None => {
                if let Some(rest) = line.strip_prefix("FAIL ") {
                    let message = rest.splitn(3, ' ').nth(2).unwrap_or(rest).trim_end();
                    eprintln!("daemonkit-supervise: cannot start {:?}: {message}", self.cfg.program);
                } else if let Some(rest) = line.strip_prefix("NOTREADY ") {
                    let status = rest.split(' ').next().unwrap_or("?");
                    eprintln!("daemonkit-supervise: {:?} exited with status {status} before it was ready", self.cfg.program);
                }
            }
        }
    }

    /// Says `line` where the command's stderr goes: its stderr log (also when that is the same
    /// file as its stdout log), else our own stderr; never into a stdout-only log.
    fn log_line(&self, line: &str) {
        let fd = match (&self.stderr, &self.stdout) {
            (Some(err), _) => err.file,
            (None, Some(out)) if self.cfg.stderr.is_some() => out.file,
            _ => 2,
        };
        write_all(fd, format!("daemonkit-supervise: {line}\n").as_bytes());
    }

    fn drain_logs(&mut self) {
        let tail = &mut self.tail;
        let mut keep = |chunk: &[u8]| {
            tail.extend_from_slice(chunk);
            let excess = tail.len().saturating_sub(TAIL_LIMIT);
            tail.drain(..excess);
        };
        // The stream that carries the command's stderr is watched; the other one just flows.
        match (&mut self.stderr, &mut self.stdout) {
            (Some(err), out) => {
                err.drain(&mut keep);
                if let Some(out) = out {
                    out.drain(&mut |_| {});
                }
            }
            (None, Some(out)) => out.drain(&mut keep),
            (None, None) => {}
        }
    }

    /// The command said `READY=1`: tell the launcher (and systemd).
    fn command_ready(&mut self) {
        if !self.awaiting_ready || self.stopping {
            return;
        }
        self.awaiting_ready = false;
        self.tail.clear();
        if let Some(pid) = self.child {
            self.report(&Report::Ready { pid }.encode());
        }
        if self.cfg.notify {
            // SAFETY: getpid has no preconditions.
            let _ = notify::notify(&format!("READY=1\nMAINPID={}", unsafe { libc::getpid() }));
        }
    }

    /// Reads what the command sent on the readiness socket.
    fn read_ready_socket(&mut self) {
        let mut ready = false;
        let mut upgrade_ready = false;
        if let Some((socket, _)) = &self.ready_socket {
            let mut buf = [0u8; 4096];
            while let Some((n, sender)) = recv_with_sender(socket, &mut buf) {
                if let (Some(sender), Some(up)) = (sender, &self.upgrade) {
                    if descends_from(sender, up.pid) {
                        upgrade_ready |= String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1");
                        continue;
                    }
                }
                let from_command = match (sender, self.child) {
                    (Some(sender), Some(child)) => descends_from(sender, child),
                    // Without sender credentials (not Linux) the socket's privacy must do.
                    (None, _) => cfg!(not(target_os = "linux")),
                    _ => false,
                };
                if from_command {
                    ready |= String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1");
                }
            }
        }
        if ready {
            self.command_ready();
        }
        if upgrade_ready {
            self.upgrade_ready();
        }
    }

    /// Takes graceful-restart requests waiting on the control socket.
    fn accept_control(&mut self) {
        loop {
            let Some(listener) = &self.control else { return };
            let Ok((stream, _)) = listener.accept() else { return };
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if !matches!(peer_uid(&stream), Some(uid) if uid == 0 || uid == me) {
                continue;
            }
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = [0u8; 16];
            let mut got = 0;
            while got < line.len() {
                use std::io::Read;
                match (&stream).read(&mut line[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
                if line[..got].contains(&b'\n') {
                    break;
                }
            }
            if &line[..got] == b"UPGRADE\n" {
                self.start_upgrade(Some(stream));
            } else {
                reply(Some(stream), &format!("FAIL usage {}\n", json_string("unknown request")));
            }
        }
    }

    /// Starts a graceful restart: a new command beside the running one.
    fn start_upgrade(&mut self, from: Option<std::os::unix::net::UnixStream>) {
        let refuse = if self.upgrade.is_some() {
            Some(("busy", "a graceful restart is already in progress"))
        } else if self.stopping {
            Some(("stopping", "the daemon is stopping"))
        } else if self.awaiting_ready || self.child.is_none() {
            Some(("starting", "the command is not running and ready (starting or restarting); try again"))
        } else {
            None
        };
        if let Some((reason, message)) = refuse {
            self.log_line(&format!("graceful restart refused: {message}"));
            reply(from, &format!("FAIL {reason} {}\n", json_string(message)));
            return;
        }
        self.tail.clear();
        match self.command().spawn() {
            Ok(launched) => {
                self.log_line(&format!("graceful restart: started the new command (pid {}); the old one (pid {}) serves until it is ready", launched.pid, self.child.unwrap_or(0)));
                self.upgrade = Some(Upgrade { pid: launched.pid, deadline: Instant::now() + self.cfg.upgrade_timeout, reply: from, old_exit: None });
            }
            Err(e) => {
                let message = format!("cannot start {:?}: {e}", self.cfg.program);
                self.log_line(&format!("graceful restart failed: {message}"));
                reply(from, &format!("FAIL spawn {}\n", json_string(&message)));
            }
        }
    }

    /// The new command said `READY=1`: it takes over, the old one is told to stop.
    fn upgrade_ready(&mut self) {
        let Some(up) = self.upgrade.take() else { return };
        let old = self.child.replace(up.pid);
        self.started_at = Instant::now();
        self.attempt = 0;
        self.tail.clear();
        if let Some(g) = &self.guard {
            g.watch(up.pid);
        }
        if let Some(old) = old {
            // SAFETY: `old` is our own unreaped child, so it cannot have been recycled.
            unsafe {
                libc::kill(old, libc::SIGTERM);
                libc::kill(old, libc::SIGCONT);
            }
            self.retiring.push((old, Instant::now() + self.cfg.stop_timeout));
        }
        self.log_line(&format!("graceful restart: the new command (pid {}) is ready; stopping the old one", up.pid));
        reply(up.reply, &format!("OK {}\n", up.pid));
        if self.cfg.notify {
            // SAFETY: getpid has no preconditions.
            let _ = notify::notify(&format!("READY=1\nMAINPID={}", unsafe { libc::getpid() }));
        }
    }

    /// The new command exited or timed out before it was ready: it is ended, the old one runs on.
    fn upgrade_failed(&mut self, reason: &str, status: Option<i32>) -> Option<i32> {
        let up = self.upgrade.take()?;
        if status.is_none() {
            // SAFETY: `up.pid` is our own unreaped child; its group is its pid.
            unsafe { libc::kill(-up.pid, libc::SIGKILL) };
            let mut st = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(up.pid, &mut st, 0) };
        } else {
            // What it left in its group goes with it.
            // SAFETY: its group is its pid, which stays reserved while any member lives.
            unsafe { libc::kill(-up.pid, libc::SIGKILL) };
        }
        self.drain_logs();
        let tail = String::from_utf8_lossy(&self.tail).into_owned();
        self.tail.clear();
        let what = match status {
            Some(st) => {
                let code = if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) };
                format!("the new command (pid {}) exited with status {code} before it was ready", up.pid)
            }
            None => format!("the new command (pid {}) was not ready after {} ms and was killed", up.pid, self.cfg.upgrade_timeout.as_millis()),
        };
        self.log_line(&format!("graceful restart failed: {what}; the old command keeps running"));
        let message = if tail.is_empty() { what } else { format!("{what}:\n{tail}") };
        reply(up.reply, &format!("FAIL {reason} {}\n", json_string(&message)));
        up.old_exit
    }

    /// Records a failure beside the pidfile (`PIDFILE.failed`, 0600, JSON) for `status`: the
    /// wait status, when, the restart count and the last lines of stderr. Replaced atomically;
    /// the next start removes it.
    fn record_failure(&mut self, status: i32) {
        self.drain_logs();
        let Some(path) = failure_path(self.cfg.pidfile.as_deref()) else { return };
        let (exit, signal) = if libc::WIFEXITED(status) { (libc::WEXITSTATUS(status).to_string(), "null".to_string()) } else { ("null".to_string(), libc::WTERMSIG(status).to_string()) };
        let text = String::from_utf8_lossy(&self.tail);
        let lines: Vec<&str> = text.lines().collect();
        let last = lines[lines.len().saturating_sub(FAILURE_LINES)..].join("\n");
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let json = format!(
            "{{\"status\":{exit},\"signal\":{signal},\"at\":{at},\"restarts\":{},\"stderr\":{}}}\n",
            self.restart_count,
            json_string(&last)
        );
        if let Err(e) = write_replacing(&path, json.as_bytes()) {
            self.log_line(&format!("cannot record the failure in {}: {e}", path.display()));
        }
    }

    fn finish(&mut self, code: i32) -> ! {
        self.end_tree();
        self.drain_logs();
        self.leave_cgroup();
        if let Some(path) = side_path(self.cfg.pidfile.as_deref(), ".restarts") {
            let _ = std::fs::remove_file(path);
        }
        if let (Some(path), Some(fd)) = (&self.cfg.pidfile, self.cfg.lock_fd) {
            let _ = pidfile::remove_if_same(path, fd);
        }
        std::process::exit(code)
    }

    /// Decides what to do after the command exited with `status`; returns the delay before
    /// the next start, or exits.
    fn after_exit(&mut self, status: i32) -> Duration {
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
        let failed = code != 0;
        if self.awaiting_ready {
            if self.stopping {
                self.report(&Report::NotReady { status: code, stderr: "stopped before it was ready".into() }.encode());
                self.finish(0);
            }
            // Exited before it was ready: the launcher reports it, with the command's own words.
            let tail = String::from_utf8_lossy(&self.tail).into_owned();
            self.report(&Report::NotReady { status: code, stderr: tail }.encode());
            self.record_failure(status);
            self.finish(if failed { code } else { 1 });
        }
        if self.stopping {
            self.finish(0);
        }
        let again = match self.cfg.restart {
            Restart::Never => false,
            Restart::OnFailure => failed,
            Restart::Always => true,
        };
        if !again {
            self.log_line(&format!("command exited with status {code}"));
            if failed {
                self.record_failure(status);
            }
            self.finish(code);
        }
        let now = Instant::now();
        self.restarts.retain(|t| now.duration_since(*t) < self.cfg.burst_window);
        if self.restarts.len() as u32 >= self.cfg.burst {
            self.log_line(&format!(
                "command exited with status {code}; {} restarts within {} ms, giving up",
                self.restarts.len(),
                self.cfg.burst_window.as_millis()
            ));
            self.record_failure(status);
            self.finish(if failed { code } else { 1 });
        }
        self.restarts.push(now);
        // A command that ran well starts the backoff over: longer than the largest delay, and
        // never less than STABLE_RUN, so a slow start on a loaded machine does not count as one.
        if self.started_at.elapsed() >= self.cfg.backoff_max.max(STABLE_RUN) {
            self.attempt = 0;
        }
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let delay = self.cfg.backoff_min.saturating_mul(factor).min(self.cfg.backoff_max);
        self.attempt += 1;
        self.log_line(&format!("command exited with status {code}; restarting in {} ms", delay.as_millis()));
        delay
    }

    fn run(&mut self) -> ! {
        let mut restart_at: Option<Instant> = None;
        loop {
            let mut fds = vec![libc::pollfd { fd: self.signal_read, events: libc::POLLIN, revents: 0 }];
            for log in self.stdout.iter().chain(self.stderr.iter()) {
                fds.push(libc::pollfd { fd: log.pipe_read, events: libc::POLLIN, revents: 0 });
            }
            if let Some((socket, _)) = &self.ready_socket {
                use std::os::fd::AsRawFd;
                fds.push(libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            // No events asked: POLLERR comes when the guard, the pipe's only reader, is gone.
            if let Some(g) = &self.guard {
                fds.push(libc::pollfd { fd: g.pipe(), events: 0, revents: 0 });
            }
            if let Some(control) = &self.control {
                use std::os::fd::AsRawFd;
                fds.push(libc::pollfd { fd: control.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            let settle_at = self.settle_at.filter(|_| self.awaiting_ready);
            let next = restart_at
                .into_iter()
                .chain(settle_at)
                .chain(self.upgrade.as_ref().map(|u| u.deadline))
                .chain(self.retiring.iter().map(|(_, at)| *at))
                .min();
            // Rounded up, so that a wake-up never comes just before the deadline.
            let timeout = next.map_or(-1, |t| t.saturating_duration_since(Instant::now()).as_millis() as i32 + 1);
            // SAFETY: `fds` is a valid array of fds.len() pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if let Some(g) = &self.guard {
                if fds.iter().any(|p| p.fd == g.pipe() && p.revents & (libc::POLLERR | libc::POLLHUP) != 0) {
                    self.guard_lost();
                }
            }
            self.drain_logs();
            self.read_ready_socket();
            self.accept_control();
            let now = Instant::now();
            if self.upgrade.as_ref().is_some_and(|u| now >= u.deadline) {
                if let Some(status) = self.upgrade_failed("timeout", None) {
                    self.end_tree();
                    let delay = self.after_exit(status);
                    restart_at = Some(Instant::now() + delay);
                }
            }
            for (pid, at) in self.retiring.iter_mut() {
                if now >= *at {
                    // SAFETY: `pid` is our own unreaped child; its group is its pid.
                    unsafe { libc::kill(-*pid, libc::SIGKILL) };
                    *at = now + Duration::from_secs(3600);
                }
            }
            if settle_at.is_some_and(|at| Instant::now() >= at) && self.child.is_some() {
                // Stayed up through the settle window: that is a start.
                self.settle_at = None;
                self.command_ready();
            }

            if let Some(at) = restart_at {
                if Instant::now() >= at {
                    restart_at = None;
                    match self.spawn() {
                        Ok(pid) => {
                            self.restart_count += 1;
                            // For `daemonkit list`: how often it was restarted, while it runs.
                            if let Some(path) = side_path(self.cfg.pidfile.as_deref(), ".restarts") {
                                let _ = write_replacing(&path, format!("{}\n", self.restart_count).as_bytes());
                            }
                            self.log_line(&format!("restarted command (pid {pid})"))
                        }
                        Err(e) => {
                            self.log_line(&format!("restarting {:?} failed: {e}", self.cfg.program));
                            self.finish(127);
                        }
                    }
                }
            }

            let mut signals = [0u8; 64];
            // SAFETY: reads into a valid buffer; the pipe is non-blocking.
            let n = unsafe { libc::read(self.signal_read, signals.as_mut_ptr() as *mut libc::c_void, signals.len()) };
            for &sig in &signals[..n.max(0) as usize] {
                let sig = sig as libc::c_int;
                if sig == libc::SIGCHLD {
                    self.reap(&mut restart_at);
                    continue;
                }
                let has_files = self.stdout.iter().chain(self.stderr.iter()).any(|l| l.path.is_some());
                if sig == libc::SIGHUP && has_files {
                    if let Some(l) = self.stdout.as_mut() {
                        l.reopen();
                    }
                    if let Some(l) = self.stderr.as_mut() {
                        l.reopen();
                    }
                    if !self.cfg.forward_hup {
                        continue;
                    }
                }
                if sig == libc::SIGUSR2 && self.control.is_some() {
                    self.start_upgrade(None);
                    continue;
                }
                let ends = sig == libc::SIGTERM || sig == libc::SIGINT;
                if ends {
                    self.stopping = true;
                    if self.cfg.notify {
                        let _ = notify::notify("STOPPING=1");
                    }
                    if self.child.is_none() {
                        self.finish(0);
                    }
                }
                if ends {
                    // A new copy half-way through a graceful restart ends too.
                    if let Some(pid) = self.upgrade.as_ref().map(|u| u.pid) {
                        // SAFETY: our own unreaped child.
                        unsafe { libc::kill(pid, sig) };
                    }
                }
                if let Some(pid) = self.child {
                    // SAFETY: `pid` is our own unreaped child, so it cannot have been recycled.
                    unsafe { libc::kill(pid, sig) };
                    // A stopped command (SIGSTOP) would only act on the signal once continued.
                    if ends {
                        // SAFETY: as above.
                        unsafe { libc::kill(pid, libc::SIGCONT) };
                    }
                }
            }
        }
    }

    fn reap(&mut self, restart_at: &mut Option<Instant>) {
        loop {
            let mut status = 0;
            // SAFETY: reaps any child of ours without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if Some(pid) == self.guard.as_ref().map(|g| g.pid) {
                self.guard = None;
            }
            if let Some(i) = self.retiring.iter().position(|(p, _)| *p == pid) {
                // An old command gone after a graceful restart: what it left in its group too.
                self.retiring.remove(i);
                // SAFETY: its group is its pid, which stays reserved while any member lives.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                self.log_line(&format!("graceful restart: the old command (pid {pid}) has exited"));
                if self.stopping && self.child.is_none() && self.upgrade.is_none() && self.retiring.is_empty() {
                    self.finish(0);
                }
                continue;
            }
            if self.upgrade.as_ref().is_some_and(|u| u.pid == pid) {
                if self.stopping {
                    self.upgrade_failed("stopping", Some(status));
                    if self.child.is_none() {
                        self.finish(0);
                    }
                    continue;
                }
                if let Some(old_status) = self.upgrade_failed("exited", Some(status)) {
                    // The old one had exited meanwhile: now it counts as the command's exit.
                    self.end_tree();
                    let delay = self.after_exit(old_status);
                    *restart_at = Some(Instant::now() + delay);
                }
                continue;
            }
            if Some(pid) == self.child && self.upgrade.is_some() && !self.stopping {
                // The old command died during a graceful restart: the new one decides.
                self.child = None;
                if let Some(up) = self.upgrade.as_mut() {
                    up.old_exit = Some(status);
                }
                continue;
            }
            if Some(pid) == self.child {
                self.child = None;
                self.drain_logs();
                // What the command left behind ends with it, before a restart or our exit.
                self.end_tree();
                let delay = self.after_exit(status);
                *restart_at = Some(Instant::now() + delay);
            }
        }
    }
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
        // SAFETY: getpid has no preconditions.
        if let Err(errno) = pidfile::write_pid_fd(fd, unsafe { libc::getpid() }) {
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
        for suffix in [".failed", ".restarts"] {
            if let Some(file) = side_path(Some(path), suffix) {
                let _ = std::fs::remove_file(file);
            }
        }
    }
    let (signal_read, signal_write) = {
        use std::os::fd::IntoRawFd;
        let (r, w) = stdio::pipe_cloexec().expect("self-pipe");
        (r.into_raw_fd(), w.into_raw_fd())
    };
    set_nonblocking(signal_read);
    set_nonblocking(signal_write);
    install_handlers(signal_write);
    // A process that exec'd us (`daemonkit run`) may have had signals blocked; we must see the
    // ones we forward. The command's own mask is reset at its launch.
    // SAFETY: an empty, initialised set; sigprocmask only changes this thread's mask.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }

    let open = |p: &Option<PathBuf>| p.as_ref().map(|p| Log::open(p, cfg.credentials.as_ref())).transpose();
    let logs = open(&cfg.stdout).and_then(|out| {
        let err = if cfg.stderr.is_some() && cfg.stderr != cfg.stdout { open(&cfg.stderr)? } else { None };
        Ok((out, err))
    });
    // "<errno> <path>: <why>" -> "FAIL logs <errno> cannot open the log file <path>: <why>"
    let log_error = logs.as_ref().err().map(|e| {
        let (errno, what) = e.split_once(' ').unwrap_or(("5", e));
        Report::Fail { stage: "logs".into(), errno: errno.parse().unwrap_or(libc::EIO), message: format!("cannot open the log file {what}") }.encode()
    });
    let (stdout, mut stderr) = logs.unwrap_or((None, None));
    let wait_ready = cfg.wait_ready;
    // A settle window needs a launcher to tell the outcome to.
    let settle = if cfg.ready_fd.is_some() && !wait_ready { cfg.settle } else { Duration::ZERO };
    let awaiting = wait_ready || !settle.is_zero();
    let mut startup_error = log_error;
    let mut ready_socket = None;
    // Under systemd the command gets a private NOTIFY_SOCKET too: a program that speaks the
    // protocol (daemonize() does) then stays in place under us instead of forking away.
    if (awaiting || cfg.notify) && startup_error.is_none() {
        // Watch the command's stderr even without a log file, to show it if it fails to start.
        if awaiting && cfg.stderr.is_none() {
            match Log::pass_through_stderr() {
                Ok(log) => stderr = Some(log),
                Err(e) => startup_error = Some(Report::Fail { stage: "setup".into(), errno: e.raw_os_error().unwrap_or(libc::EIO), message: format!("cannot make a pipe: {e}") }.encode()),
            }
        }
        match bind_ready_socket() {
            Ok(socket) => ready_socket = Some(socket),
            Err(e) => startup_error = Some(Report::Fail { stage: "setup".into(), errno: e.raw_os_error().unwrap_or(libc::EIO), message: format!("cannot bind the readiness socket: {e}") }.encode()),
        }
    }
    let notify_ready = cfg.notify && !awaiting;
    let mut sup = Supervisor {
        cfg,
        stdout,
        stderr,
        signal_read,
        child: None,
        stopping: false,
        restarts: Vec::new(),
        attempt: 0,
        started_at: Instant::now(),
        ready_socket,
        awaiting_ready: awaiting,
        settle_at: None,
        tail: Vec::new(),
        restart_count: 0,
        guard: None,
        guard_started: false,
        cgroup: None,
        control: None,
        upgrade: None,
        retiring: Vec::new(),
    };
    if wait_ready {
        match bind_control() {
            Ok(control) => sup.control = control,
            // Another process may hold the (predictable) name already: graceful restarts are then
            // off, and said so; a client checks the listener's pid, so it refuses an impostor.
            Err(e) => sup.log_line(&format!("graceful restarts are off: cannot bind the control socket: {e}")),
        }
    }
    if let Some(line) = startup_error {
        sup.report(&line);
        sup.finish(1);
    }
    match sup.spawn() {
        Ok(pid) if awaiting => {
            let _ = pid; // READY comes from the command itself, or at the end of the settle window
            if !settle.is_zero() {
                sup.settle_at = Some(Instant::now() + settle);
            }
        }
        Ok(pid) => {
            sup.report(&Report::Ready { pid }.encode());
            if notify_ready {
                // SAFETY: getpid has no preconditions.
                let _ = notify::notify(&format!("READY=1\nMAINPID={}", unsafe { libc::getpid() }));
            }
        }
        Err(e) => {
            sup.report(&Report::launch_failed(&e).encode());
            sup.finish(127);
        }
    }
    sup.run()
}
