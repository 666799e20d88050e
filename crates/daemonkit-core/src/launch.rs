//! Launching a program as a daemon: fork → `setsid` → fork → `execve`.
//!
//! The launched program ends up in a new session of which it is *not* the leader (so opening a
//! terminal can never make it its controlling terminal), with no controlling terminal, every
//! signal disposition at its default, an empty signal mask, the standard streams it was given,
//! the descriptors it was passed at 3, 4, 5, … and no other descriptor.
//!
//! On Linux both stages use `clone(CLONE_VM | CLONE_VFORK)` on stacks mapped beforehand, as
//! glibc's `posix_spawn` does: the cost does not grow with the launching process's memory (a
//! plain `fork` of a process holding gigabytes copies its page tables twice). Elsewhere the
//! stages use `fork`.
//!
//! Everything the children need (C strings, argv and envp arrays, descriptors, stacks) is
//! prepared before the first stage. Between fork and `execve` the children only make
//! async-signal-safe system calls, never allocate and never panic; a failure is written as a
//! fixed-size (stage, errno) record to a close-on-exec pipe and reported by [`Command::launch`].
//!
//! ```no_run
//! use daemonkit_core::launch::{Command, Stdio};
//! let mut cmd = Command::new("/usr/bin/sleep");
//! cmd.arg("60").stdout(Stdio::Null);
//! let daemon = cmd.launch().expect("launch");
//! println!("daemon pid {}", daemon.pid);
//! ```

use std::ffi::{CString, OsStr};
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr;

use libc::{c_char, c_int, c_void};
use nix::errno::Errno;

use crate::stdio;

/// Where one of the daemon's standard streams points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// `/dev/null`, opened for reading and writing.
    Null,
    /// A descriptor of the launching process, duplicated into the daemon. The launcher keeps
    /// its own copy and closes it when it likes.
    Fd(RawFd),
}

/// The step of the launch that failed in a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Stage {
    /// Creating the intermediate process.
    Fork = 1,
    /// `setsid` in the intermediate process.
    Setsid = 2,
    /// Creating the daemon process from the intermediate one.
    SecondFork = 3,
    /// Placing stdio and passed descriptors at their numbers.
    Descriptors = 4,
    /// Closing the launcher's other descriptors.
    CloseDescriptors = 5,
    /// Changing to the requested working directory.
    Chdir = 6,
    /// `execve` of the program.
    Exec = 7,
    /// `chroot` to the requested root.
    Chroot = 8,
    /// Dropping privileges (`setgroups`, `setgid`, `setuid`), or root could be regained after.
    Privileges = 9,
    /// Setting the parent-death signal.
    ParentDeathSignal = 10,
    /// Starting a session of its own (`setsid`), for [`Command::new_session`].
    NewSession = 11,
    /// Starting a process group of its own (`setpgid`), for [`Command::process_group`].
    ProcessGroup = 12,
}

impl Stage {
    fn from_raw(raw: i32) -> Option<Stage> {
        Some(match raw {
            1 => Stage::Fork,
            2 => Stage::Setsid,
            3 => Stage::SecondFork,
            4 => Stage::Descriptors,
            5 => Stage::CloseDescriptors,
            6 => Stage::Chdir,
            7 => Stage::Exec,
            8 => Stage::Chroot,
            9 => Stage::Privileges,
            10 => Stage::ParentDeathSignal,
            11 => Stage::NewSession,
            12 => Stage::ProcessGroup,
            _ => return None,
        })
    }

    /// A short lowercase name of the stage, e.g. `"exec"`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Fork => "fork",
            Stage::Setsid => "setsid",
            Stage::SecondFork => "second fork",
            Stage::Descriptors => "descriptor setup",
            Stage::CloseDescriptors => "closing descriptors",
            Stage::Chdir => "chdir",
            Stage::Exec => "exec",
            Stage::Chroot => "chroot",
            Stage::Privileges => "dropping privileges",
            Stage::ParentDeathSignal => "setting the parent-death signal",
            Stage::NewSession => "setsid in the program",
            Stage::ProcessGroup => "setpgid in the program",
        }
    }
}

/// Why a launch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchError {
    /// A program path, argument, variable or directory contains a NUL byte.
    NulByte(&'static str),
    /// The program name has no `/` and was not found as an executable file on `PATH`.
    NotFound(String),
    /// Preparing the launch failed in the launching process (pipe, `/dev/null`, stack mapping).
    Prepare(Errno),
    /// A step in one of the child processes failed with `errno`.
    Child {
        /// The step that failed.
        stage: Stage,
        /// The error it got.
        errno: Errno,
    },
    /// The intermediate process ended without reporting the daemon's pid.
    NoReport,
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::NulByte(what) => write!(f, "{what} contains a NUL byte"),
            LaunchError::NotFound(name) => write!(f, "command not found on PATH: {name}"),
            LaunchError::Prepare(e) => write!(f, "preparing the launch failed: {}", e.desc()),
            LaunchError::Child { stage, errno } => {
                write!(f, "{} failed: {} ({})", stage.name(), errno.desc(), *errno as i32)
            }
            LaunchError::NoReport => f.write_str("the intermediate process exited without a report"),
        }
    }
}

impl std::error::Error for LaunchError {}

/// A launched daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    /// The daemon's process id. It is not a child of the launcher: the intermediate process was
    /// its parent and has been reaped, so the daemon now belongs to init (or the nearest
    /// subreaper).
    pub pid: i32,
}

/// A program to launch as a daemon, built like [`std::process::Command`].
#[derive(Debug, Clone)]
pub struct Command {
    program: Vec<u8>,
    args: Vec<Vec<u8>>,
    env: Option<Vec<Vec<u8>>>,
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    pass_fds: Vec<RawFd>,
    cwd: Option<Vec<u8>>,
    umask: Option<libc::mode_t>,
    chroot: Option<Vec<u8>>,
    credentials: Option<Credentials>,
    parent_death_signal: Option<c_int>,
    new_session: bool,
    process_group: bool,
    listen_pid: bool,
}

/// The user and groups a launched program runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id, set last.
    pub uid: libc::uid_t,
    /// Primary group id.
    pub gid: libc::gid_t,
    /// Supplementary groups, set first.
    pub groups: Vec<libc::gid_t>,
}

impl Command {
    /// A command running `program`; `argv[0]` is `program` unless [`Command::arg0`] says
    /// otherwise. A name without `/` is looked up on `PATH` when launched.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        let program = program.as_ref().as_bytes().to_vec();
        Command {
            args: vec![program.clone()],
            program,
            env: None,
            stdin: Stdio::Null,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
            pass_fds: Vec::new(),
            cwd: None,
            umask: None,
            chroot: None,
            credentials: None,
            parent_death_signal: None,
            new_session: false,
            process_group: false,
            listen_pid: false,
        }
    }

    /// Replaces `argv[0]`.
    pub fn arg0(&mut self, arg0: impl AsRef<OsStr>) -> &mut Command {
        self.args[0] = arg0.as_ref().as_bytes().to_vec();
        self
    }

    /// Appends an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().as_bytes().to_vec());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self.arg(arg);
        }
        self
    }

    /// Sets the daemon's whole environment (default: the launcher's environment at launch time).
    pub fn env_list<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let list = vars
            .into_iter()
            .map(|(k, v)| {
                let mut entry = k.as_ref().as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(v.as_ref().as_bytes());
                entry
            })
            .collect();
        self.env = Some(list);
        self
    }

    /// Sets the daemon's standard input (default `/dev/null`).
    pub fn stdin(&mut self, stdio: Stdio) -> &mut Command {
        self.stdin = stdio;
        self
    }

    /// Sets the daemon's standard output (default `/dev/null`).
    pub fn stdout(&mut self, stdio: Stdio) -> &mut Command {
        self.stdout = stdio;
        self
    }

    /// Sets the daemon's standard error (default `/dev/null`).
    pub fn stderr(&mut self, stdio: Stdio) -> &mut Command {
        self.stderr = stdio;
        self
    }

    /// Passes descriptors of the launcher to the daemon, where they appear in order at 3, 4, 5, …
    /// (without close-on-exec). Every other descriptor is closed in the daemon.
    pub fn pass_fds(&mut self, fds: &[RawFd]) -> &mut Command {
        self.pass_fds = fds.to_vec();
        self
    }

    /// Changes the daemon's working directory before `execve` (default: the launcher's).
    pub fn current_dir(&mut self, dir: impl AsRef<OsStr>) -> &mut Command {
        self.cwd = Some(dir.as_ref().as_bytes().to_vec());
        self
    }

    /// Sets the daemon's umask before `execve` (default: the launcher's).
    pub fn umask(&mut self, mask: libc::mode_t) -> &mut Command {
        self.umask = Some(mask);
        self
    }

    /// Changes the root directory before `execve` (then changes to `/` in it, and to
    /// [`Command::current_dir`] if set, relative to the new root).
    pub fn chroot(&mut self, root: impl AsRef<OsStr>) -> &mut Command {
        self.chroot = Some(root.as_ref().as_bytes().to_vec());
        self
    }

    /// Runs the program as another user: `setgroups`, then `setgid`, then `setuid`, just before
    /// `execve` (after stdio is in place and `chroot` is done). Afterwards regaining root is
    /// tried and must fail, else the launch fails at [`Stage::Privileges`].
    pub fn credentials(&mut self, credentials: Credentials) -> &mut Command {
        self.credentials = Some(credentials);
        self
    }

    /// Has the kernel send `signal` to the program when the process that spawned it dies
    /// (Linux `PR_SET_PDEATHSIG`; ignored elsewhere). Only meaningful with [`Command::spawn`].
    pub fn parent_death_signal(&mut self, signal: c_int) -> &mut Command {
        self.parent_death_signal = Some(signal);
        self
    }

    /// With [`Command::spawn`], starts the program in a session of its own (`setsid`): it has
    /// no controlling terminal, so neither the signals a terminal sends to the caller's
    /// foreground group (Ctrl-C) nor its job control (a stop by `SIGTTOU`) reach it. The
    /// program then leads its session; it should open terminals with `O_NOCTTY`. Off by
    /// default; [`Command::launch`] does not need it (its daemon is already in a session of its
    /// own, and must not lead it).
    pub fn new_session(&mut self, own: bool) -> &mut Command {
        self.new_session = own;
        self
    }

    /// Sets `LISTEN_PID` in the program's environment to its own pid, written in the new process
    /// just before `execve` (the systemd socket-activation protocol: the sockets passed with
    /// [`Command::pass_fds`] are for this process only). Any `LISTEN_PID` in the environment is
    /// replaced. Off by default.
    pub fn listen_pid(&mut self, set: bool) -> &mut Command {
        self.listen_pid = set;
        self
    }

    /// With [`Command::spawn`], starts the program in a process group of its own
    /// (`setpgid(0, 0)`), whose id is its pid, so that the group can be signalled as a whole.
    /// Implied by [`Command::new_session`]. Off by default.
    pub fn process_group(&mut self, own: bool) -> &mut Command {
        self.process_group = own;
        self
    }

    /// Launches the daemon and returns once it has called `execve` successfully (or a step
    /// failed). The intermediate process has been reaped when this returns.
    pub fn launch(&self) -> Result<Launched, LaunchError> {
        let prepared = Prepared::new(self)?;
        prepared.run(Mode::Daemon)
    }

    /// Starts the program as an ordinary child of the caller (one `vfork`-style stage, no new
    /// session), with the same hygiene as [`Command::launch`]. Returns once it has called
    /// `execve`; the caller must reap it.
    pub fn spawn(&self) -> Result<Launched, LaunchError> {
        let prepared = Prepared::new(self)?;
        prepared.run(Mode::Child)
    }
}

fn cstring(bytes: &[u8], what: &'static str) -> Result<CString, LaunchError> {
    CString::new(bytes).map_err(|_| LaunchError::NulByte(what))
}

/// Looks `name` up on the `PATH` of `env` (or of this process), like `execvp`.
fn resolve_on_path(name: &[u8], env: Option<&[Vec<u8>]>) -> Result<Vec<u8>, LaunchError> {
    if name.contains(&b'/') {
        return Ok(name.to_vec());
    }
    let path: Vec<u8> = match env {
        Some(list) => list
            .iter()
            .find_map(|e| e.strip_prefix(b"PATH=").map(<[u8]>::to_vec))
            .unwrap_or_default(),
        None => std::env::var_os("PATH").map(|p| p.as_bytes().to_vec()).unwrap_or_default(),
    };
    let path = if path.is_empty() { b"/usr/local/bin:/usr/bin:/bin".to_vec() } else { path };
    for dir in path.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let mut candidate = dir.to_vec();
        candidate.push(b'/');
        candidate.extend_from_slice(name);
        let c = cstring(&candidate, "PATH")?;
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
        let executable = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
        let is_file = std::fs::metadata(OsStr::from_bytes(&candidate)).map(|m| m.is_file()).unwrap_or(false);
        if executable && is_file {
            return Ok(candidate);
        }
    }
    Err(LaunchError::NotFound(String::from_utf8_lossy(name).into_owned()))
}

/// Size of each child stack on Linux. The children only run short straight-line code and a few
/// libc system-call wrappers.
#[cfg(linux_like)]
const CHILD_STACK_SIZE: usize = 128 * 1024;

/// An anonymous private mapping used as a child's stack.
#[cfg(linux_like)]
struct Stack {
    base: *mut c_void,
    len: usize,
}

#[cfg(linux_like)]
impl Stack {
    fn new(len: usize) -> Result<Stack, LaunchError> {
        // SAFETY: an anonymous mapping at an address of the kernel's choosing aliases nothing.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(LaunchError::Prepare(Errno::last()));
        }
        Ok(Stack { base, len })
    }

    /// The initial stack pointer: stacks grow down on every Linux target we build for.
    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping, 16-byte aligned since mappings are page aligned.
        unsafe { (self.base as *mut u8).add(self.len) as *mut c_void }
    }
}

#[cfg(linux_like)]
impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe a mapping made in `Stack::new` that no child uses any
        // more (both children have exec'd or exited before `run` returns).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Everything the children read, prepared before the first stage. The children only read it,
/// except `scratch`, which is theirs.
struct Plan {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    /// `sources[n]` is the launcher descriptor to appear at `n` in the daemon.
    sources: *const RawFd,
    source_count: usize,
    /// Room for one temporary descriptor per source.
    scratch: *mut RawFd,
    cwd: *const c_char,
    set_umask: bool,
    umask: libc::mode_t,
    root: *const c_char,
    set_ids: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: *const libc::gid_t,
    group_count: usize,
    // Read only where there is a parent-death signal (Linux).
    #[cfg_attr(not(linux_like), allow(dead_code))]
    parent_death_signal: c_int,
    #[cfg_attr(not(linux_like), allow(dead_code))]
    parent_pid: libc::pid_t,
    new_session: bool,
    process_group: bool,
    report_fd: RawFd,
    /// Where the daemon writes its pid's digits (in the `LISTEN_PID=` entry of `envp`), or null.
    listen_pid_digits: *mut u8,
    /// Set by the daemon process when a step failed, so that the intermediate process (which
    /// shares memory with it on Linux) reaps it instead of leaving a zombie to init.
    daemon_failed: bool,
    #[cfg(linux_like)]
    grandchild_stack_top: *mut c_void,
}

/// The owned data behind a [`Plan`].
struct Prepared {
    _program: CString,
    _args: Vec<CString>,
    _env: Vec<CString>,
    _cwd: Option<CString>,
    _root: Option<CString>,
    root_ptr: *const c_char,
    credentials: Option<Credentials>,
    parent_death_signal: Option<c_int>,
    new_session: bool,
    process_group: bool,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    sources: Vec<RawFd>,
    scratch: Vec<RawFd>,
    _dev_null: Option<OwnedFd>,
    program_ptr: *const c_char,
    cwd_ptr: *const c_char,
    umask: Option<libc::mode_t>,
    /// `LISTEN_PID=` and room for the digits, which the new process writes (see `envp`).
    listen_pid: Option<Vec<u8>>,
}

/// Room for `LISTEN_PID=`, a pid's digits and the NUL.
const LISTEN_PID_ENTRY: usize = 11 + 20 + 1;

impl Prepared {
    fn new(cmd: &Command) -> Result<Prepared, LaunchError> {
        let env_bytes: Vec<Vec<u8>> = match &cmd.env {
            Some(list) => list.clone(),
            None => std::env::vars_os()
                .map(|(k, v)| {
                    let mut e = k.as_bytes().to_vec();
                    e.push(b'=');
                    e.extend_from_slice(v.as_bytes());
                    e
                })
                .collect(),
        };
        let program = cstring(&resolve_on_path(&cmd.program, cmd.env.as_deref())?, "program")?;
        let args = cmd.args.iter().map(|a| cstring(a, "argument")).collect::<Result<Vec<_>, _>>()?;
        let env = env_bytes.iter().map(|e| cstring(e, "environment")).collect::<Result<Vec<_>, _>>()?;
        let cwd = cmd.cwd.as_deref().map(|d| cstring(d, "working directory")).transpose()?;
        let root = cmd.chroot.as_deref().map(|d| cstring(d, "chroot directory")).transpose()?;

        let needs_null = [cmd.stdin, cmd.stdout, cmd.stderr].contains(&Stdio::Null);
        let dev_null = if needs_null { Some(stdio::open_dev_null().map_err(LaunchError::Prepare)?) } else { None };
        let null_fd = dev_null.as_ref().map_or(-1, |fd| fd.as_raw_fd());
        let resolve = |s: Stdio| match s {
            Stdio::Null => null_fd,
            Stdio::Fd(fd) => fd,
        };
        let mut sources = vec![resolve(cmd.stdin), resolve(cmd.stdout), resolve(cmd.stderr)];
        sources.extend_from_slice(&cmd.pass_fds);

        let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(ptr::null());
        let mut envp: Vec<*const c_char> =
            env.iter().filter(|e| !(cmd.listen_pid && e.as_bytes().starts_with(b"LISTEN_PID="))).map(|e| e.as_ptr()).collect();
        let mut listen_pid = cmd.listen_pid.then(|| {
            let mut entry = vec![0u8; LISTEN_PID_ENTRY];
            entry[..11].copy_from_slice(b"LISTEN_PID=");
            entry
        });
        if let Some(entry) = &mut listen_pid {
            envp.push(entry.as_mut_ptr() as *const c_char);
        }
        envp.push(ptr::null());
        let scratch = vec![-1; sources.len()];
        Ok(Prepared {
            program_ptr: program.as_ptr(),
            cwd_ptr: cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            _program: program,
            _args: args,
            _env: env,
            _cwd: cwd,
            root_ptr: root.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            _root: root,
            credentials: cmd.credentials.clone(),
            parent_death_signal: cmd.parent_death_signal,
            new_session: cmd.new_session,
            process_group: cmd.process_group,
            argv,
            envp,
            sources,
            scratch,
            _dev_null: dev_null,
            umask: cmd.umask,
            listen_pid,
        })
    }

    fn run(mut self, mode: Mode) -> Result<Launched, LaunchError> {
        let (report_read, report_write) = stdio::pipe_cloexec().map_err(LaunchError::Prepare)?;
        #[cfg(linux_like)]
        let (middle_stack, grandchild_stack) = (Stack::new(CHILD_STACK_SIZE)?, Stack::new(CHILD_STACK_SIZE)?);
        let mut plan = Plan {
            program: self.program_ptr,
            argv: self.argv.as_ptr(),
            envp: self.envp.as_ptr(),
            sources: self.sources.as_ptr(),
            source_count: self.sources.len(),
            scratch: self.scratch.as_mut_ptr(),
            cwd: self.cwd_ptr,
            set_umask: self.umask.is_some(),
            umask: self.umask.unwrap_or(0),
            root: self.root_ptr,
            set_ids: self.credentials.is_some(),
            uid: self.credentials.as_ref().map_or(0, |c| c.uid),
            gid: self.credentials.as_ref().map_or(0, |c| c.gid),
            groups: self.credentials.as_ref().map_or(ptr::null(), |c| c.groups.as_ptr()),
            group_count: self.credentials.as_ref().map_or(0, |c| c.groups.len()),
            parent_death_signal: self.parent_death_signal.unwrap_or(0),
            // SAFETY: getpid has no preconditions.
            parent_pid: unsafe { libc::getpid() },
            new_session: self.new_session,
            process_group: self.process_group,
            report_fd: report_write.as_raw_fd(),
            listen_pid_digits: self.listen_pid.as_mut().map_or(ptr::null_mut(), |e| e[11..].as_mut_ptr()),
            daemon_failed: false,
            #[cfg(linux_like)]
            grandchild_stack_top: grandchild_stack.top(),
        };

        // Block every signal so that no handler of ours runs in a child (with CLONE_VM it would
        // run on our memory); the children start with this mask and the daemon resets it.
        let old_mask = block_all_signals();
        #[cfg(linux_like)]
        // SAFETY: `middle_entry` only makes async-signal-safe calls on `plan`, which outlives
        // the child: CLONE_VFORK suspends this thread until the child has exited.
        let middle = unsafe {
            let entry: extern "C" fn(*mut c_void) -> c_int = match mode {
                Mode::Daemon => middle_entry,
                Mode::Child => grandchild_entry,
            };
            libc::clone(
                entry,
                middle_stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                &mut plan as *mut Plan as *mut c_void,
            )
        };
        #[cfg(not(linux_like))]
        // SAFETY: the child only makes async-signal-safe calls on its copy of `plan`.
        let middle = unsafe {
            let pid = libc::fork();
            if pid == 0 {
                match mode {
                    Mode::Daemon => middle_main(&mut plan),
                    Mode::Child => exec_daemon(&mut plan),
                }
            }
            pid
        };
        let fork_errno = Errno::last();
        restore_signal_mask(&old_mask);
        drop(report_write);
        if middle < 0 {
            return Err(LaunchError::Child { stage: Stage::Fork, errno: fork_errno });
        }

        match mode {
            Mode::Daemon => {
                let outcome = read_reports(report_read.as_raw_fd());
                reap(middle);
                outcome
            }
            Mode::Child => match read_reports(report_read.as_raw_fd()) {
                Err(LaunchError::NoReport) => Ok(Launched { pid: middle }),
                Ok(_) => Ok(Launched { pid: middle }),
                Err(err) => {
                    reap(middle);
                    Err(err)
                }
            },
        }
    }
}

/// Whether the program becomes a daemon (two stages and a new session) or a plain child.
#[derive(Clone, Copy)]
enum Mode {
    Daemon,
    Child,
}

/// One report from a child: `kind` 1 = the daemon's pid in `a`; 2 = failure of stage `a` with
/// errno `b`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Report {
    kind: i32,
    a: i32,
    b: i32,
}

const REPORT_PID: i32 = 1;
const REPORT_FAILURE: i32 = 2;

fn read_reports(fd: RawFd) -> Result<Launched, LaunchError> {
    let mut pid = None;
    let mut failure = None;
    loop {
        let mut report = Report { kind: 0, a: 0, b: 0 };
        // SAFETY: reads at most size_of::<Report>() bytes into `report`, a plain-old-data value.
        let n = unsafe {
            libc::read(fd, &mut report as *mut Report as *mut c_void, std::mem::size_of::<Report>())
        };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return Err(LaunchError::Prepare(Errno::last()));
        }
        if n == 0 {
            break;
        }
        // Reports are written whole with one write of less than PIPE_BUF bytes.
        match report.kind {
            REPORT_PID => pid = Some(report.a),
            REPORT_FAILURE if failure.is_none() => {
                let stage = Stage::from_raw(report.a).unwrap_or(Stage::Exec);
                failure = Some(LaunchError::Child { stage, errno: Errno::from_raw(report.b) });
            }
            _ => {}
        }
    }
    match (failure, pid) {
        (Some(err), _) => Err(err),
        (None, Some(pid)) => Ok(Launched { pid }),
        (None, None) => Err(LaunchError::NoReport),
    }
}

fn reap(pid: libc::pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child `pid`; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 || Errno::last() != Errno::EINTR {
            return;
        }
    }
}

fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigfillset/pthread_sigmask before use.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

fn restore_signal_mask(mask: &libc::sigset_t) {
    // SAFETY: `mask` was filled in by pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, ptr::null_mut()) };
}

// ---------------------------------------------------------------------------------------------
// Child side. Everything below runs between fork and execve: async-signal-safe calls only, no
// allocation, no panics, `_exit` to leave.
// ---------------------------------------------------------------------------------------------

/// Writes a report; nothing can be done if the pipe is gone, so the result is ignored.
///
/// # Safety
///
/// Only between fork and `execve`, in a child of [`Prepared::run`]: the caller is a process
/// whose memory may be the launcher's (`CLONE_VM`), so this makes only async-signal-safe system
/// calls, never allocates and never unwinds.
unsafe fn report(fd: RawFd, kind: i32, a: i32, b: i32) {
    let r = Report { kind, a, b };
    libc::write(fd, &r as *const Report as *const c_void, std::mem::size_of::<Report>());
}

/// A failure in the daemon process: flags it for the intermediate process, then reports.
///
/// # Safety
///
/// Only between fork and `execve`, in a child of [`Prepared::run`]: the caller is a process
/// whose memory may be the launcher's (`CLONE_VM`), so this makes only async-signal-safe system
/// calls, never allocates and never unwinds.
/// `plan` must be the launch's live plan.
unsafe fn fail_daemon(plan: *mut Plan, fd: RawFd, stage: Stage) -> ! {
    let errno = Errno::last_raw();
    ptr::write_volatile(ptr::addr_of_mut!((*plan).daemon_failed), true);
    Errno::set_raw(errno);
    fail(fd, stage)
}

/// Reports the failure of `stage` with the current errno and exits 127.
///
/// # Safety
///
/// Only between fork and `execve`, in a child of [`Prepared::run`]: the caller is a process
/// whose memory may be the launcher's (`CLONE_VM`), so this makes only async-signal-safe system
/// calls, never allocates and never unwinds.
unsafe fn fail(fd: RawFd, stage: Stage) -> ! {
    let errno = Errno::last_raw();
    report(fd, REPORT_FAILURE, stage as i32, errno);
    libc::_exit(127)
}

#[cfg(linux_like)]
extern "C" fn middle_entry(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Plan` of the suspended launcher thread, alive until we exit.
    unsafe { middle_main(&mut *(arg as *mut Plan)) }
}

#[cfg(linux_like)]
extern "C" fn grandchild_entry(arg: *mut c_void) -> c_int {
    // SAFETY: as for `middle_entry`; the middle process is suspended until we exec or exit.
    unsafe { exec_daemon(&mut *(arg as *mut Plan)) }
}

/// The intermediate process: new session, then the daemon, then exit so the daemon is orphaned.
///
/// # Safety
///
/// Only between fork and `execve`, in a child of [`Prepared::run`]: the caller is a process
/// whose memory may be the launcher's (`CLONE_VM`), so this makes only async-signal-safe system
/// calls, never allocates and never unwinds.
unsafe fn middle_main(plan: &mut Plan) -> ! {
    if libc::setsid() < 0 {
        fail(plan.report_fd, Stage::Setsid);
    }
    #[cfg(linux_like)]
    let pid = libc::clone(
        grandchild_entry,
        plan.grandchild_stack_top,
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        plan as *mut Plan as *mut c_void,
    );
    #[cfg(not(linux_like))]
    let pid = {
        let pid = libc::fork();
        if pid == 0 {
            exec_daemon(plan);
        }
        pid
    };
    if pid < 0 {
        fail(plan.report_fd, Stage::SecondFork);
    }
    // With CLONE_VM the daemon's failure flag is visible here; it has already _exit'ed or is
    // about to, so this wait is short. (After fork the flag is never set in our copy.)
    if ptr::read_volatile(&plan.daemon_failed) {
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    report(plan.report_fd, REPORT_PID, pid, 0);
    libc::_exit(0)
}

/// The daemon process before `execve`.
///
/// # Safety
///
/// Only between fork and `execve`, in a child of [`Prepared::run`]: the caller is a process
/// whose memory may be the launcher's (`CLONE_VM`), so this makes only async-signal-safe system
/// calls, never allocates and never unwinds.
unsafe fn exec_daemon(plan: &mut Plan) -> ! {
    let mut report_fd = plan.report_fd;

    // Every disposition back to default. Signals stay blocked (the launcher's full mask) until
    // just before execve, so none can be delivered half-way.
    for sig in 1..max_signal() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            set_default_disposition(sig);
        }
    }

    // Move every source above the target range first, so that no dup2 overwrites a source
    // that another target still needs; then place them.
    let count = plan.source_count as c_int;
    for i in 0..plan.source_count {
        let tmp = libc::fcntl(*plan.sources.add(i), libc::F_DUPFD_CLOEXEC, count);
        if tmp < 0 {
            fail_daemon(plan, report_fd, Stage::Descriptors);
        }
        *plan.scratch.add(i) = tmp;
    }
    let moved_report = libc::fcntl(report_fd, libc::F_DUPFD_CLOEXEC, count);
    if moved_report < 0 {
        fail_daemon(plan, report_fd, Stage::Descriptors);
    }
    report_fd = moved_report;
    for i in 0..plan.source_count {
        if libc::dup2(*plan.scratch.add(i), i as c_int) < 0 {
            fail_daemon(plan, report_fd, Stage::Descriptors);
        }
    }
    if close_all_from(count, report_fd) < 0 {
        fail_daemon(plan, report_fd, Stage::CloseDescriptors);
    }

    if plan.new_session && libc::setsid() < 0 {
        fail_daemon(plan, report_fd, Stage::NewSession);
    }
    if !plan.new_session && plan.process_group && libc::setpgid(0, 0) < 0 {
        fail_daemon(plan, report_fd, Stage::ProcessGroup);
    }
    if !plan.root.is_null() && (libc::chroot(plan.root) < 0 || libc::chdir(c"/".as_ptr()) < 0) {
        fail_daemon(plan, report_fd, Stage::Chroot);
    }
    if plan.set_ids {
        // Order matters: supplementary groups and the gid can only be changed while still root.
        if drop_privileges(plan.groups, plan.group_count, plan.gid, plan.uid) < 0 {
            fail_daemon(plan, report_fd, Stage::Privileges);
        }
        if plan.uid != 0 && regain_root() == 0 {
            Errno::set_raw(libc::EPERM);
            fail_daemon(plan, report_fd, Stage::Privileges);
        }
    }
    // After the credential change, which clears the parent-death signal (prctl(2)).
    #[cfg(linux_like)]
    if plan.parent_death_signal != 0 {
        if libc::prctl(libc::PR_SET_PDEATHSIG, plan.parent_death_signal as libc::c_ulong, 0, 0, 0) < 0 {
            fail_daemon(plan, report_fd, Stage::ParentDeathSignal);
        }
        // The parent may have died before the prctl: then nobody would ever send the signal.
        if libc::getppid() != plan.parent_pid {
            libc::_exit(127);
        }
    }
    if plan.set_umask {
        libc::umask(plan.umask);
    }
    if !plan.cwd.is_null() && libc::chdir(plan.cwd) < 0 {
        fail_daemon(plan, report_fd, Stage::Chdir);
    }

    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());

    if !plan.listen_pid_digits.is_null() {
        write_decimal(plan.listen_pid_digits, libc::getpid() as u64);
    }
    libc::execve(plan.program, plan.argv, plan.envp);
    fail_daemon(plan, report_fd, Stage::Exec)
}

/// Writes `n` in decimal and a NUL at `out`, which has room for 21 bytes. Async-signal-safe.
///
/// # Safety
///
/// `out` must be valid for writes of 21 bytes.
unsafe fn write_decimal(out: *mut u8, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        *out.add(i) = digits[len - 1 - i];
    }
    *out.add(len) = 0;
}

/// `setgroups`, then `setgid`, then `setuid`, all three ids (real, effective, saved). Returns -1
/// on failure.
///
/// On Linux these are raw system calls: the C library's wrappers broadcast the change to every
/// thread of the process (the "setxid" protocol), and a `CLONE_VM` child shares the launcher's
/// thread list, so the wrappers would signal the launcher's threads. The kernel applies the
/// credentials to the calling thread only, which is all the child has.
///
/// # Safety
///
/// `groups` must point to `count` readable gids.
#[cfg(linux_like)]
unsafe fn drop_privileges(groups: *const libc::gid_t, count: usize, gid: libc::gid_t, uid: libc::uid_t) -> libc::c_long {
    if libc::syscall(libc::SYS_setgroups, count, groups) < 0
        || libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0
        || libc::syscall(libc::SYS_setresuid, uid, uid, uid) < 0
    {
        return -1;
    }
    0
}

/// See the Linux version; after `fork` the child is single-threaded, so the wrappers are fine.
///
/// # Safety
///
/// `groups` must point to `count` readable gids.
#[cfg(not(linux_like))]
unsafe fn drop_privileges(groups: *const libc::gid_t, count: usize, gid: libc::gid_t, uid: libc::uid_t) -> libc::c_long {
    if libc::setgroups(count as _, groups) < 0 || libc::setgid(gid) < 0 || libc::setuid(uid) < 0 {
        return -1;
    }
    0
}

/// Tries to become root again; 0 means it worked (which must not happen after a drop).
///
/// # Safety
///
/// Only between fork and `execve`, in a child of [`Prepared::run`]: the caller is a process
/// whose memory may be the launcher's (`CLONE_VM`), so this makes only async-signal-safe system
/// calls, never allocates and never unwinds.
unsafe fn regain_root() -> libc::c_long {
    #[cfg(linux_like)]
    return libc::syscall(libc::SYS_setresuid, 0, 0, 0);
    #[cfg(not(linux_like))]
    return libc::setuid(0) as libc::c_long;
}

/// Sets `sig` to `SIG_DFL` in the calling process.
///
/// On Linux this is the raw `rt_sigaction` system call: glibc's `sigaction` refuses with
/// `EINVAL` the signals it reserves (32 and 33), yet a launcher started by glibc's
/// `posix_spawn` (cargo, Rust's `std::process::Command`, …) has 32 set to `SIG_IGN`, and an
/// ignored disposition survives `execve`. The kernel's `struct sigaction` for `SIG_DFL` (0), no
/// flags and an empty mask is all zeros on every architecture; the buffer is larger than any.
#[cfg(linux_like)]
unsafe fn set_default_disposition(sig: c_int) {
    const KERNEL_SIGSET_SIZE: usize =
        if cfg!(any(target_arch = "mips", target_arch = "mips32r6", target_arch = "mips64", target_arch = "mips64r6")) {
            16
        } else {
            8
        };
    let zeroed_kernel_sigaction = [0u64; 8];
    libc::syscall(
        libc::SYS_rt_sigaction,
        sig as libc::c_long,
        zeroed_kernel_sigaction.as_ptr(),
        ptr::null_mut::<c_void>(),
        KERNEL_SIGSET_SIZE,
    );
}

/// Sets `sig` to `SIG_DFL` (`EINVAL` for numbers the C library reserves is ignored).
#[cfg(not(linux_like))]
unsafe fn set_default_disposition(sig: c_int) {
    let mut default_action: libc::sigaction = std::mem::zeroed();
    default_action.sa_sigaction = libc::SIG_DFL;
    libc::sigaction(sig, &default_action, ptr::null_mut());
}

#[cfg(linux_like)]
fn max_signal() -> c_int {
    65
}

#[cfg(not(linux_like))]
fn max_signal() -> c_int {
    32
}

/// Closes every descriptor `>= lowest` except `keep` (which must be `>= lowest`). Returns -1 on
/// failure. Uses `close_range` where the kernel has it, else closes one by one up to the limit.
///
/// # Safety
///
/// Only between fork and `execve`, in a child of [`Prepared::run`]: the caller is a process
/// whose memory may be the launcher's (`CLONE_VM`), so this makes only async-signal-safe system
/// calls, never allocates and never unwinds.
unsafe fn close_all_from(lowest: c_int, keep: c_int) -> c_int {
    #[cfg(linux_like)]
    {
        let below = if keep > lowest {
            libc::syscall(libc::SYS_close_range, lowest as libc::c_uint, (keep - 1) as libc::c_uint, 0)
        } else {
            0
        };
        if below == 0 {
            let above = libc::syscall(libc::SYS_close_range, (keep + 1) as libc::c_uint, libc::c_uint::MAX, 0);
            if above == 0 {
                return 0;
            }
        }
        if Errno::last_raw() != libc::ENOSYS {
            return -1;
        }
    }
    let mut limit: libc::rlimit = std::mem::zeroed();
    let mut highest: c_int = 65536;
    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur != libc::RLIM_INFINITY {
        highest = limit.rlim_cur.min(1 << 20) as c_int;
    }
    let mut fd = lowest;
    while fd < highest {
        if fd != keep {
            libc::close(fd);
        }
        fd += 1;
    }
    0
}

