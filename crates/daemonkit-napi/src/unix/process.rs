//! A handle on one process that a recycled pid cannot fool.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemonkit_core::signals::ProcessHandle;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{coded, errno_error, Result};

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
