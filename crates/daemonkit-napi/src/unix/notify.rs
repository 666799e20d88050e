//! systemd's notification socket.

use daemonkit_core::notify;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{coded, Result};

/// Sends `state` to systemd's `$NOTIFY_SOCKET`; returns false when it is not set.
#[napi]
pub fn sd_notify(env: Env, state: String) -> Result<bool> {
    notify::notify(&state).map_err(|e| coded(&env, "ENOTIFY", format!("sd_notify: {e}")))
}

/// Whether `$NOTIFY_SOCKET` names a datagram socket that can be connected to (nothing is sent):
/// `null` when it can, or when the variable is not set; else why not.
#[napi]
pub fn notify_socket_problem() -> Option<String> {
    let path = notify::socket_path()?;
    notify::reachable(&path).err().map(|e| e.to_string())
}
