//! The graceful-restart control socket's protocol (`daemonkit_core::control`) for the daemon's
//! server (src/takeover.ts) and the client (src/upgrade.ts) in TypeScript.

use daemonkit_core::control::{Reply, Request, REQUEST_LIMIT, UPGRADE};
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
        /// One word: `busy`, `stopping`, `starting`, `timeout`, `exited`, `spawn`, `usage`, …
        reason: String,
        /// What happened, in words.
        message: String,
    },
}

/// The line that carries `reply`, newline included.
#[napi]
pub fn encode_control_reply(reply: ControlReply) -> String {
    match reply {
        ControlReply::Ok { pid } => Reply::Ok { pid },
        ControlReply::Fail { reason, message } => Reply::Fail { reason, message },
    }
    .encode()
}

/// The answer in `line`, or `null` if it is not one.
#[napi]
pub fn decode_control_reply(line: String) -> Option<ControlReply> {
    Some(match Reply::decode(&line)? {
        Reply::Ok { pid } => ControlReply::Ok { pid },
        Reply::Fail { reason, message } => ControlReply::Fail { reason, message },
    })
}

/// The daemon's answer to a request that is not one, newline included.
#[napi]
pub fn control_unknown_request_reply() -> String {
    Reply::unknown_request().encode()
}
