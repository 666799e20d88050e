//! The graceful-restart control socket's protocol, spoken by the supervisor (`--wait-ready`), by
//! a `daemonize()` daemon (through the binding) and by their clients (`gracefulRestart()`,
//! `daemonkit restart --graceful`): the client writes one line, `UPGRADE`; once the restart is
//! over the daemon answers one line, `OK <new pid>` or `FAIL <reason> <message as a JSON
//! string>`. The socket's name and its binding are in [`crate::listen`].

use crate::supervise::{json_string, json_unstring};

/// The one request there is, a graceful restart, as the client writes it.
pub const UPGRADE: &str = "UPGRADE\n";

/// The most a request may take before the daemon gives up on it (bytes).
pub const REQUEST_LIMIT: usize = 64;

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `UPGRADE`: a graceful restart.
    Upgrade,
    /// Anything else.
    Unknown,
}

impl Request {
    /// The request in one line a client sent (newline included).
    pub fn parse(line: &[u8]) -> Request {
        if line == UPGRADE.as_bytes() {
            Request::Upgrade
        } else {
            Request::Unknown
        }
    }
}

/// The daemon's answer, once the restart is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The new copy (`pid`) is ready and serves; the old one is stopping.
    Ok {
        /// The new copy's pid.
        pid: i32,
    },
    /// Nothing changed: the old copy serves on.
    Fail {
        /// One word: `busy`, `stopping`, `starting`, `timeout`, `exited`, `spawn`, `usage`, …
        reason: String,
        /// What happened, in words (may span lines).
        message: String,
    },
}

impl Reply {
    /// The answer for a request that is not one.
    pub fn unknown_request() -> Reply {
        Reply::Fail { reason: "usage".to_string(), message: "unknown request".to_string() }
    }

    /// The line the daemon writes, newline included.
    pub fn encode(&self) -> String {
        match self {
            Reply::Ok { pid } => format!("OK {pid}\n"),
            Reply::Fail { reason, message } => format!("FAIL {reason} {}\n", json_string(message)),
        }
    }

    /// Reads an answer (with or without its newline); `None` for anything else.
    pub fn decode(line: &str) -> Option<Reply> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if let Some(pid) = line.strip_prefix("OK ") {
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            return Some(Reply::Ok { pid: pid.parse().ok()? });
        }
        let (reason, message) = line.strip_prefix("FAIL ")?.split_once(' ')?;
        if reason.is_empty() {
            return None;
        }
        Some(Reply::Fail { reason: reason.to_string(), message: json_unstring(message)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(Request::parse(b"UPGRADE\n"), Request::Upgrade);
        assert_eq!(Request::parse(b"UPGRADE"), Request::Unknown);
        assert_eq!(Request::parse(b"upgrade\n"), Request::Unknown);
        assert_eq!(Request::parse(b""), Request::Unknown);
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Ok { pid: 42 },
            Reply::unknown_request(),
            Reply::Fail { reason: "exited".into(), message: "daemon (pid 7) exited with code 1:\nboom \"quoted\" é".into() },
        ] {
            let line = reply.encode();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
            assert_eq!(Reply::decode(&line), Some(reply));
        }
        assert_eq!(Reply::unknown_request().encode(), "FAIL usage \"unknown request\"\n");
    }

    #[test]
    fn anything_else_is_no_reply() {
        for line in ["", "OK", "OK ", "OK x", "OK 1 2", "FAIL", "FAIL busy", "FAIL  \"x\"", "FAIL busy not-json", "READY 1"] {
            assert_eq!(Reply::decode(line), None, "{line:?}");
        }
    }
}
