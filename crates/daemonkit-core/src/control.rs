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

/// Why a graceful restart did not happen: one word on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// Another graceful restart is in progress.
    Busy,
    /// The daemon is stopping.
    Stopping,
    /// The daemon (or its command) is not ready yet.
    Starting,
    /// The new copy exited before it was ready.
    Exited,
    /// The new copy was not ready in time.
    Timeout,
    /// The new copy could not be started.
    Spawn,
    /// The request was not one.
    Usage,
    /// Anything else, including a word this version does not know.
    Failed,
}

impl FailReason {
    const ALL: [FailReason; 8] = [
        FailReason::Busy,
        FailReason::Stopping,
        FailReason::Starting,
        FailReason::Exited,
        FailReason::Timeout,
        FailReason::Spawn,
        FailReason::Usage,
        FailReason::Failed,
    ];

    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Busy => "busy",
            FailReason::Stopping => "stopping",
            FailReason::Starting => "starting",
            FailReason::Exited => "exited",
            FailReason::Timeout => "timeout",
            FailReason::Spawn => "spawn",
            FailReason::Usage => "usage",
            FailReason::Failed => "failed",
        }
    }

    /// The reason a word names; [`FailReason::Failed`] for one this version does not know.
    pub fn from_word(word: &str) -> FailReason {
        FailReason::ALL.into_iter().find(|r| r.as_str() == word).unwrap_or(FailReason::Failed)
    }

    /// What the daemon says when it refuses for this reason before starting anything, for the
    /// refusals every server shares (`Busy`, `Stopping`).
    pub fn refusal(self) -> Option<&'static str> {
        match self {
            FailReason::Busy => Some("a graceful restart is already in progress"),
            FailReason::Stopping => Some("the daemon is stopping"),
            _ => None,
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
        /// Why.
        reason: FailReason,
        /// What happened, in words (may span lines).
        message: String,
    },
}

impl Reply {
    /// The answer for a request that is not one.
    pub fn unknown_request() -> Reply {
        Reply::Fail { reason: FailReason::Usage, message: "unknown request".to_string() }
    }

    /// The line the daemon writes, newline included.
    pub fn encode(&self) -> String {
        match self {
            Reply::Ok { pid } => format!("OK {pid}\n"),
            Reply::Fail { reason, message } => format!("FAIL {} {}\n", reason.as_str(), json_string(message)),
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
        let (word, message) = line.strip_prefix("FAIL ")?.split_once(' ')?;
        if word.is_empty() {
            return None;
        }
        Some(Reply::Fail { reason: FailReason::from_word(word), message: json_unstring(message)? })
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
            Reply::Fail { reason: FailReason::Exited, message: "daemon (pid 7) exited with code 1:\nboom \"quoted\" é".into() },
        ] {
            let line = reply.encode();
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
            assert_eq!(Reply::decode(&line), Some(reply));
        }
        assert_eq!(Reply::unknown_request().encode(), "FAIL usage \"unknown request\"\n");
    }

    #[test]
    fn reasons_are_words_both_ways() {
        for r in FailReason::ALL {
            assert_eq!(FailReason::from_word(r.as_str()), r);
        }
        assert_eq!(FailReason::from_word("newer-word"), FailReason::Failed);
        let line = "FAIL newer-word \"x\"\n";
        assert_eq!(Reply::decode(line), Some(Reply::Fail { reason: FailReason::Failed, message: "x".into() }));
    }

    #[test]
    fn anything_else_is_no_reply() {
        for line in ["", "OK", "OK ", "OK x", "OK 1 2", "FAIL", "FAIL busy", "FAIL  \"x\"", "FAIL busy not-json", "READY 1"] {
            assert_eq!(Reply::decode(line), None, "{line:?}");
        }
    }
}
