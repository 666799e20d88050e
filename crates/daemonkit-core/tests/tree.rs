//! Integration tests of `daemonkit_core::tree` on real process trees built by a shell; every
//! process is a descendant of this test process (a child subreaper) and reaped here. Linux only:
//! the tree functions read /proc.
#![cfg(any(target_os = "linux", target_os = "android"))]

mod common;

use std::time::{Duration, Instant};

use common::{become_subreaper, serial};
use daemonkit_core::launch::Command;
use daemonkit_core::tree::{self, ProcessInfo};

fn reap_all() {
    loop {
        let mut status = 0;
        // SAFETY: reaps any exited child of ours without blocking.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

fn me() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Starts `script` with `sh -c` and waits until `count` of our descendants are alive.
// The shell is reaped with the rest of the tree (`reap_all`), not through its `Child`.
#[allow(clippy::zombie_processes)]
fn shell_tree(script: &str, count: usize) -> i32 {
    let child = std::process::Command::new("/bin/sh").arg("-c").arg(script).spawn().expect("sh");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tree::descendants(me()).iter().filter(|p| !p.is_zombie()).count() < count {
        assert!(Instant::now() < deadline, "the tree did not grow to {count}");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.id() as i32
}

#[test]
fn parse_stat_reads_past_a_command_name_with_spaces_and_parentheses() {
    let p = tree::parse_stat("4242 (a) b (c)) S 1 4240 4239 0 -1 4194560 0").unwrap();
    assert_eq!(p, ProcessInfo { pid: 4242, ppid: 1, pgid: 4240, sid: 4239, state: b'S' });
    assert!(tree::parse_stat("garbage").is_none());
    assert!(tree::parse_stat("").is_none());
}

#[test]
fn descendants_in_follows_every_level_and_nothing_else() {
    let p = |pid, ppid| ProcessInfo { pid, ppid, pgid: 0, sid: 0, state: b'S' };
    let list = [p(10, 1), p(11, 10), p(12, 11), p(13, 10), p(20, 1), p(21, 20)];
    let mut found: Vec<i32> = tree::descendants_in(&list, 10).iter().map(|p| p.pid).collect();
    found.sort();
    assert_eq!(found, vec![11, 12, 13]);
    assert!(tree::descendants_in(&list, 12).is_empty());
}

#[test]
fn processes_sees_this_process_with_its_group_and_session() {
    let all = tree::processes();
    let own = all.iter().find(|p| p.pid == me()).expect("ourselves in /proc");
    // SAFETY: getppid, getpgrp and getsid(0) have no preconditions.
    unsafe {
        assert_eq!(own.ppid, libc::getppid());
        assert_eq!(own.pgid, libc::getpgrp());
        assert_eq!(own.sid, libc::getsid(0));
    }
}

#[test]
fn end_processes_ends_a_tree_with_an_orphan_and_a_new_session() {
    let _serial = serial();
    become_subreaper();
    // A background child, a child in a session of its own, and an orphan re-parented to us.
    shell_tree("sleep 101 & setsid sleep 102 & sh -c 'sleep 103 &'; wait", 4);
    let ended = tree::end_processes(
        || tree::descendants(me()),
        reap_all,
        Duration::from_secs(5),
        Duration::from_secs(5),
    );
    assert!(ended.signalled >= 3, "{ended:?}");
    assert!(!ended.killed && !ended.left, "{ended:?}");
    reap_all();
    assert!(tree::descendants(me()).iter().all(ProcessInfo::is_zombie));
}

#[test]
fn end_processes_kills_what_ignores_sigterm_after_the_grace_period() {
    let _serial = serial();
    become_subreaper();
    shell_tree("trap '' TERM; sleep 104 & wait", 2);
    let start = Instant::now();
    let grace = Duration::from_millis(300);
    let ended = tree::end_processes(|| tree::descendants(me()), reap_all, grace, Duration::from_secs(10));
    assert!(ended.killed && !ended.left, "{ended:?}");
    assert!(start.elapsed() >= grace);
    reap_all();
    assert!(tree::descendants(me()).iter().all(ProcessInfo::is_zombie));
}

#[test]
fn process_group_makes_the_spawned_program_lead_its_own_group() {
    let _serial = serial();
    let mut cmd = Command::new("/bin/sleep");
    cmd.arg("30").process_group(true);
    let pid = cmd.spawn().expect("spawn").pid;
    let info = tree::processes().into_iter().find(|p| p.pid == pid).expect("in /proc");
    assert_eq!(info.pgid, pid);
    // SAFETY: getsid(0) has no preconditions.
    assert_eq!(info.sid, unsafe { libc::getsid(0) }, "a group, not a session");
    // SAFETY: `pid` is our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

#[test]
fn own_cgroup_dir_names_a_directory_with_cgroup_procs_listing_us() {
    let Some(dir) = tree::own_cgroup_dir() else {
        eprintln!("skipped: no cgroup v2 hierarchy mounted here");
        return;
    };
    assert!(tree::cgroup_members(&dir).contains(&me()), "{}", dir.display());
}

#[test]
fn signal_if_same_signals_only_the_process_as_it_was_found() {
    let _s = serial();
    let mut child = std::process::Command::new("sleep").arg("60").spawn().expect("sleep");
    let pid = child.id() as i32;
    let found = tree::processes().into_iter().find(|p| p.pid == pid).expect("sleep in /proc");
    // The same pid, seen with another group (as a recycled pid would be): nothing is sent.
    let stale = ProcessInfo { pgid: found.pgid + 1, ..found };
    assert!(!tree::signal_if_same(&stale, libc::SIGKILL));
    let stale = ProcessInfo { ppid: found.ppid + 1, ..found };
    assert!(!tree::signal_if_same(&stale, libc::SIGKILL));
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "the process was signalled");
    assert!(tree::signal_if_same(&found, libc::SIGKILL));
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}
