//! The graceful-restart control socket's protocol (`daemonkit_core::control`) for the daemon's
//! server (src/takeover.ts) and the client (src/upgrade.ts) in TypeScript.

use daemonkit_core::control::{FailReason, Reply, Request, REQUEST_LIMIT, UPGRADE};
use napi_derive::napi;

/// The request line for a graceful restart (`"UPGRADE\n"`).
#[napi]
pub fn control_upgrade_request() -> String {
    UPGRADE.to_string()
}

/// The most a request may take before the daemon gives up on it (bytes).
#[napi]
pub fn control_request_limit() -> u32 {
    REQUEST_LIMIT as u32
}

/// Whether `line` (newline included) asks for a graceful restart.
#[napi]
pub fn is_upgrade_request(line: String) -> bool {
    Request::parse(line.as_bytes()) == Request::Upgrade
}

/// Why a graceful restart did not happen (the word on the wire).
#[napi(string_enum = "lowercase")]
pub enum ControlFailReason {
    /// Another graceful restart is in progress.
    Busy,
    /// The daemon is stopping.
    Stopping,
    /// The daemon is not ready yet.
    Starting,
    /// The new copy exited before it was ready.
    Exited,
    /// The new copy was not ready in time.
    Timeout,
    /// The new copy could not be started.
    Spawn,
    /// The request was not one.
    Usage,
    /// Anything else.
    Failed,
}

impl From<FailReason> for ControlFailReason {
    fn from(r: FailReason) -> Self {
        match r {
            FailReason::Busy => ControlFailReason::Busy,
            FailReason::Stopping => ControlFailReason::Stopping,
            FailReason::Starting => ControlFailReason::Starting,
            FailReason::Exited => ControlFailReason::Exited,
            FailReason::Timeout => ControlFailReason::Timeout,
            FailReason::Spawn => ControlFailReason::Spawn,
            FailReason::Usage => ControlFailReason::Usage,
            FailReason::Failed => ControlFailReason::Failed,
        }
    }
}

impl From<ControlFailReason> for FailReason {
    fn from(r: ControlFailReason) -> Self {
        match r {
            ControlFailReason::Busy => FailReason::Busy,
            ControlFailReason::Stopping => FailReason::Stopping,
            ControlFailReason::Starting => FailReason::Starting,
            ControlFailReason::Exited => FailReason::Exited,
            ControlFailReason::Timeout => FailReason::Timeout,
            ControlFailReason::Spawn => FailReason::Spawn,
            ControlFailReason::Usage => FailReason::Usage,
            ControlFailReason::Failed => FailReason::Failed,
        }
    }
}

/// What a daemon says when it refuses a graceful restart before starting anything, for the
/// refusals every server shares (`busy`, `stopping`); `null` for the others.
#[napi]
pub fn control_refusal(reason: ControlFailReason) -> Option<String> {
    FailReason::from(reason).refusal().map(str::to_string)
}

/// The daemon's answer on its control socket.
#[napi(discriminant = "kind", discriminant_case = "camelCase")]
pub enum ControlReply {
    /// The new copy is ready and serves.
    Ok {
        /// The new copy's pid.
        pid: i32,
    },
    /// Nothing changed: the old copy serves on.
    Fail {
        /// Why.
        reason: ControlFailReason,
        /// What happened, in words.
        message: String,
    },
}

/// The line that carries `reply`, newline included.
#[napi]
pub fn encode_control_reply(reply: ControlReply) -> String {
    match reply {
        ControlReply::Ok { pid } => Reply::Ok { pid },
        ControlReply::Fail { reason, message } => Reply::Fail { reason: reason.into(), message },
    }
    .encode()
}

/// The answer in `line`, or `null` if it is not one.
#[napi]
pub fn decode_control_reply(line: String) -> Option<ControlReply> {
    Some(match Reply::decode(&line)? {
        Reply::Ok { pid } => ControlReply::Ok { pid },
        Reply::Fail { reason, message } => ControlReply::Fail { reason: reason.into(), message },
    })
}

/// The daemon's answer to a request that is not one, newline included.
#[napi]
pub fn control_unknown_request_reply() -> String {
    Reply::unknown_request().encode()
}
