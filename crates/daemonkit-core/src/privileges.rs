//! Users and groups: resolving the credentials a daemon drops to.
//!
//! The lookups allocate and read `/etc/passwd` / NSS, so they happen in the launching process,
//! before any fork; [`crate::launch::Command::credentials`] then applies the result with plain
//! system calls.

use std::ffi::CString;
use std::fmt;

use nix::unistd::{Group, User};

use crate::launch::Credentials;

/// Why credentials could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// No such user.
    NoUser(String),
    /// No such group.
    NoGroup(String),
    /// The user database could not be read.
    Database(String),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NoUser(u) => write!(f, "no such user: {u}"),
            LookupError::NoGroup(g) => write!(f, "no such group: {g}"),
            LookupError::Database(e) => write!(f, "reading the user database failed: {e}"),
        }
    }
}

impl std::error::Error for LookupError {}

/// Resolves a group name or numeric id.
pub fn lookup_group(name: &str) -> Result<libc::gid_t, LookupError> {
    if let Ok(gid) = name.parse::<libc::gid_t>() {
        return Ok(gid);
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(LookupError::NoGroup(name.to_string())),
        Err(e) => Err(LookupError::Database(e.desc().to_string())),
    }
}

/// The supplementary groups of `user` (whose primary group is `gid`), as `getgrouplist` says.
fn group_list(user: &str, gid: libc::gid_t) -> Result<Vec<libc::gid_t>, LookupError> {
    let name = CString::new(user).map_err(|_| LookupError::NoUser(user.to_string()))?;
    let mut capacity: usize = 32;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; capacity];
        let mut count = capacity as libc::c_int;
        #[cfg(not(apple_targets))]
        // SAFETY: `groups` has room for `count` entries; getgrouplist writes at most that many
        // and updates `count`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        #[cfg(apple_targets)]
        // SAFETY: as above; Apple's getgrouplist takes the gids as c_int.
        let rc = unsafe {
            libc::getgrouplist(name.as_ptr(), gid as libc::c_int, groups.as_mut_ptr() as *mut libc::c_int, &mut count)
        };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if capacity >= 65536 {
            return Err(LookupError::Database(format!("{user} is in too many groups")));
        }
        capacity = (count.max(0) as usize).max(capacity * 2);
    }
}

/// Resolves the credentials of `user` (a name or numeric uid): its uid, the primary group
/// (`group` if given, else the user's own), and the supplementary groups from the group
/// database. A numeric uid without a database entry gets no supplementary groups.
pub fn lookup_user(user: &str, group: Option<&str>) -> Result<Credentials, LookupError> {
    let entry = if let Ok(uid) = user.parse::<libc::uid_t>() {
        User::from_uid(nix::unistd::Uid::from_raw(uid)).map_err(|e| LookupError::Database(e.desc().to_string()))?
    } else {
        match User::from_name(user) {
            Ok(Some(u)) => Some(u),
            Ok(None) => return Err(LookupError::NoUser(user.to_string())),
            Err(e) => return Err(LookupError::Database(e.desc().to_string())),
        }
    };
    let explicit_gid = group.map(lookup_group).transpose()?;
    match entry {
        Some(u) => {
            let gid = explicit_gid.unwrap_or(u.gid.as_raw());
            // As initgroups(user, gid): the chosen group replaces the passwd one in the list.
            let mut groups = group_list(&u.name, gid)?;
            if !groups.contains(&gid) {
                groups.insert(0, gid);
            }
            Ok(Credentials { uid: u.uid.as_raw(), gid, groups })
        }
        None => {
            let uid = user.parse::<libc::uid_t>().map_err(|_| LookupError::NoUser(user.to_string()))?;
            let gid = explicit_gid.unwrap_or(uid as libc::gid_t);
            Ok(Credentials { uid, gid, groups: vec![gid] })
        }
    }
}

/// Credentials for only a group change: the current uid kept, `group` as primary and only group.
pub fn group_only(group: &str) -> Result<Credentials, LookupError> {
    let gid = lookup_group(group)?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    Ok(Credentials { uid, gid, groups: vec![gid] })
}

/// The credentials for an optional `user` and `group` (names or ids), as a launch applies them:
/// both → the user with that primary group; only a user → the user's own groups; only a group
/// → the current uid with that group; neither → `None` (no change).
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Credentials>, LookupError> {
    match (user, group) {
        (Some(u), g) => lookup_user(u, g).map(Some),
        (None, Some(g)) => group_only(g).map(Some),
        (None, None) => Ok(None),
    }
}
