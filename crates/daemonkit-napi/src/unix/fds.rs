//! Descriptors: pipes, `dup2`, flags, plain reads and writes, `fstat`.

use daemonkit_core::stdio;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{errno_error, Result};

/// Creates a close-on-exec pipe; returns `[read, write]`.
#[napi]
pub fn pipe(env: Env) -> Result<Vec<i32>> {
    use std::os::fd::IntoRawFd;
    let (r, w) = stdio::pipe_cloexec().map_err(|e| errno_error(&env, e, "pipe"))?;
    Ok(vec![r.into_raw_fd(), w.into_raw_fd()])
}

/// `dup2(from, to)`.
#[napi]
pub fn dup2(env: Env, from: i32, to: i32) -> Result<()> {
    stdio::dup_onto(from, to).map_err(|e| errno_error(&env, e, "dup2"))
}

/// Sets or clears close-on-exec on `fd`.
#[napi]
pub fn set_cloexec(env: Env, fd: i32, on: bool) -> Result<()> {
    stdio::set_cloexec(fd, on).map_err(|e| errno_error(&env, e, "fcntl"))
}

/// How a descriptor is open.
#[napi(object)]
pub struct FdAccess {
    /// Open for reading.
    pub readable: bool,
    /// Open for writing.
    pub writable: bool,
}

/// The access mode of `fd` (`F_GETFL`).
#[napi]
pub fn fd_access(env: Env, fd: i32) -> Result<FdAccess> {
    let (readable, writable) = stdio::access_mode(fd).map_err(|e| errno_error(&env, e, "fcntl"))?;
    Ok(FdAccess { readable, writable })
}

/// Closes `fd`, a descriptor the binding handed out (`pipe`, `openLog`) or inherited.
/// Bun and Deno keep tables of their own descriptors, whose `fs.closeSync` refuses these.
#[napi]
pub fn close_fd(env: Env, fd: i32) -> Result<()> {
    stdio::close(fd).map_err(|e| errno_error(&env, e, "close"))
}

/// Writes `data` to `fd` (one `write`); returns how many bytes were written.
#[napi]
pub fn write_fd(env: Env, fd: i32, data: Buffer) -> Result<u32> {
    let n = stdio::write(fd, &data).map_err(|e| errno_error(&env, e, "write"))?;
    Ok(n as u32)
}

/// Whether every reader of the pipe whose write end is `fd` is gone (see `stdio::peer_closed`).
#[napi]
pub fn peer_closed(env: Env, fd: i32) -> Result<bool> {
    stdio::peer_closed(fd).map_err(|e| errno_error(&env, e, "poll"))
}

/// What `fd` has to read right now, without blocking: `null` when nothing yet, an empty
/// buffer at end of file.
#[napi]
pub fn read_available(env: Env, fd: i32) -> Result<Option<Buffer>> {
    let mut buf = vec![0u8; 64 * 1024];
    match stdio::read_available(fd, &mut buf).map_err(|e| errno_error(&env, e, "read"))? {
        None => Ok(None),
        Some(n) => {
            buf.truncate(n);
            Ok(Some(buf.into()))
        }
    }
}

/// What an open descriptor is on (`fstat`).
#[napi(object)]
pub struct FdStat {
    /// A pipe or FIFO.
    pub fifo: bool,
    /// A directory.
    pub directory: bool,
    /// The device number.
    pub dev: f64,
    /// The inode number.
    pub ino: f64,
}

/// `fstat(fd)`, for descriptors the runtime's own `fs` does not know (Deno's).
#[napi]
pub fn fd_stat(env: Env, fd: i32) -> Result<FdStat> {
    let id = stdio::file_id(fd).map_err(|e| errno_error(&env, e, "fstat"))?;
    Ok(FdStat {
        fifo: id.is_fifo(),
        directory: id.is_dir(),
        dev: id.dev as f64,
        ino: id.ino as f64,
    })
}
