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
//! The module is laid out as `std::process` is: this file holds the public builder
//! ([`Command`]) and its types, `parent` prepares the launch and runs the launcher's side
//! (the stages, the report pipe, reaping), and `child` is everything that runs between fork
//! and `execve`, under the one safety contract stated there.
//!
//! ```no_run
//! use daemonkit_core::launch::{Command, Stdio};
//! let mut cmd = Command::new("/usr/bin/sleep");
//! cmd.arg("60").stdout(Stdio::Null);
//! let daemon = cmd.launch().expect("launch");
//! println!("daemon pid {}", daemon.pid);
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use libc::c_int;
use nix::errno::Errno;

use crate::argv::env_entry;

mod child;
mod parent;

use parent::{Mode, Prepared};

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
        let list = vars.into_iter().map(|(k, v)| env_entry(k.as_ref(), v.as_ref())).collect();
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
    /// (Linux `PR_SET_PDEATHSIG`; ignored elsewhere). Only with [`Command::spawn`]:
    /// [`Command::launch`] ignores it (a daemon's parent is the middle process, gone at once).
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
