//! The pidfile: taking its lock, the lock as a handle, and what a pidfile says.

use std::os::fd::AsRawFd;

use daemonkit_core::pidfile::{self, AcquireError, Pidfile, Probe};
use daemonkit_core::Errno;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{coded, errno_error, Result};

/// A pidfile held locked through one open descriptor (close-on-exec unless changed).
///
/// The caller decides when the lock ends, with `release()` or `discard()`: it is never released
/// when the object is garbage-collected, since a daemon holds its lock for as long as it lives.
#[napi]
pub struct PidfileLock {
    path: String,
    file: Option<Pidfile>,
}

impl PidfileLock {
    fn held(&self, env: &Env) -> Result<&Pidfile> {
        self.file.as_ref().ok_or_else(|| coded(env, "EBADF", format!("the lock on {} is released", self.path)))
    }
}

impl Drop for PidfileLock {
    fn drop(&mut self) {
        // Collected without release() or discard(): the descriptor stays open, and the lock held.
        if let Some(file) = self.file.take() {
            let _ = file.into_raw_fd();
        }
    }
}

fn pid_write_error(env: &Env, errno: Errno) -> napi::Error {
    match errno {
        Errno::EMLINK => coded(env, "EPIDFILEUNSAFE", "writing the pidfile: it has other names (hard links), so it is left untouched"),
        e => errno_error(env, e, "writing the pidfile"),
    }
}

#[napi]
impl PidfileLock {
    /// Takes over the lock this process inherited at `fd` on the pidfile at `path` (check it
    /// first with `inheritedLockProblem`). One handle per inherited descriptor: the package makes
    /// it once (`handoffLock()`).
    #[napi(factory)]
    pub fn inherited(env: Env, fd: i32, path: String) -> Result<PidfileLock> {
        if fd < 0 {
            return Err(coded(&env, "EBADF", format!("{fd} is not a descriptor")));
        }
        // SAFETY: `fd` (not negative) was inherited from the launcher and nothing else in this
        // process owns it: the package turns it into this one handle and uses the number only
        // through it.
        let file = unsafe { Pidfile::from_raw_fd(fd, &path) };
        Ok(PidfileLock { path, file: Some(file) })
    }

    /// The locked descriptor; throws `EBADF` once released.
    #[napi(getter)]
    pub fn fd(&self, env: Env) -> Result<i32> {
        Ok(self.held(&env)?.as_raw_fd())
    }

    /// The pidfile's path.
    #[napi(getter)]
    pub fn path(&self) -> String {
        self.path.clone()
    }

    /// Writes `pid` and a newline into the pidfile.
    #[napi]
    pub fn write_pid(&self, env: Env, pid: i32) -> Result<()> {
        self.held(&env)?.write_pid(pid).map_err(|e| pid_write_error(&env, e))
    }

    /// Replaces the pid in the pidfile without the file ever reading empty.
    #[napi]
    pub fn replace_pid(&self, env: Env, pid: i32) -> Result<()> {
        self.held(&env)?.replace_pid(pid).map_err(|e| pid_write_error(&env, e))
    }

    /// Unlinks the pidfile if its path still names this file; returns whether it did. The lock
    /// stays held.
    #[napi]
    pub fn remove(&self, env: Env) -> Result<bool> {
        self.held(&env)?.remove().map_err(|e| errno_error(&env, e, "removing the pidfile"))
    }

    /// Closes the descriptor, which ends the lock unless another process shares it. Idempotent.
    #[napi]
    pub fn release(&mut self) {
        drop(self.file.take());
    }

    /// The way out of a failed start: unlinks the pidfile if it is still this file, then
    /// releases the lock. Never throws: a pidfile nobody locks reads as "not running" anyway.
    #[napi]
    pub fn discard(&mut self) {
        if let Some(file) = &self.file {
            let _ = file.remove();
        }
        self.release();
    }
}

/// The outcome of taking a pidfile's lock.
#[napi(object, object_from_js = false)]
pub struct Acquired {
    /// The lock, when it was taken.
    pub lock: Option<PidfileLock>,
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
    let none = Acquired { lock: None, running: false, running_pid: None, foreign: false, foreign_named_pid: None, replaced_shared: false };
    match Pidfile::acquire(&path) {
        Ok(file) => {
            let replaced_shared = file.replaced_shared_lock();
            Ok(Acquired { lock: Some(PidfileLock { path, file: Some(file) }), replaced_shared, ..none })
        }
        Err(AcquireError::AlreadyRunning { pid }) => Ok(Acquired { running: true, running_pid: pid, ..none }),
        Err(AcquireError::LockedByOther { named }) => Ok(Acquired { foreign: true, foreign_named_pid: named, ..none }),
        Err(AcquireError::Unsafe(problem)) => Err(coded(&env, "EPIDFILEUNSAFE", problem)),
        Err(AcquireError::Unstable) => Err(coded(&env, "EPIDFILEUNSAFE", AcquireError::Unstable)),
        Err(AcquireError::Io { op, errno }) => Err(errno_error(&env, errno, op)),
    }
}

/// Checks that `fd`, inherited by this process, holds the exclusive lock on the regular file at
/// `path`; returns `null` when it does, else why not.
#[napi]
pub fn inherited_lock_problem(fd: i32, path: String) -> Option<String> {
    pidfile::verify_inherited_lock(fd, &path).err().map(|p| p.to_string())
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

/// What a pidfile says, judged by its lock.
#[napi(string_enum = "lowercase")]
pub enum PidfileState {
    /// Locked by the process it names.
    Running,
    /// Locked, no valid pid in it.
    Starting,
    /// Locked, but not by the process it names.
    Foreign,
    /// Not locked (or missing).
    Stopped,
    /// The path or the file is not trusted.
    Unsafe,
}

/// What a pidfile says, judged by its lock.
#[napi(object, object_from_js = false)]
pub struct PidfileProbe {
    /// The state; with `foreign`, `pid` is the process the file names.
    pub state: PidfileState,
    /// The running daemon's pid.
    pub pid: Option<i32>,
    /// For `stopped`: the pid a leftover file names.
    pub stale_pid: Option<i32>,
    /// Whether a file exists at the path.
    pub exists: bool,
    /// Why the content or the path is not trusted, when it is not.
    pub reason: Option<String>,
    /// For `running`: why it could not be proven that `pid` holds the lock (another user's
    /// process, or no proof on this platform); absent when it was proven.
    pub unverified: Option<String>,
    /// For `running` without proof: the errno name behind it (`"EACCES"`), absent where the
    /// platform offers no proof.
    pub unverified_code: Option<String>,
}

impl PidfileProbe {
    fn new(state: PidfileState) -> PidfileProbe {
        PidfileProbe { state, pid: None, stale_pid: None, exists: true, reason: None, unverified: None, unverified_code: None }
    }
}

impl From<Probe> for PidfileProbe {
    fn from(probe: Probe) -> PidfileProbe {
        use PidfileState::*;
        match probe {
            Probe::Running { pid } => PidfileProbe { pid: Some(pid), ..PidfileProbe::new(Running) },
            Probe::RunningUnverified { pid, errno: Some(errno) } => PidfileProbe {
                pid: Some(pid),
                unverified: Some(format!("cannot verify that pid {pid} holds the lock: its descriptors are unreadable ({})", errno.desc())),
                unverified_code: Some(format!("{errno:?}")),
                ..PidfileProbe::new(Running)
            },
            Probe::RunningUnverified { pid, errno: None } => PidfileProbe {
                pid: Some(pid),
                unverified: Some(format!("cannot verify that pid {pid} holds the lock: this system offers no way to")),
                ..PidfileProbe::new(Running)
            },
            Probe::LockedByOther { named } => PidfileProbe {
                pid: named,
                reason: Some(AcquireError::LockedByOther { named }.to_string()),
                ..PidfileProbe::new(Foreign)
            },
            Probe::RunningUnknownPid { content } => PidfileProbe { reason: Some(content.to_string()), ..PidfileProbe::new(Starting) },
            Probe::NotRunning { stale: None } => PidfileProbe { exists: false, ..PidfileProbe::new(Stopped) },
            Probe::NotRunning { stale: Some(Ok(pid)) } => PidfileProbe { stale_pid: Some(pid), ..PidfileProbe::new(Stopped) },
            Probe::NotRunning { stale: Some(Err(content)) } => PidfileProbe { reason: Some(content.to_string()), ..PidfileProbe::new(Stopped) },
            Probe::Unsafe(problem) => PidfileProbe { reason: Some(problem.to_string()), ..PidfileProbe::new(Unsafe) },
        }
    }
}

/// Reports whether the pidfile's daemon runs.
#[napi]
pub fn probe_pidfile(env: Env, path: String) -> Result<PidfileProbe> {
    pidfile::probe(&path).map(PidfileProbe::from).map_err(|e| errno_error(&env, e, "reading the pidfile"))
}
