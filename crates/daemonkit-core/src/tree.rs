//! Process trees: the child-subreaper attribute, finding a process's descendants or the
//! members of a process group or session through `/proc`, and ending them.
//!
//! Linux only: elsewhere [`processes`] finds nothing and [`set_child_subreaper`] fails with
//! `ENOSYS`, so the functions built on them do nothing.

use std::time::{Duration, Instant};

use nix::errno::Errno;

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Its process id.
    pub pid: i32,
    /// Its parent's process id.
    pub ppid: i32,
    /// Its process group.
    pub pgid: i32,
    /// Its session.
    pub sid: i32,
    /// The state letter (`R`, `S`, `D`, `T`, `Z`, …).
    pub state: u8,
}

impl ProcessInfo {
    /// Whether it has exited and only waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z' || self.state == b'X'
    }
}

/// Makes the calling process a child subreaper (`PR_SET_CHILD_SUBREAPER`): its descendants
/// whose parent dies are re-parented to it instead of to init, so it can find and reap them.
/// The attribute is not inherited by children.
pub fn set_child_subreaper() -> Result<(), Errno> {
    #[cfg(linux_like)]
    {
        // SAFETY: plain integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
        if rc < 0 {
            return Err(Errno::last());
        }
        Ok(())
    }
    #[cfg(not(linux_like))]
    Err(Errno::ENOSYS)
}

/// Parses the contents of `/proc/PID/stat`. The command name may hold spaces and parentheses,
/// so the fields are read after its last `)`.
pub fn parse_stat(text: &str) -> Option<ProcessInfo> {
    let open = text.find('(')?;
    let pid = text[..open].trim().parse().ok()?;
    let close = text.rfind(')')?;
    let mut fields = text[close + 1..].split_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    let sid = fields.next()?.parse().ok()?;
    Some(ProcessInfo { pid, ppid, pgid, sid, state })
}

/// Every process visible in `/proc` at this moment (processes that exit during the scan may
/// be missing). Empty where there is no `/proc`.
pub fn processes() -> Vec<ProcessInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut list = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{name}/stat")) {
            if let Some(info) = parse_stat(&text) {
                list.push(info);
            }
        }
    }
    list
}

/// The descendants of `ancestor` in `list` (children, their children, …), not `ancestor`.
pub fn descendants_in(list: &[ProcessInfo], ancestor: i32) -> Vec<ProcessInfo> {
    let mut found: Vec<ProcessInfo> = Vec::new();
    let mut frontier = vec![ancestor];
    while let Some(parent) = frontier.pop() {
        for p in list.iter().filter(|p| p.ppid == parent && p.pid != ancestor) {
            if !found.iter().any(|f| f.pid == p.pid) {
                found.push(*p);
                frontier.push(p.pid);
            }
        }
    }
    found
}

/// The live descendants of `ancestor` now.
pub fn descendants(ancestor: i32) -> Vec<ProcessInfo> {
    descendants_in(&processes(), ancestor)
}

/// Sends `signal` to the process `found` describes, only if it is still that process: on Linux
/// a pidfd is opened first, then `/proc/PID/stat` must still show the same parent, process
/// group and session, and the signal goes through the pidfd (so a pid recycled after the
/// check is never hit). Returns whether it was sent. Elsewhere (or before Linux 5.3) a plain
/// `kill`.
pub fn signal_if_same(found: &ProcessInfo, signal: libc::c_int) -> bool {
    let pid = found.pid;
    if pid <= 1 {
        return false;
    }
    #[cfg(linux_like)]
    {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            // SAFETY: `fd` was just opened and is owned by nothing else.
            let pidfd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
            let same = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
                .is_some_and(|now| now.ppid == found.ppid && now.pgid == found.pgid && now.sid == found.sid);
            if !same {
                return false;
            }
            // SAFETY: plain arguments on a pidfd we own; a null siginfo is allowed.
            return unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal, std::ptr::null::<libc::siginfo_t>(), 0)
            } == 0;
        }
        if Errno::last() != Errno::ENOSYS {
            return false; // gone (ESRCH), or not ours to open
        }
    }
    // SAFETY: kill has no memory-safety preconditions; pid > 1 never means a group or "all".
    unsafe { libc::kill(pid, signal) == 0 }
}

/// How [`end_processes`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ended {
    /// How many distinct processes were signalled.
    pub signalled: usize,
    /// Whether `SIGKILL` was needed because some outlived `SIGTERM` for the grace period.
    pub killed: bool,
    /// Whether some were still alive (not zombies) when the time ran out.
    pub left: bool,
}

/// Ends the processes `find` returns, until it returns none that is alive: `SIGTERM` (and
/// `SIGCONT`, so a stopped one acts on it) to each, then `SIGKILL` to those still alive after
/// `grace`; at most `kill_wait` more is spent waiting for them to go. `find` is called again
/// every few milliseconds, so processes forked meanwhile are caught too; `between` runs between
/// the checks (e.g. to reap, or to drain pipes the processes write into).
pub fn end_processes(
    mut find: impl FnMut() -> Vec<ProcessInfo>,
    mut between: impl FnMut(),
    grace: Duration,
    kill_wait: Duration,
) -> Ended {
    let mut ended = Ended::default();
    let mut termed: Vec<i32> = Vec::new();
    let mut killed: Vec<i32> = Vec::new();
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        between();
        let alive: Vec<ProcessInfo> = find().into_iter().filter(|p| !p.is_zombie()).collect();
        if alive.is_empty() {
            return ended;
        }
        let elapsed = start.elapsed();
        if elapsed >= grace + kill_wait {
            ended.left = true;
            return ended;
        }
        let kill = elapsed >= grace;
        for p in alive {
            let pid = p.pid;
            if !termed.contains(&pid) && !killed.contains(&pid) {
                ended.signalled += 1;
            }
            if kill {
                if !killed.contains(&pid) && signal_if_same(&p, libc::SIGKILL) {
                    killed.push(pid);
                    ended.killed = true;
                }
            } else if !termed.contains(&pid) && signal_if_same(&p, libc::SIGTERM) {
                signal_if_same(&p, libc::SIGCONT);
                termed.push(pid);
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The calling process's directory in the cgroup v2 hierarchy (`/proc/self/cgroup` line `0::`,
/// under the `cgroup2` mount found in `/proc/self/mountinfo`), if there is one.
pub fn own_cgroup_dir() -> Option<std::path::PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (Some(root), Some(point)) = (fields.get(3), fields.get(4)) else { continue };
        // Our path is given relative to the root of the hierarchy; the mount shows `root` of it.
        let Some(rel) = path.strip_prefix(root.trim_end_matches('/')) else { continue };
        let dir = std::path::Path::new(point).join(rel.trim_start_matches('/'));
        if dir.join("cgroup.procs").exists() {
            return Some(dir);
        }
    }
    None
}

/// The pids in cgroup `dir` now (its `cgroup.procs`); empty if it cannot be read.
pub fn cgroup_members(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Moves the calling process into cgroup `dir`; its later children start there.
pub fn enter_cgroup(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(dir.join("cgroup.procs"), b"0")
}

/// Kills every process in cgroup `dir` and its descendants at once (`cgroup.kill`, Linux 5.14
/// and later).
pub fn kill_cgroup(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(dir.join("cgroup.kill"), b"1")
}
