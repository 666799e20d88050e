//! Starting programs: a daemon (double fork + execve), or this process replaced.

use daemonkit_core::launch::{Command, LaunchError, Stdio};
use daemonkit_core::{logfile, privileges};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{coded, errno_error, Result};

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

/// This process's own argv as the kernel gave it (`argv[0]` included), for runtimes whose
/// `process.argv` / `execArgv` do not show it all (Deno hides `run -A`). Throws `EILSEQ` when
/// an argument is not UTF-8.
#[napi]
pub fn process_argv(env: Env) -> Result<Vec<String>> {
    std::env::args_os()
        .map(|a| a.into_string().map_err(|a| coded(&env, "EILSEQ", format!("argument {a:?} is not UTF-8"))))
        .collect()
}
