//! Proof that *another* process holds a pidfile's exclusive lock.
//!
//! Anyone who can open a pidfile can `flock` it, so "somebody holds the lock" alone proves
//! nothing about the pid the file names. On Linux the kernel shows who can release a lock:
//! `/proc/PID/fdinfo/N` lists the locks held through descriptor `N`, as
//! `lock: 1: FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<inode> 0 EOF`. A `flock` belongs to the
//! open file description, so the line appears in the fdinfo of every process sharing it (a
//! daemon that inherited its launcher's lock shows it), while the pid inside the line is the
//! original locker's (the launcher's, long gone): that pid is ignored here. What counts is that
//! process `pid` has a descriptor through which an exclusive `FLOCK` is held on the very same
//! file, as the device and inode in the lock line show.
//!
//! Elsewhere (macOS, the BSDs) no such proof exists: [`check`] answers
//! [`Holder::Unsupported`].

use std::os::fd::RawFd;

use nix::errno::Errno;

/// What [`check`] found out about a process and a pidfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The process holds an exclusive `flock` on the file through one of its own descriptors.
    Proven,
    /// The process does not exist, or holds no exclusive `flock` on the file.
    NotHolder,
    /// The process's descriptors cannot be inspected (typically `EACCES`: it belongs to another
    /// user and we are not root). Nothing is known either way.
    Unverifiable(Errno),
    /// This platform offers no way to tell.
    Unsupported,
}

/// Tells whether process `pid` holds an exclusive `flock` on the file open at `file`.
///
/// `file` is any descriptor of the pidfile (the caller's own, e.g. the one it probed the lock
/// with); only its device and inode are used.
pub fn check(pid: i32, file: RawFd) -> Holder {
    if pid < 1 {
        return Holder::NotHolder;
    }
    imp::check(pid, file)
}

#[cfg(linux_like)]
mod imp {
    use super::*;
    use crate::fsutil::{errno_of, fstat};
    use std::io::ErrorKind;

    /// Whether an fdinfo text lists an exclusive, granted `flock` on the file `dev` (as the
    /// kernel prints it, `major:minor` in hex) and `ino`. The fdinfo of a descriptor lists only
    /// the locks held through that descriptor's open file description.
    pub(super) fn lists_exclusive_flock(fdinfo: &str, dev: (u32, u32), ino: u64) -> bool {
        fdinfo.lines().filter_map(|l| l.strip_prefix("lock:")).any(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            // ["1:", "FLOCK", "ADVISORY", "WRITE", pid, maj:min:ino, start, end]; a blocked
            // request would carry "->" after the id.
            words.len() >= 6 && words[1] == "FLOCK" && words[3] == "WRITE" && same_file(words[5], dev, ino)
        })
    }

    fn same_file(field: &str, dev: (u32, u32), ino: u64) -> bool {
        let mut parts = field.split(':');
        let (Some(maj), Some(min), Some(i), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return false };
        u32::from_str_radix(maj, 16) == Ok(dev.0) && u32::from_str_radix(min, 16) == Ok(dev.1) && i.parse::<u64>() == Ok(ino)
    }

    /// The targets of `/proc/PID/fd` are never looked at (a `stat` of a descriptor on a hung
    /// FUSE or NFS mount would hang): only the fdinfo lock lines, which name the file by
    /// device and inode. Where `st_dev` is not the device the kernel prints there (btrfs
    /// subvolumes, overlayfs), nothing is proven: the answer is then `NotHolder`, never a
    /// wrong `Proven`.
    #[allow(clippy::unnecessary_cast)] // st_ino is not u64 on every Linux target
    pub(super) fn check(pid: i32, file: RawFd) -> Holder {
        let ours = match fstat(file) {
            Ok(st) => st,
            Err(e) => return Holder::Unverifiable(e),
        };
        let dev = (libc::major(ours.st_dev) as u32, libc::minor(ours.st_dev) as u32);
        let entries = match std::fs::read_dir(format!("/proc/{pid}/fdinfo")) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Holder::NotHolder,
            Err(e) => return Holder::Unverifiable(errno_of(&e)),
        };
        let mut unreadable = None;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(n) = name.to_str() else { continue };
            match std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")) {
                Ok(info) if lists_exclusive_flock(&info, dev, ours.st_ino as u64) => return Holder::Proven,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => unreadable = Some(errno_of(&e)),
            }
        }
        // The process may have exited while we looked: its fdinfo directory is then empty.
        match unreadable {
            Some(errno) if std::path::Path::new(&format!("/proc/{pid}")).exists() => Holder::Unverifiable(errno),
            _ => Holder::NotHolder,
        }
    }
}

#[cfg(not(linux_like))]
mod imp {
    use super::*;

    pub(super) fn check(_pid: i32, _file: RawFd) -> Holder {
        Holder::Unsupported
    }
}

#[cfg(all(test, linux_like))]
mod tests {
    use super::imp::lists_exclusive_flock;

    #[test]
    fn fdinfo_lines() {
        let (dev, ino) = ((0xfe, 0), 9978178);
        assert!(lists_exclusive_flock("pos:\t0\nflags:\t0100000\nlock:\t1: FLOCK  ADVISORY  WRITE 12529 fe:00:9978178 0 EOF\n", dev, ino));
        assert!(!lists_exclusive_flock("lock:\t1: FLOCK  ADVISORY  WRITE 12529 fe:00:9978179 0 EOF\n", dev, ino), "another inode");
        assert!(!lists_exclusive_flock("lock:\t1: FLOCK  ADVISORY  WRITE 12529 fe:01:9978178 0 EOF\n", dev, ino), "another device");
        assert!(!lists_exclusive_flock("pos:\t0\nlock:\t1: FLOCK  ADVISORY  READ 12529 fe:00:9978178 0 EOF\n", dev, ino));
        assert!(!lists_exclusive_flock("lock:\t1: POSIX  ADVISORY  WRITE 12529 fe:00:9978178 0 EOF\n", dev, ino));
        assert!(!lists_exclusive_flock("lock:\t1: -> FLOCK  ADVISORY  WRITE 12529 fe:00:9978178 0 EOF\n", dev, ino));
        assert!(!lists_exclusive_flock("pos:\t0\nflags:\t0100000\n", dev, ino));
    }
}
