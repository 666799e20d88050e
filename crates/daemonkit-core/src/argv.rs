//! The NULL-terminated arrays of C strings that `execve` takes as `argv` and `envp`, built once
//! for both ways this crate runs a program ([`crate::launch`] and [`crate::exec`]).

use std::ffi::{CString, NulError, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::ptr;

use libc::c_char;

/// An owned `argv` or `envp`: the strings and the NULL-terminated array of pointers to them.
///
/// The pointers stay valid when the value moves (they point into heap allocations it owns), so
/// the array can be prepared before a fork and read in the child without allocating.
#[derive(Debug)]
pub(crate) struct CStringArray {
    _strings: Vec<CString>,
    /// Entries whose bytes a child may still write before `execve` (see [`Self::push_writable`]).
    writable: Vec<Vec<u8>>,
    /// One pointer per entry, then NULL.
    ptrs: Vec<*const c_char>,
}

impl CStringArray {
    /// Builds the array from `items`, in order; fails if one of them contains a NUL byte.
    pub(crate) fn new<I, S>(items: I) -> Result<CStringArray, NulError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let strings = items.into_iter().map(|s| CString::new(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(ptr::null());
        Ok(CStringArray { _strings: strings, writable: Vec::new(), ptrs })
    }

    /// Appends an entry of `room` bytes that starts with `prefix` and is NUL-filled after it,
    /// and returns where the bytes after the prefix are: the caller may write a NUL-terminated
    /// value there (within `room`) up to the moment the array is passed to `execve`.
    pub(crate) fn push_writable(&mut self, prefix: &[u8], room: usize) -> *mut u8 {
        // The pointer returned below and the NUL after the value depend on it.
        assert!(room > prefix.len());
        let mut entry = vec![0u8; room];
        entry[..prefix.len()].copy_from_slice(prefix);
        self.writable.push(entry);
        let last = self.writable.len() - 1;
        // One raw pointer for both the array's entry and the caller's writes.
        let start = self.writable[last].as_mut_ptr();
        self.ptrs.insert(self.ptrs.len() - 1, start as *const c_char);
        // SAFETY: `prefix.len() < room`, so the result is inside the allocation.
        unsafe { start.add(prefix.len()) }
    }

    /// The array for `execve`: valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

/// The current environment as `NAME=value` entries.
pub(crate) fn current_env() -> Vec<Vec<u8>> {
    std::env::vars_os().map(|(k, v)| env_entry(&k, &v)).collect()
}

/// One `NAME=value` entry.
pub(crate) fn env_entry(name: &OsStr, value: &OsStr) -> Vec<u8> {
    let mut entry = name.as_bytes().to_vec();
    entry.push(b'=');
    entry.extend_from_slice(value.as_bytes());
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    unsafe fn read(array: &CStringArray) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut p = array.as_ptr();
        while !(*p).is_null() {
            out.push(CStr::from_ptr(*p).to_bytes().to_vec());
            p = p.add(1);
        }
        out
    }

    #[test]
    fn null_terminated_and_movable() {
        let array = CStringArray::new(["a", "bc", ""]).unwrap();
        let moved = Box::new(array);
        // SAFETY: the array is NULL-terminated and alive.
        assert_eq!(unsafe { read(&moved) }, vec![b"a".to_vec(), b"bc".to_vec(), Vec::new()]);
        assert!(CStringArray::new(["ok", "n\0l"]).is_err());
        let empty = CStringArray::new(Vec::<&[u8]>::new()).unwrap();
        // SAFETY: as above.
        assert!(unsafe { (*empty.as_ptr()).is_null() });
    }

    #[test]
    fn writable_entry_goes_last() {
        let mut array = CStringArray::new(["A=1"]).unwrap();
        let digits = array.push_writable(b"LISTEN_PID=", 16);
        // SAFETY: within the 16 bytes, NUL-terminated by the zeroes after.
        unsafe { digits.copy_from(b"42".as_ptr(), 2) };
        // SAFETY: as above.
        assert_eq!(unsafe { read(&array) }, vec![b"A=1".to_vec(), b"LISTEN_PID=42".to_vec()]);
        assert_eq!(env_entry(OsStr::new("K"), OsStr::new("v=w")), b"K=v=w".to_vec());
    }
}
