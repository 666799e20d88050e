//! The launcher's side of a launch: preparing everything the children need, running the stages
//! (`clone` on Linux, `fork` elsewhere), reading the children's reports from the close-on-exec
//! pipe and reaping the intermediate process.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr;

use libc::c_void;
use nix::errno::Errno;

#[cfg(linux_like)]
use super::child::{grandchild_entry, middle_entry};
#[cfg(not(linux_like))]
use super::child::{exec_daemon, middle_main};
use super::child::{Plan, Report, REPORT_FAILURE, REPORT_PID};
use super::{Command, LaunchError, Launched, Stage, Stdio};
use crate::argv::{self, CStringArray};
use crate::stdio;

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

/// The owned data behind a [`Plan`]: everything the children use, converted before the first
/// stage so that they never allocate.
pub(super) struct Prepared<'a> {
    cmd: &'a Command,
    program: CString,
    argv: CStringArray,
    envp: CStringArray,
    cwd: Option<CString>,
    root: Option<CString>,
    /// Where the digits of the `LISTEN_PID=` entry of `envp` go, or null.
    listen_pid_digits: *mut u8,
    sources: Vec<RawFd>,
    scratch: Vec<RawFd>,
    _dev_null: Option<OwnedFd>,
}

/// Room for `LISTEN_PID=`, a pid's digits and the NUL.
const LISTEN_PID_ENTRY: usize = 11 + 20 + 1;

impl<'a> Prepared<'a> {
    pub(super) fn new(cmd: &'a Command) -> Result<Prepared<'a>, LaunchError> {
        let current;
        let env_bytes = match &cmd.env {
            Some(list) => list,
            None => {
                current = argv::current_env();
                &current
            }
        };
        let program = cstring(&resolve_on_path(&cmd.program, cmd.env.as_deref())?, "program")?;
        let argv = CStringArray::new(&cmd.args).map_err(|_| LaunchError::NulByte("argument"))?;
        let replaced = |e: &&Vec<u8>| cmd.listen_pid && e.starts_with(b"LISTEN_PID=");
        let mut envp = CStringArray::new(env_bytes.iter().filter(|e| !replaced(e)))
            .map_err(|_| LaunchError::NulByte("environment"))?;
        let cwd = cmd.cwd.as_deref().map(|d| cstring(d, "working directory")).transpose()?;
        let root = cmd.chroot.as_deref().map(|d| cstring(d, "chroot directory")).transpose()?;
        let listen_pid_digits =
            if cmd.listen_pid { envp.push_writable(b"LISTEN_PID=", LISTEN_PID_ENTRY) } else { ptr::null_mut() };

        let needs_null = [cmd.stdin, cmd.stdout, cmd.stderr].contains(&Stdio::Null);
        let dev_null = if needs_null { Some(stdio::open_dev_null().map_err(LaunchError::Prepare)?) } else { None };
        let null_fd = dev_null.as_ref().map_or(-1, |fd| fd.as_raw_fd());
        let resolve = |s: Stdio| match s {
            Stdio::Null => null_fd,
            Stdio::Fd(fd) => fd,
        };
        let mut sources = vec![resolve(cmd.stdin), resolve(cmd.stdout), resolve(cmd.stderr)];
        sources.extend_from_slice(&cmd.pass_fds);
        let scratch = vec![-1; sources.len()];
        Ok(Prepared { cmd, program, argv, envp, cwd, root, listen_pid_digits, sources, scratch, _dev_null: dev_null })
    }

    /// Runs the stages: returns once the program has called `execve`, or a step failed.
    pub(super) fn run(mut self, mode: Mode) -> Result<Launched, LaunchError> {
        let (report_read, report_write) = stdio::pipe_cloexec().map_err(LaunchError::Prepare)?;
        #[cfg(linux_like)]
        let (middle_stack, grandchild_stack) = (Stack::new(CHILD_STACK_SIZE)?, Stack::new(CHILD_STACK_SIZE)?);
        let cmd = self.cmd;
        let credentials = cmd.credentials.as_ref();
        let mut plan = Plan {
            program: self.program.as_ptr(),
            argv: self.argv.as_ptr(),
            envp: self.envp.as_ptr(),
            sources: self.sources.as_ptr(),
            source_count: self.sources.len(),
            scratch: self.scratch.as_mut_ptr(),
            cwd: self.cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            set_umask: cmd.umask.is_some(),
            umask: cmd.umask.unwrap_or(0),
            root: self.root.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            set_ids: credentials.is_some(),
            uid: credentials.map_or(0, |c| c.uid),
            gid: credentials.map_or(0, |c| c.gid),
            groups: credentials.map_or(ptr::null(), |c| c.groups.as_ptr()),
            group_count: credentials.map_or(0, |c| c.groups.len()),
            // A daemon's parent is the middle process, which exits at once: only for spawn().
            parent_death_signal: if matches!(mode, Mode::Child) { cmd.parent_death_signal.unwrap_or(0) } else { 0 },
            // SAFETY: getpid has no preconditions.
            parent_pid: unsafe { libc::getpid() },
            new_session: cmd.new_session,
            process_group: cmd.process_group,
            report_fd: report_write.as_raw_fd(),
            listen_pid_digits: self.listen_pid_digits,
            daemon_failed: false,
            #[cfg(linux_like)]
            grandchild_stack_top: grandchild_stack.top(),
        };

        // Block every signal so that no handler of ours runs in a child (with CLONE_VM it would
        // run on our memory); the children start with this mask and the daemon resets it.
        let old_mask = block_all_signals();
        #[cfg(linux_like)]
        // SAFETY: the entry points keep the contract of `child` on `plan`, which outlives the
        // child: CLONE_VFORK suspends this thread until the child has exec'd or exited.
        let middle = unsafe {
            let entry: extern "C" fn(*mut c_void) -> libc::c_int = match mode {
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
        // SAFETY: the child keeps the contract of `child`, on its copy of `plan`.
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
pub(super) enum Mode {
    /// Fork, `setsid`, fork, `execve`: [`Command::launch`].
    Daemon,
    /// One stage, then `execve`: [`Command::spawn`].
    Child,
}

/// Reads the children's reports until the pipe's write ends are all closed (each child's copy
/// is close-on-exec).
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

/// Waits for our child `pid` to end (retrying on `EINTR`).
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

/// Blocks every signal in the calling thread; returns the previous mask.
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

