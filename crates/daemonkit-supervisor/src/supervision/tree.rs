//! The command's process tree: the guard, the child-subreaper role and the cgroup of our own
//! that keep it together, and ending what the command leaves behind.

use std::path::PathBuf;
use std::time::Duration;

use daemonkit_core::tree;

use super::Supervisor;
use crate::guard;

/// How long the command's leftover descendants have between SIGTERM and SIGKILL.
pub const TREE_GRACE: Duration = Duration::from_secs(3);
/// How long after SIGKILL the supervisor still waits for them to go (a process in
/// uninterruptible sleep dies only when it wakes).
const TREE_KILL_WAIT: Duration = Duration::from_secs(2);

impl Supervisor {
    /// Before the first command: starts the guard, becomes a child subreaper and enters a
    /// cgroup of our own where it can.
    pub(super) fn start_guard(&mut self) {
        let cgroup = self.make_cgroup();
        match guard::Guard::start(TREE_GRACE, TREE_KILL_WAIT, cgroup.clone()) {
            Ok(g) => self.guard = Some(g),
            Err(e) => self.log_line(&format!("cannot start the guard process: {e}")),
        }
        // Only now: as a subreaper we would have adopted the guard.
        if let Err(e) = tree::set_child_subreaper() {
            if e != daemonkit_core::Errno::ENOSYS {
                self.log_line(&format!("cannot become a child subreaper: {e}"));
            }
        }
        // The guard stays outside; we enter it, so the command and all it starts are inside.
        if let Some(dir) = cgroup {
            if self.guard.is_none() || tree::enter_cgroup(&dir).is_err() {
                let _ = std::fs::remove_dir(&dir);
            } else {
                self.cgroup = Some(dir);
            }
        }
    }

    /// Ends every process below us that is left (the command has exited or is being ended):
    /// SIGTERM, then SIGKILL after [`TREE_GRACE`]. As a subreaper we are the parent of every
    /// orphan among them, so they are reaped here too. The guard is not part of the tree.
    pub(super) fn end_tree(&mut self) {
        let me = std::process::id() as i32;
        let guard = self.guard.as_ref().map(|g| g.pid);
        let ended = tree::end_processes(
            || tree::descendants(me).into_iter().filter(|p| Some(p.pid) != guard).collect(),
            || {
                self.reap_orphans();
                self.drain_logs();
            },
            TREE_GRACE,
            TREE_KILL_WAIT,
        );
        if ended.killed {
            self.log_line(&format!("killed the command's remaining processes after {} ms", TREE_GRACE.as_millis()));
        }
        if ended.left {
            self.log_line("some of the command's processes did not end after SIGKILL");
        }
        if self.guard.as_ref().is_some_and(|g| !g.watch(0)) {
            self.guard_lost();
        }
    }

    /// The guard process is gone (killed): says that the protection it gave is gone too.
    pub(super) fn guard_lost(&mut self) {
        if let Some(g) = self.guard.take() {
            self.log_line(&format!(
                "the guard process (pid {}) has ended: if this supervisor is killed now, the command's processes are no longer ended",
                g.pid
            ));
        }
    }

    /// Leaves our cgroup for its parent and removes it, so that it does not outlive us when no
    /// guard is left to remove it.
    pub(super) fn leave_cgroup(&mut self) {
        let Some(dir) = self.cgroup.take() else { return };
        if let Some(parent) = dir.parent() {
            if tree::enter_cgroup(parent).is_ok() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }

    /// Where it can (root, or a delegated cgroup v2 subtree), makes a cgroup of our own below
    /// ours, for the guard: the processes in it can be found and killed whatever session or
    /// group they moved to, even once we are dead. Not under systemd (`--notify`), which
    /// already ends the service's whole cgroup.
    fn make_cgroup(&self) -> Option<PathBuf> {
        if self.cfg.notify {
            return None;
        }
        let parent = tree::own_cgroup_dir()?;
        let dir = parent.join(format!("daemonkit-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(dir)
    }

    /// Reaps whatever children of ours have exited, without waiting.
    fn reap_orphans(&mut self) {
        while let Some((pid, _)) = self.reap_one() {
            // An old copy retired by a graceful restart, reaped here: its group id is free for
            // reuse from now on, so its stop deadline must not signal that group any more.
            self.retiring.retain(|(p, _)| *p != pid);
        }
    }

    /// Reaps one child of ours that has exited, without waiting: its pid and wait status.
    /// A reaped guard is forgotten here, so that it is never signalled again.
    pub(super) fn reap_one(&mut self) -> Option<(i32, i32)> {
        let mut status = 0;
        // SAFETY: reaps any child of ours without blocking; `status` is a valid out pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return None;
        }
        if Some(pid) == self.guard.as_ref().map(|g| g.pid) {
            self.guard = None;
        }
        Some((pid, status))
    }
}
