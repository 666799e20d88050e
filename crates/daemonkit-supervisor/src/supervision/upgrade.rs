//! The graceful restart (`--wait-ready`; SIGUSR2, or `UPGRADE` on the control socket): a new
//! copy of the command starts beside the running one, with the same listening sockets; once it
//! says `READY=1` it takes over and the old one is told to stop (SIGTERM, SIGKILL after
//! `--stop-timeout`). A new copy that exits or is not ready within `--upgrade-timeout` is
//! killed, and the old one keeps running untouched.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use daemonkit_core::control::{FailReason, Reply, Request};

use super::Supervisor;
use crate::control::{self, reply};
use crate::reports;

/// A graceful restart in progress: the new command, not ready yet.
pub(super) struct Upgrade {
    pub(super) pid: i32,
    pub(super) deadline: Instant,
    /// Who asked, to be told the outcome (none for SIGUSR2).
    reply: Option<UnixStream>,
    /// The wait status of the old command, had it exited meanwhile.
    old_exit: Option<i32>,
}

impl Supervisor {
    /// Takes graceful-restart requests waiting on the control socket.
    pub(super) fn accept_control(&mut self) {
        loop {
            let Some(listener) = &self.control else { return };
            let Some(stream) = control::accept(listener) else { return };
            match control::read_request(&stream) {
                Request::Upgrade => self.start_upgrade(Some(stream)),
                Request::Unknown => control::refuse_unknown(stream),
            }
        }
    }

    /// Starts a graceful restart: a new command beside the running one.
    pub(super) fn start_upgrade(&mut self, from: Option<UnixStream>) {
        let refuse = if self.upgrade.is_some() {
            Some(FailReason::Busy)
        } else if self.stopping {
            Some(FailReason::Stopping)
        } else if self.awaiting_ready || self.child.is_none() {
            Some(FailReason::Starting)
        } else {
            None
        };
        if let Some(reason) = refuse {
            let message = reason.refusal().unwrap_or("the command is not running and ready (starting or restarting); try again");
            self.log_line(&format!("graceful restart refused: {message}"));
            reply(from, &Reply::Fail { reason, message: message.to_string() });
            return;
        }
        self.tail.clear();
        match self.command().spawn() {
            Ok(launched) => {
                self.log_line(&format!("graceful restart: started the new command (pid {}); the old one (pid {}) serves until it is ready", launched.pid, self.child.unwrap_or(0)));
                self.upgrade = Some(Upgrade { pid: launched.pid, deadline: Instant::now() + self.cfg.upgrade_timeout, reply: from, old_exit: None });
            }
            Err(e) => {
                let message = format!("cannot start {:?}: {e}", self.cfg.program);
                self.log_line(&format!("graceful restart failed: {message}"));
                reply(from, &Reply::Fail { reason: FailReason::Spawn, message });
            }
        }
    }

    /// The new command said `READY=1`: it takes over, the old one is told to stop.
    pub(super) fn upgrade_ready(&mut self) {
        let Some(up) = self.upgrade.take() else { return };
        let old = self.child.replace(up.pid);
        self.publish_command(up.pid);
        self.started_at = Instant::now();
        self.backoff.reset();
        self.tail.clear();
        if let Some(g) = &self.guard {
            g.watch(up.pid);
        }
        if let Some(old) = old {
            // SAFETY: `old` is our own unreaped child, so it cannot have been recycled.
            unsafe {
                libc::kill(old, libc::SIGTERM);
                libc::kill(old, libc::SIGCONT);
            }
            self.retiring.push((old, Instant::now() + self.cfg.stop_timeout));
        }
        self.log_line(&format!("graceful restart: the new command (pid {}) is ready; stopping the old one", up.pid));
        reply(up.reply, &Reply::Ok { pid: up.pid });
        if self.cfg.notify {
            self.notify_ready();
        }
    }

    /// The new command exited or timed out before it was ready: it is ended, the old one runs on.
    /// Returns the old one's wait status, had it exited meanwhile.
    fn upgrade_failed(&mut self, reason: FailReason, status: Option<i32>) -> Option<i32> {
        let up = self.upgrade.take()?;
        if status.is_none() {
            // SAFETY: `up.pid` is our own unreaped child; its group is its pid.
            unsafe { libc::kill(-up.pid, libc::SIGKILL) };
            let mut st = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(up.pid, &mut st, 0) };
        } else {
            // What it left in its group goes with it.
            // SAFETY: its group is its pid, which stays reserved while any member lives.
            unsafe { libc::kill(-up.pid, libc::SIGKILL) };
        }
        self.drain_logs();
        let tail = self.tail.text();
        self.tail.clear();
        let what = match status {
            Some(st) => {
                let code = reports::exit_code(st);
                format!("the new command (pid {}) exited with status {code} before it was ready", up.pid)
            }
            None => format!("the new command (pid {}) was not ready after {} ms and was killed", up.pid, self.cfg.upgrade_timeout.as_millis()),
        };
        self.log_line(&format!("graceful restart failed: {what}; the old command keeps running"));
        let message = if tail.is_empty() { what } else { format!("{what}:\n{tail}") };
        reply(up.reply, &Reply::Fail { reason, message });
        up.old_exit
    }

    /// Acts on the deadlines of a graceful restart at `now`: the new command's to be ready,
    /// the old ones' to have stopped.
    pub(super) fn upgrade_deadlines(&mut self, now: Instant) {
        if self.upgrade.as_ref().is_some_and(|u| now >= u.deadline) {
            if let Some(status) = self.upgrade_failed(FailReason::Timeout, None) {
                self.end_tree();
                self.exited(status);
            }
        }
        for (pid, at) in self.retiring.iter_mut() {
            if now >= *at {
                // SAFETY: `pid` is our own unreaped child; its group is its pid.
                unsafe { libc::kill(-*pid, libc::SIGKILL) };
                *at = now + Duration::from_secs(3600);
            }
        }
    }

    /// Whether the reaped `pid` was an old command retired by a graceful restart.
    pub(super) fn retired(&mut self, pid: i32) -> bool {
        let Some(i) = self.retiring.iter().position(|(p, _)| *p == pid) else { return false };
        // An old command gone after a graceful restart: what it left in its group too.
        self.retiring.remove(i);
        // SAFETY: its group is its pid, which stays reserved while any member lives.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        self.log_line(&format!("graceful restart: the old command (pid {pid}) has exited"));
        if self.stopping && self.child.is_none() && self.upgrade.is_none() && self.retiring.is_empty() {
            self.finish(0);
        }
        true
    }

    /// Whether the reaped `pid` (exited with `status`) was handled as part of a graceful
    /// restart: the new command, or the old one dying while the new one starts.
    pub(super) fn upgrade_exited(&mut self, pid: i32, status: i32) -> bool {
        if self.upgrade.as_ref().is_some_and(|u| u.pid == pid) {
            if self.stopping {
                self.upgrade_failed(FailReason::Stopping, Some(status));
                if self.child.is_none() {
                    self.finish(0);
                }
                return true;
            }
            if let Some(old_status) = self.upgrade_failed(FailReason::Exited, Some(status)) {
                // The old one had exited meanwhile: now it counts as the command's exit.
                self.end_tree();
                self.exited(old_status);
            }
            return true;
        }
        if Some(pid) == self.child && self.upgrade.is_some() && !self.stopping {
            // The old command died during a graceful restart: the new one decides.
            self.child = None;
            if let Some(up) = self.upgrade.as_mut() {
                up.old_exit = Some(status);
            }
            return true;
        }
        false
    }
}
