//! Integration tests of `daemonkit_core::holder` (who holds a pidfile's lock) and of the pidfile
//! paths that must never write, truncate or remove a file that is not provably a pidfile:
//! real files, real `flock(1)` processes, real hard links.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{serial, Holders, TempDir};
use daemonkit_core::holder::{self, Holder};
use daemonkit_core::pidfile::{self, probe, AcquireError, PathProblem, Pidfile, Probe, StaleRemoval};
use nix::errno::Errno;

fn open(path: &Path) -> fs::File {
    fs::File::open(path).expect("open")
}

#[test]
fn the_locker_and_a_process_that_inherited_the_lock_are_proven_holders() {
    let _s = serial();
    let dir = TempDir::new("holder-proven");
    let path = dir.join("app.pid");
    fs::write(&path, b"").unwrap();
    let h = Holders::hold(&path, "-x");
    let f = open(&path);
    assert_eq!(holder::check(h.shell, f.as_raw_fd()), Holder::Proven);
    // The fdinfo line names the shell as the locker; the inheritor holds it all the same.
    assert_eq!(holder::check(h.inheritor, f.as_raw_fd()), Holder::Proven);
}

#[test]
fn an_unrelated_process_a_missing_one_and_a_shared_lock_are_not_holders() {
    let _s = serial();
    let dir = TempDir::new("holder-not");
    let path = dir.join("app.pid");
    fs::write(&path, b"").unwrap();
    let h = Holders::hold(&path, "-x");
    let f = open(&path);
    let me = std::process::id() as i32;
    assert_eq!(holder::check(me, f.as_raw_fd()), Holder::NotHolder, "this process has the file open, unlocked");
    assert_eq!(holder::check(i32::MAX, f.as_raw_fd()), Holder::NotHolder);
    assert_eq!(holder::check(0, f.as_raw_fd()), Holder::NotHolder);
    // The holder of another file's lock does not hold this one.
    let other = dir.join("other.pid");
    fs::write(&other, b"").unwrap();
    assert_eq!(holder::check(h.shell, open(&other).as_raw_fd()), Holder::NotHolder);
    drop(h);

    let shared = Holders::hold(&path, "-s");
    assert_eq!(holder::check(shared.shell, f.as_raw_fd()), Holder::NotHolder, "a shared lock is never a daemon's");
}

#[test]
fn probe_and_acquire_tell_a_lock_held_by_someone_else_than_the_named_process() {
    let _s = serial();
    let dir = TempDir::new("holder-probe");
    let path = dir.join("app.pid");
    fs::write(&path, b"").unwrap();
    let h = Holders::hold(&path, "-x");
    // The named process exists (this test) but does not hold the lock.
    let me = std::process::id() as i32;
    fs::write(&path, format!("{me}\n")).unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::LockedByOther { named: Some(me) });
    let err = Pidfile::acquire(&path).unwrap_err();
    assert_eq!(err, AcquireError::LockedByOther { named: Some(me) });
    assert!(err.to_string().contains(&format!("not by pid {me} that it names")));
    // Naming the holder itself, or its inheritor, is running.
    fs::write(&path, format!("{}\n", h.inheritor)).unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::Running { pid: h.inheritor });
    assert_eq!(Pidfile::acquire(&path).unwrap_err(), AcquireError::AlreadyRunning { pid: Some(h.inheritor) });
    // Nothing named yet: a daemon starting up.
    fs::write(&path, b"").unwrap();
    assert!(matches!(probe(&path).unwrap(), Probe::RunningUnknownPid { .. }));
    drop(h);

    // Shared locks only: never a daemon, whatever the file says. acquire replaces the file;
    // the readers keep their shared locks on the old inode.
    fs::write(&path, b"4242\n").unwrap();
    let shared = Holders::hold(&path, "-s");
    assert_eq!(probe(&path).unwrap(), Probe::LockedByOther { named: None });
    let old = fs::metadata(&path).unwrap().ino();
    let pf = Pidfile::acquire(&path).unwrap();
    assert!(pf.replaced_shared_lock());
    assert_ne!(fs::metadata(&path).unwrap().ino(), old, "a fresh file");
    pf.write_pid(me).unwrap();
    assert_eq!(probe(&path).unwrap(), Probe::Running { pid: me });
    assert!(pf.remove().unwrap());
    drop(pf);
    drop(shared);

    // An exclusive lock held by another process than the named one is still refused.
    fs::write(&path, format!("{me}\n")).unwrap();
    let h = Holders::hold(&path, "-x");
    assert_eq!(Pidfile::acquire(&path).unwrap_err(), AcquireError::LockedByOther { named: Some(me) });
    drop(h);
    assert_eq!(probe(&path).unwrap(), Probe::NotRunning { stale: Some(Ok(me)) });
}

#[test]
fn a_shared_lock_on_a_file_that_is_not_a_pidfile_is_not_a_reason_to_remove_it() {
    let _s = serial();
    let dir = TempDir::new("holder-shared-conf");
    let conf = dir.join("app.conf");
    fs::write(&conf, b"db_password=x\n").unwrap();
    let shared = Holders::hold(&conf, "-s");
    assert_eq!(Pidfile::acquire(&conf).unwrap_err(), AcquireError::Unsafe(PathProblem::NotAPidfile(14)));
    assert_eq!(fs::read(&conf).unwrap(), b"db_password=x\n");
    drop(shared);
}

#[test]
fn acquire_refuses_a_file_that_is_not_a_pidfile_or_has_other_names_and_leaves_it_as_it_was() {
    let _s = serial();
    let dir = TempDir::new("holder-acquire");
    let conf = dir.join("app.conf");
    fs::write(&conf, b"db_password=x\n").unwrap();
    assert_eq!(Pidfile::acquire(&conf).unwrap_err(), AcquireError::Unsafe(PathProblem::NotAPidfile(14)));
    assert_eq!(fs::read(&conf).unwrap(), b"db_password=x\n");

    let other = dir.join("other.txt");
    fs::write(&other, b"4242\n").unwrap();
    let link = dir.join("x.pid");
    fs::hard_link(&other, &link).unwrap();
    assert_eq!(Pidfile::acquire(&link).unwrap_err(), AcquireError::Unsafe(PathProblem::HardLinked(2)));
    assert_eq!(fs::read(&other).unwrap(), b"4242\n");
}

#[test]
fn write_and_remove_refuse_a_pidfile_that_gained_another_name() {
    let _s = serial();
    let dir = TempDir::new("holder-write");
    let path = dir.join("app.pid");
    let pf = Pidfile::acquire(&path).unwrap();
    pf.write_pid(4242).unwrap();
    let link = dir.join("elsewhere");
    fs::hard_link(&path, &link).unwrap();
    assert_eq!(pf.write_pid(5151).unwrap_err(), Errno::EMLINK);
    assert_eq!(fs::read(&link).unwrap(), b"4242\n", "nothing written");
    assert!(!pf.remove().unwrap(), "not removed");
    assert!(path.exists());
    fs::remove_file(&link).unwrap();
    assert!(pf.remove().unwrap());
}

#[test]
fn remove_stale_removes_only_a_provably_stale_pidfile() {
    let _s = serial();
    let dir = TempDir::new("holder-stale");
    let path = dir.join("app.pid");
    assert_eq!(pidfile::remove_stale(&path).unwrap(), StaleRemoval::Missing);
    assert!(!path.exists(), "remove_stale created the file");

    for content in [&b"4242\n"[..], b""] {
        fs::write(&path, content).unwrap();
        assert_eq!(pidfile::remove_stale(&path).unwrap(), StaleRemoval::Removed);
        assert!(!path.exists());
    }

    fs::write(&path, b"db_password=x\n").unwrap();
    assert_eq!(pidfile::remove_stale(&path).unwrap(), StaleRemoval::Kept(PathProblem::NotAPidfile(14)));
    assert_eq!(fs::read(&path).unwrap(), b"db_password=x\n");

    let big = dir.join("big.db");
    fs::write(&big, vec![7u8; 1 << 20]).unwrap();
    let link = dir.join("x.pid");
    fs::hard_link(&big, &link).unwrap();
    assert!(matches!(pidfile::remove_stale(&link).unwrap(), StaleRemoval::Kept(PathProblem::HardLinked(2))));
    assert_eq!(fs::metadata(&big).unwrap().len(), 1 << 20);
    assert!(link.exists());

    // A pidfile somebody locks is not stale.
    let locked = dir.join("locked.pid");
    fs::write(&locked, b"4242\n").unwrap();
    let h = Holders::hold(&locked, "-s");
    assert_eq!(pidfile::remove_stale(&locked).unwrap(), StaleRemoval::Locked);
    assert_eq!(fs::read(&locked).unwrap(), b"4242\n");
    drop(h);
}
