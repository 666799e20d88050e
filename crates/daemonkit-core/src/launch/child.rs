//! The child side of a launch: everything that runs between fork (or `clone`) and `execve`.
//!
//! # Safety
//!
//! Every function here that is `unsafe` has this one contract, and the `extern "C"` entry
//! points may only be handed to `clone` under it:
//!
//! - It runs only in a child process created by the launcher's side (`parent`), before that
//!   child calls `execve` or `_exit`: on Linux a `clone(CLONE_VM | CLONE_VFORK)` child on a
//!   stack mapped for it, elsewhere a `fork` child.
//! - Only async-signal-safe calls: system calls and the libc functions POSIX lists as
//!   async-signal-safe (on Linux some as raw system calls, see below). No allocation, no locks,
//!   no `format!`, nothing that can panic or unwind; the process leaves through `execve` or
//!   `libc::_exit` only, never by returning into the launcher's code.
//! - Shared memory under `CLONE_VM`: the child runs on the launcher's address space while the
//!   launcher's thread is suspended in `clone`. The [`Plan`] and everything it points to (the C
//!   strings, the argv and envp arrays, the descriptor and group lists) belong to the launcher
//!   and are only read, except what the child owns by design: `Plan::scratch`,
//!   `Plan::daemon_failed` and the digits of the `LISTEN_PID=` entry. The launcher's other
//!   threads keep running on the same memory, so nothing global of the process is changed
//!   either: no C-library state (its allocator, its locks, the "setxid" broadcast to every
//!   thread: credentials are changed with raw system calls on Linux) and no signal handler of
//!   the launcher's may run (the launcher blocks every signal before `clone`; the daemon resets
//!   every disposition, then unblocks them just before `execve`).
//! - After `fork` (not Linux) the same rules hold: the child of a multi-threaded process may
//!   only make async-signal-safe calls, and writes land in its own copy.
//!
//! A failure is written to the report pipe as one fixed-size [`Report`] (stage, errno) and the
//! child exits 127.

use std::os::fd::RawFd;
use std::ptr;

use libc::{c_char, c_int, c_void};
use nix::errno::Errno;

use super::Stage;

/// Everything the children read, prepared by the launcher before the first stage. The children
/// only read it, except `scratch`, `daemon_failed` and the digits at `listen_pid_digits`.
pub(super) struct Plan {
    pub(super) program: *const c_char,
    pub(super) argv: *const *const c_char,
    pub(super) envp: *const *const c_char,
    /// `sources[n]` is the launcher descriptor to appear at `n` in the daemon.
    pub(super) sources: *const RawFd,
    pub(super) source_count: usize,
    /// Room for one temporary descriptor per source.
    pub(super) scratch: *mut RawFd,
    pub(super) cwd: *const c_char,
    pub(super) set_umask: bool,
    pub(super) umask: libc::mode_t,
    pub(super) root: *const c_char,
    pub(super) set_ids: bool,
    pub(super) uid: libc::uid_t,
    pub(super) gid: libc::gid_t,
    pub(super) groups: *const libc::gid_t,
    pub(super) group_count: usize,
    // Read only where there is a parent-death signal (Linux).
    #[cfg_attr(not(linux_like), allow(dead_code))]
    pub(super) parent_death_signal: c_int,
    #[cfg_attr(not(linux_like), allow(dead_code))]
    pub(super) parent_pid: libc::pid_t,
    pub(super) new_session: bool,
    pub(super) process_group: bool,
    pub(super) report_fd: RawFd,
    /// Where the daemon writes its pid's digits (in the `LISTEN_PID=` entry of `envp`), or null.
    pub(super) listen_pid_digits: *mut u8,
    /// Set by the daemon process when a step failed, so that the intermediate process (which
    /// shares memory with it on Linux) reaps it instead of leaving a zombie to init.
    pub(super) daemon_failed: bool,
    #[cfg(linux_like)]
    pub(super) grandchild_stack_top: *mut c_void,
}

/// One report from a child: `kind` 1 = the daemon's pid in `a`; 2 = failure of stage `a` with
/// errno `b`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Report {
    pub(super) kind: i32,
    pub(super) a: i32,
    pub(super) b: i32,
}

pub(super) const REPORT_PID: i32 = 1;
pub(super) const REPORT_FAILURE: i32 = 2;

/// Writes a report; nothing can be done if the pipe is gone, so the result is ignored.
///
/// # Safety
///
/// The [module's contract](self).
unsafe fn report(fd: RawFd, kind: i32, a: i32, b: i32) {
    let r = Report { kind, a, b };
    libc::write(fd, &r as *const Report as *const c_void, std::mem::size_of::<Report>());
}

/// A failure in the daemon process: flags it for the intermediate process, then reports.
///
/// # Safety
///
/// The [module's contract](self); `plan` must be the launch's live plan.
unsafe fn fail_daemon(plan: *mut Plan, fd: RawFd, stage: Stage) -> ! {
    let errno = Errno::last_raw();
    ptr::write_volatile(ptr::addr_of_mut!((*plan).daemon_failed), true);
    Errno::set_raw(errno);
    fail(fd, stage)
}

/// Reports the failure of `stage` with the current errno and exits 127.
///
/// # Safety
///
/// The [module's contract](self).
unsafe fn fail(fd: RawFd, stage: Stage) -> ! {
    let errno = Errno::last_raw();
    report(fd, REPORT_FAILURE, stage as i32, errno);
    libc::_exit(127)
}

/// `clone` entry point of the intermediate process; `arg` is the launch's [`Plan`].
#[cfg(linux_like)]
pub(super) extern "C" fn middle_entry(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Plan` of the suspended launcher thread, alive until we exit.
    unsafe { middle_main(&mut *(arg as *mut Plan)) }
}

/// `clone` entry point of the program's process (the daemon, or the child of
/// [`super::Command::spawn`]); `arg` is the launch's [`Plan`].
#[cfg(linux_like)]
pub(super) extern "C" fn grandchild_entry(arg: *mut c_void) -> c_int {
    // SAFETY: as for `middle_entry`; the process that cloned us (the middle process, or the
    // caller of `spawn()`) is suspended until we exec or exit.
    unsafe { exec_daemon(&mut *(arg as *mut Plan)) }
}

/// The intermediate process: new session, then the daemon, then exit so the daemon is orphaned.
///
/// # Safety
///
/// The [module's contract](self).
pub(super) unsafe fn middle_main(plan: &mut Plan) -> ! {
    if libc::setsid() < 0 {
        fail(plan.report_fd, Stage::Setsid);
    }
    #[cfg(linux_like)]
    let pid = libc::clone(
        grandchild_entry,
        plan.grandchild_stack_top,
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        plan as *mut Plan as *mut c_void,
    );
    #[cfg(not(linux_like))]
    let pid = {
        let pid = libc::fork();
        if pid == 0 {
            exec_daemon(plan);
        }
        pid
    };
    if pid < 0 {
        fail(plan.report_fd, Stage::SecondFork);
    }
    // With CLONE_VM the daemon's failure flag is visible here; it has already _exit'ed or is
    // about to, so this wait is short. (After fork the flag is never set in our copy.)
    if ptr::read_volatile(&plan.daemon_failed) {
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    report(plan.report_fd, REPORT_PID, pid, 0);
    libc::_exit(0)
}

/// The daemon process before `execve`.
///
/// # Safety
///
/// The [module's contract](self).
pub(super) unsafe fn exec_daemon(plan: &mut Plan) -> ! {
    let mut report_fd = plan.report_fd;

    // Every disposition back to default. Signals stay blocked (the launcher's full mask) until
    // just before execve, so none can be delivered half-way.
    for sig in 1..max_signal() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            set_default_disposition(sig);
        }
    }

    // Move every source above the target range first, so that no dup2 overwrites a source
    // that another target still needs; then place them.
    let count = plan.source_count as c_int;
    for i in 0..plan.source_count {
        let tmp = libc::fcntl(*plan.sources.add(i), libc::F_DUPFD_CLOEXEC, count);
        if tmp < 0 {
            fail_daemon(plan, report_fd, Stage::Descriptors);
        }
        *plan.scratch.add(i) = tmp;
    }
    let moved_report = libc::fcntl(report_fd, libc::F_DUPFD_CLOEXEC, count);
    if moved_report < 0 {
        fail_daemon(plan, report_fd, Stage::Descriptors);
    }
    report_fd = moved_report;
    for i in 0..plan.source_count {
        if libc::dup2(*plan.scratch.add(i), i as c_int) < 0 {
            fail_daemon(plan, report_fd, Stage::Descriptors);
        }
    }
    if close_all_from(count, report_fd) < 0 {
        fail_daemon(plan, report_fd, Stage::CloseDescriptors);
    }

    if plan.new_session && libc::setsid() < 0 {
        fail_daemon(plan, report_fd, Stage::NewSession);
    }
    if !plan.new_session && plan.process_group && libc::setpgid(0, 0) < 0 {
        fail_daemon(plan, report_fd, Stage::ProcessGroup);
    }
    if !plan.root.is_null() && (libc::chroot(plan.root) < 0 || libc::chdir(c"/".as_ptr()) < 0) {
        fail_daemon(plan, report_fd, Stage::Chroot);
    }
    if plan.set_ids {
        // Order matters: supplementary groups and the gid can only be changed while still root.
        if drop_privileges(plan.groups, plan.group_count, plan.gid, plan.uid) < 0 {
            fail_daemon(plan, report_fd, Stage::Privileges);
        }
        if plan.uid != 0 && regain_root() == 0 {
            Errno::set_raw(libc::EPERM);
            fail_daemon(plan, report_fd, Stage::Privileges);
        }
    }
    // After the credential change, which clears the parent-death signal (prctl(2)).
    #[cfg(linux_like)]
    if plan.parent_death_signal != 0 {
        if libc::prctl(libc::PR_SET_PDEATHSIG, plan.parent_death_signal as libc::c_ulong, 0, 0, 0) < 0 {
            fail_daemon(plan, report_fd, Stage::ParentDeathSignal);
        }
        // The parent may have died before the prctl: then nobody would ever send the signal.
        if libc::getppid() != plan.parent_pid {
            libc::_exit(127);
        }
    }
    if plan.set_umask {
        libc::umask(plan.umask);
    }
    if !plan.cwd.is_null() && libc::chdir(plan.cwd) < 0 {
        fail_daemon(plan, report_fd, Stage::Chdir);
    }

    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());

    if !plan.listen_pid_digits.is_null() {
        write_decimal(plan.listen_pid_digits, libc::getpid() as u64);
    }
    libc::execve(plan.program, plan.argv, plan.envp);
    fail_daemon(plan, report_fd, Stage::Exec)
}

/// Writes `n` in decimal and a NUL at `out`, which has room for 21 bytes.
///
/// # Safety
///
/// The [module's contract](self); `out` must be valid for writes of 21 bytes.
unsafe fn write_decimal(out: *mut u8, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        *out.add(i) = digits[len - 1 - i];
    }
    *out.add(len) = 0;
}

/// `setgroups`, then `setgid`, then `setuid`, all three ids (real, effective, saved). Returns -1
/// on failure.
///
/// On Linux these are raw system calls: the C library's wrappers broadcast the change to every
/// thread of the process (the "setxid" protocol), and a `CLONE_VM` child shares the launcher's
/// thread list, so the wrappers would signal the launcher's threads. The kernel applies the
/// credentials to the calling thread only, which is all the child has.
///
/// # Safety
///
/// The [module's contract](self); `groups` must point to `count` readable gids.
#[cfg(linux_like)]
unsafe fn drop_privileges(groups: *const libc::gid_t, count: usize, gid: libc::gid_t, uid: libc::uid_t) -> libc::c_long {
    if libc::syscall(libc::SYS_setgroups, count, groups) < 0
        || libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0
        || libc::syscall(libc::SYS_setresuid, uid, uid, uid) < 0
    {
        return -1;
    }
    0
}

/// See the Linux version; after `fork` the child is single-threaded, so the wrappers are fine.
///
/// # Safety
///
/// The [module's contract](self); `groups` must point to `count` readable gids.
#[cfg(not(linux_like))]
unsafe fn drop_privileges(groups: *const libc::gid_t, count: usize, gid: libc::gid_t, uid: libc::uid_t) -> libc::c_long {
    if libc::setgroups(count as _, groups) < 0 || libc::setgid(gid) < 0 || libc::setuid(uid) < 0 {
        return -1;
    }
    0
}

/// Tries to become root again; 0 means it worked (which must not happen after a drop).
///
/// # Safety
///
/// The [module's contract](self).
unsafe fn regain_root() -> libc::c_long {
    #[cfg(linux_like)]
    return libc::syscall(libc::SYS_setresuid, 0, 0, 0);
    #[cfg(not(linux_like))]
    return libc::setuid(0) as libc::c_long;
}

/// Sets `sig` to `SIG_DFL` in the calling process.
///
/// On Linux this is the raw `rt_sigaction` system call: glibc's `sigaction` refuses with
/// `EINVAL` the signals it reserves (32 and 33), yet a launcher started by glibc's
/// `posix_spawn` (cargo, Rust's `std::process::Command`, …) has 32 set to `SIG_IGN`, and an
/// ignored disposition survives `execve`. The kernel's `struct sigaction` for `SIG_DFL` (0), no
/// flags and an empty mask is all zeros on every architecture; the buffer is larger than any.
///
/// # Safety
///
/// The [module's contract](self).
#[cfg(linux_like)]
unsafe fn set_default_disposition(sig: c_int) {
    const KERNEL_SIGSET_SIZE: usize =
        if cfg!(any(target_arch = "mips", target_arch = "mips32r6", target_arch = "mips64", target_arch = "mips64r6")) {
            16
        } else {
            8
        };
    let zeroed_kernel_sigaction = [0u64; 8];
    libc::syscall(
        libc::SYS_rt_sigaction,
        sig as libc::c_long,
        zeroed_kernel_sigaction.as_ptr(),
        ptr::null_mut::<c_void>(),
        KERNEL_SIGSET_SIZE,
    );
}

/// Sets `sig` to `SIG_DFL` (`EINVAL` for numbers the C library reserves is ignored).
///
/// # Safety
///
/// The [module's contract](self).
#[cfg(not(linux_like))]
unsafe fn set_default_disposition(sig: c_int) {
    let mut default_action: libc::sigaction = std::mem::zeroed();
    default_action.sa_sigaction = libc::SIG_DFL;
    libc::sigaction(sig, &default_action, ptr::null_mut());
}

#[cfg(linux_like)]
fn max_signal() -> c_int {
    65
}

#[cfg(not(linux_like))]
fn max_signal() -> c_int {
    32
}

/// Closes every descriptor `>= lowest` except `keep` (which must be `>= lowest`). Returns -1 on
/// failure. Uses `close_range` where the kernel has it, else closes one by one up to the limit.
///
/// # Safety
///
/// The [module's contract](self).
unsafe fn close_all_from(lowest: c_int, keep: c_int) -> c_int {
    #[cfg(linux_like)]
    {
        let below = if keep > lowest {
            libc::syscall(libc::SYS_close_range, lowest as libc::c_uint, (keep - 1) as libc::c_uint, 0)
        } else {
            0
        };
        if below == 0 {
            let above = libc::syscall(libc::SYS_close_range, (keep + 1) as libc::c_uint, libc::c_uint::MAX, 0);
            if above == 0 {
                return 0;
            }
        }
        if Errno::last_raw() != libc::ENOSYS {
            return -1;
        }
    }
    let mut limit: libc::rlimit = std::mem::zeroed();
    let mut highest: c_int = 65536;
    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur != libc::RLIM_INFINITY {
        highest = limit.rlim_cur.min(1 << 20) as c_int;
    }
    let mut fd = lowest;
    while fd < highest {
        if fd != keep {
            libc::close(fd);
        }
        fd += 1;
    }
    0
}

