//! The guard: a small child of the supervisor that ends the command's process group (and its
//! session, when the command leads one), and every process of the supervisor's cgroup when it
//! could make one, if the supervisor dies without doing it itself, e.g. by `SIGKILL`. It also
//! removes that cgroup once it is empty.
//!
//! `PR_SET_PDEATHSIG` alone is not enough: it reaches only the command, not the processes the
//! command started, and the kernel clears it when the command executes a set-user-ID,
//! set-group-ID or file-capability program. The guard learns of the supervisor's death from
//! end-of-file on a pipe whose only write end the supervisor holds, so no signal, mask or
//! privilege change of the command's can hide it.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use daemonkit_core::{stdio, tree};

/// The supervisor's side of the guard.
pub struct Guard {
    /// The guard's pid. It is not the supervisor's child (it is forked twice, so that the
    /// supervisor's only child is the command), except when the supervisor is PID 1 of a PID
    /// namespace and adopts it; it is always left out of the supervisor's tree.
    pub pid: i32,
    /// The write end of the pipe the guard reads.
    pipe: RawFd,
}

impl Guard {
    /// Forks the guard, which ends what is left in `cgroup` (if given) too. Must be called
    /// while the supervisor has a single thread, before it becomes a child subreaper (which
    /// would adopt the guard) and before it enters `cgroup`.
    pub fn start(grace: Duration, kill_wait: Duration, cgroup: Option<PathBuf>) -> std::io::Result<Guard> {
        use std::os::fd::IntoRawFd;
        let (r, w) = stdio::pipe_cloexec().map_err(std::io::Error::from)?;
        let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
        let (pid_r, pid_w) = match stdio::pipe_cloexec() {
            Ok((a, b)) => (a.into_raw_fd(), b.into_raw_fd()),
            Err(e) => {
                let _ = stdio::close(r);
                let _ = stdio::close(w);
                return Err(e.into());
            }
        };
        // The children inherit our handlers, which write to our signal pipe: no signal may be
        // delivered to them until the guard has replaced the handlers (the middle process
        // never unblocks).
        // SAFETY: sigset_t is plain data, filled in by sigfillset / pthread_sigmask.
        let old_mask = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            old
        };
        // SAFETY: the supervisor is single-threaded, so the child is a complete copy in which
        // ordinary Rust code (allocation included) is safe to run.
        let middle = unsafe { libc::fork() };
        let fork_error = std::io::Error::last_os_error();
        if middle != 0 {
            // SAFETY: restores the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
        }
        if middle == 0 {
            // SAFETY: as above; the middle process only forks, reports and exits.
            let guard = unsafe { libc::fork() };
            if guard == 0 {
                let _ = stdio::close(pid_r);
                let _ = stdio::close(pid_w);
                run(r, grace, kill_wait, cgroup)
            }
            let bytes = guard.to_ne_bytes();
            // SAFETY: writes from a live 4-byte buffer, then leaves without the supervisor's
            // exit-time work.
            unsafe {
                libc::write(pid_w, bytes.as_ptr() as *const libc::c_void, bytes.len());
                libc::_exit(0)
            }
        }
        let _ = stdio::close(r);
        let _ = stdio::close(pid_w);
        let mut bytes = [0u8; 4];
        let got = if middle > 0 {
            // SAFETY: reads into a live 4-byte buffer; then reaps our own child.
            unsafe {
                let n = libc::read(pid_r, bytes.as_mut_ptr() as *mut libc::c_void, bytes.len());
                let mut status = 0;
                while libc::waitpid(middle, &mut status, 0) < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {}
                n
            }
        } else {
            -1
        };
        let _ = stdio::close(pid_r);
        let pid = i32::from_ne_bytes(bytes);
        if middle < 0 || got != 4 || pid <= 0 {
            let _ = stdio::close(w);
            return Err(if middle < 0 { fork_error } else { std::io::Error::other("the guard could not be forked") });
        }
        Ok(Guard { pid, pipe: w })
    }

    /// Tells the guard which process group to end should the supervisor die: the command's
    /// (its pid), or 0 for none.
    ///
    /// Returns false when the guard is gone (`EPIPE`: nobody reads the pipe any more).
    pub fn watch(&self, pgid: i32) -> bool {
        let bytes = pgid.to_ne_bytes();
        // A 4-byte write to a pipe is atomic. SIGPIPE is ignored in the supervisor (the Rust
        // runtime's default), so a gone reader shows as EPIPE.
        // SAFETY: writes from a live 4-byte buffer.
        let n = unsafe { libc::write(self.pipe, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
        !(n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPIPE))
    }

    /// The write end of the guard's pipe: poll reports `POLLERR` on it once the guard is gone.
    pub fn pipe(&self) -> RawFd {
        self.pipe
    }
}

fn ignore(signal: libc::c_int) {
    // SAFETY: SIG_IGN needs no handler code.
    unsafe { libc::signal(signal, libc::SIG_IGN) };
}

/// The guard process: waits for the supervisor's end, then ends the last group it was told of.
fn run(pipe: RawFd, grace: Duration, kill_wait: Duration, cgroup: Option<PathBuf>) -> ! {
    // Signals meant for the supervisor (a terminal's Ctrl-C or Ctrl-Z to its group, a
    // `kill -- -PGID`) must not end or stop the guard; SIGKILL still can.
    for sig in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ] {
        ignore(sig);
    }
    // SAFETY: resets our inherited handler for SIGCHLD (the guard has no children to watch)
    // and unblocks everything (blocked by `Guard::start` across the fork); plain data
    // arguments.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        libc::prctl(libc::PR_SET_NAME, c"daemonkit-guard".as_ptr() as libc::c_ulong, 0, 0, 0);
    }
    // Hold nothing of the supervisor's: not the pidfile lock (its holder must be the daemon),
    // not the launcher's report pipe, not a log or a terminal.
    let pipe = keep_only(pipe);

    let mut group = 0i32;
    loop {
        let mut buf = [0u8; 4];
        // SAFETY: reads into a live 4-byte buffer.
        let n = unsafe { libc::read(pipe, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n == 4 {
            group = i32::from_ne_bytes(buf);
            continue;
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break; // end-of-file: the supervisor is gone
    }
    let members = || cgroup.as_deref().map(tree::cgroup_members).unwrap_or_default();
    if group > 1 || cgroup.is_some() {
        tree::end_processes(
            || {
                let members = members();
                let ours = |p: &tree::ProcessInfo| (group > 1 && (p.pgid == group || p.sid == group)) || members.contains(&p.pid);
                tree::processes().into_iter().filter(ours).collect()
            },
            || {},
            grace,
            kill_wait,
        );
    }
    if let Some(dir) = &cgroup {
        if !members().is_empty() {
            let _ = tree::kill_cgroup(dir);
        }
        // Empty once its last process has exited (the supervisor itself, on a normal exit).
        let deadline = Instant::now() + kill_wait;
        while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // SAFETY: _exit skips the supervisor's exit-time work, which is not ours to do.
    unsafe { libc::_exit(0) }
}

/// Points 0, 1 and 2 at `/dev/null`, moves `pipe` to 3 and closes every other descriptor.
fn keep_only(pipe: RawFd) -> RawFd {
    use std::os::fd::IntoRawFd;
    if let Ok(null) = stdio::open_dev_null() {
        let null = null.into_raw_fd();
        for fd in 0..3 {
            if fd != null {
                let _ = stdio::dup_onto(null, fd);
            }
        }
        if null > 2 {
            let _ = stdio::close(null);
        }
    }
    let target = 3;
    if pipe != target {
        let _ = stdio::dup_onto(pipe, target);
        let _ = stdio::close(pipe);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: close_range takes plain integers and closes only this process's descriptors.
    if unsafe { libc::syscall(libc::SYS_close_range, (target + 1) as libc::c_uint, libc::c_uint::MAX, 0) } == 0 {
        return target;
    }
    // SAFETY: sysconf has no preconditions.
    let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let max = if max <= 0 { 1024 } else { max.min(65536) as RawFd };
    for fd in target + 1..max {
        // SAFETY: closing descriptors this process may hold; EBADF for the others is harmless.
        unsafe { libc::close(fd) };
    }
    target
}
