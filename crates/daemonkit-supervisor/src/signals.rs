//! The self-pipe: the signal handlers write each signal's number into a pipe, which the main
//! loop polls and reads.

use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use daemonkit_core::{stdio, Errno};
use nix::sys::signal::{sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use crate::fd;

/// The signals passed on to the command (SIGHUP only when it does not reopen log files).
pub const FORWARDED: [libc::c_int; 6] = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

/// The write end of the self-pipe the signal handler writes signal numbers to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signo: libc::c_int) {
    // Async-signal-safe: one write(2) of one byte; errno is saved and restored.
    let saved = Errno::last_raw();
    let byte = signo as u8;
    // SAFETY: write takes a valid 1-byte buffer; a bad descriptor only yields EBADF.
    unsafe { libc::write(SIGNAL_PIPE.load(Ordering::Relaxed), &byte as *const u8 as *const libc::c_void, 1) };
    Errno::set_raw(saved);
}

/// The read end of the self-pipe.
pub struct SignalPipe {
    read: RawFd,
}

impl SignalPipe {
    /// Makes the pipe, installs the handlers for [`FORWARDED`] and `SIGCHLD`, and unblocks
    /// every signal: a process that exec'd us (`daemonkit run`) may have had some blocked, and
    /// we must see the ones we forward. (The command's own mask is reset at its launch.)
    pub fn install() -> Result<SignalPipe, Errno> {
        let (pipe, write_end) = SignalPipe::make()?;
        SIGNAL_PIPE.store(write_end, Ordering::Relaxed);
        let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
        for sig in FORWARDED.iter().copied().chain([libc::SIGCHLD]) {
            let sig = Signal::try_from(sig)?;
            // SAFETY: `on_signal` only does async-signal-safe work.
            unsafe { sigaction(sig, &action) }?;
        }
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
        Ok(pipe)
    }

    /// A non-blocking pipe: its read end, and the write end for the handler.
    pub(crate) fn make() -> Result<(SignalPipe, RawFd), Errno> {
        let (r, w) = stdio::pipe_cloexec()?;
        let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
        fd::set_nonblocking(r)?;
        fd::set_nonblocking(w)?;
        Ok((SignalPipe { read: r }, w))
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.read
    }

    /// The signals that arrived since the last call, in order (at most 64).
    pub fn pending(&self) -> Vec<libc::c_int> {
        let mut signals = [0u8; 64];
        let n = fd::read_now(self.read, &mut signals);
        signals[..n].iter().map(|&s| s as libc::c_int).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_reads_what_was_written_in_order() {
        let (pipe, w) = SignalPipe::make().unwrap();
        assert!(pipe.pending().is_empty(), "an empty pipe does not block");
        fd::write_all(w, &[libc::SIGTERM as u8, libc::SIGCHLD as u8, libc::SIGHUP as u8]);
        assert_eq!(pipe.pending(), vec![libc::SIGTERM, libc::SIGCHLD, libc::SIGHUP]);
        assert!(pipe.pending().is_empty());
    }

    #[test]
    fn the_handler_writes_the_signal_and_keeps_errno() {
        // The only test that installs handlers for FORWARDED signals: they are the process's.
        let pipe = SignalPipe::install().unwrap();
        Errno::set_raw(libc::ENOENT);
        // SAFETY: raise has no preconditions; SIGUSR1 has our handler now.
        unsafe { libc::raise(libc::SIGUSR1) };
        assert_eq!(Errno::last_raw(), libc::ENOENT, "errno is restored by the handler");
        // (A SIGCHLD from another test's child may come along.)
        assert!(pipe.pending().contains(&libc::SIGUSR1));
    }
}
