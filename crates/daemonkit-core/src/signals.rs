//! Signalling a process through a handle that cannot be recycled (a pidfd on Linux).

#[cfg(linux_like)]
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;

/// A handle on one process that stays bound to it even after its pid is reused.
///
/// On Linux it is a pidfd (`pidfd_open`): signals sent through it reach that process or fail
/// with `ESRCH`, never a newcomer with the same pid. Elsewhere, and on Linux kernels without
/// pidfds (before 5.3, or where a seccomp filter refuses `pidfd_open`), it holds only the pid:
/// see [`ProcessHandle::is_race_free`]; callers must then re-check their evidence (the pidfile
/// lock) just before signalling.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: i32,
    #[cfg(linux_like)]
    fd: Option<OwnedFd>,
}

impl ProcessHandle {
    /// Opens a handle on `pid`. Fails with `ESRCH` if there is no such process, and refuses
    /// pids below 2 with `EINVAL`.
    pub fn open(pid: i32) -> Result<ProcessHandle, Errno> {
        if pid < 2 {
            return Err(Errno::EINVAL);
        }
        #[cfg(linux_like)]
        {
            // SAFETY: pidfd_open takes plain integers and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            match Errno::result(fd) {
                // SAFETY: `fd` is a new descriptor owned by nothing else; pidfds are close-on-exec.
                Ok(fd) => Ok(ProcessHandle { pid, fd: Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }) }),
                Err(Errno::ENOSYS) | Err(Errno::EPERM) => {
                    // SAFETY: signal 0 only checks existence and permission.
                    Errno::result(unsafe { libc::kill(pid, 0) })?;
                    Ok(ProcessHandle { pid, fd: None })
                }
                Err(e) => Err(e),
            }
        }
        #[cfg(not(linux_like))]
        {
            // SAFETY: signal 0 only checks existence and permission.
            Errno::result(unsafe { libc::kill(pid, 0) })?;
            Ok(ProcessHandle { pid })
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether signals through this handle can never reach a later process with the same pid
    /// (a pidfd). When false, the caller must re-check that the pid is still the one it means
    /// right before each [`ProcessHandle::signal`].
    pub fn is_race_free(&self) -> bool {
        #[cfg(linux_like)]
        return self.fd.is_some();
        #[cfg(not(linux_like))]
        return false;
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) -> Result<(), Errno> {
        #[cfg(linux_like)]
        if let Some(fd) = &self.fd {
            // SAFETY: plain integer arguments and a null siginfo, as pidfd_send_signal allows.
            let rc = unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), signal, std::ptr::null::<u8>(), 0)
            };
            return Errno::result(rc).map(drop);
        }
        // SAFETY: plain integer arguments.
        Errno::result(unsafe { libc::kill(self.pid, signal) }).map(drop)
    }

    /// Waits up to `timeout` for the process to exit; returns whether it has. An exited process
    /// that nobody has reaped yet (a zombie) counts as exited.
    pub fn wait_exit(&self, timeout: Duration) -> Result<bool, Errno> {
        #[cfg(linux_like)]
        if let Some(fd) = &self.fd {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                // SAFETY: one valid pollfd.
                let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
                if rc > 0 {
                    return Ok(true);
                }
                if rc == 0 {
                    return Ok(false);
                }
                if Errno::last() != Errno::EINTR {
                    return Err(Errno::last());
                }
            }
        }
        // Without a pidfd nothing wakes us on exit: look every 2 ms.
        {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                if !is_alive(self.pid) {
                    return Ok(true);
                }
                if std::time::Instant::now() >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// The handle's pidfd, for callers that poll it themselves (Linux, when pidfds exist).
    #[cfg(linux_like)]
    pub fn as_raw_fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(AsRawFd::as_raw_fd)
    }
}

/// Whether `pid` names a process that has not exited. A zombie counts as exited: on Linux its
/// `/proc/PID/stat` state is read.
pub fn is_alive(pid: i32) -> bool {
    if pid < 1 {
        return false;
    }
    #[cfg(linux_like)]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain spaces.
        return match stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next()) {
            Some('Z') | Some('X') => false,
            Some(_) => true,
            None => false,
        };
    }
    // SAFETY: signal 0 only checks existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || Errno::last() == Errno::EPERM
}
