//! Listening sockets, and the graceful-restart control socket (Linux).

use daemonkit_core::listen;
use daemonkit_core::privileges;
use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::{coded, errno_error, Result};

/// Binds a listening stream socket at `address` (`IPV4:PORT`, `[IPV6]:PORT`, `unix:PATH`);
/// returns its descriptor (close-on-exec). A unix socket's file is given `user`'s (and
/// `group`'s) ownership and the mode `umask` leaves, before it listens. Errors carry the errno
/// name as `code`.
#[napi]
pub fn bind_listener(env: Env, address: String, user: Option<String>, group: Option<String>, umask: Option<u32>) -> Result<i32> {
    use std::os::fd::IntoRawFd;
    let parsed = listen::Address::parse(&address).map_err(|e| coded(&env, &format!("{:?}", e.errno), e.message))?;
    let credentials = privileges::resolve(user.as_deref(), group.as_deref()).map_err(|e| coded(&env, "EUSER", e))?;
    let access = listen::SocketAccess {
        uid: if user.is_some() { credentials.as_ref().map(|c| c.uid) } else { None },
        gid: credentials.as_ref().map(|c| c.gid),
        umask: umask.map(|m| m as _),
    };
    listen::bind_listener_with(&parsed, &access).map(IntoRawFd::into_raw_fd).map_err(|e| coded(&env, &format!("{:?}", e.errno), e.message))
}

/// Whether `fd` is a stream socket that listens.
#[napi]
pub fn is_listening_socket(env: Env, fd: i32) -> Result<bool> {
    listen::is_listening_socket(fd).map_err(|e| errno_error(&env, e, "getsockopt"))
}

#[cfg(target_os = "linux")]
fn io_error(env: &Env, e: std::io::Error, what: &str) -> napi::Error {
    errno_error(env, daemonkit_core::Errno::from_raw(e.raw_os_error().unwrap_or(5)), what)
}

#[cfg(not(target_os = "linux"))]
fn linux_only(env: &Env) -> napi::Error {
    coded(env, "ENOSYS", "graceful restarts need Linux")
}

/// Listens on this process's graceful-restart control socket (Linux); returns the descriptor.
#[napi]
pub fn bind_control(env: Env) -> Result<i32> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::IntoRawFd;
        let name = listen::control_name(std::process::id() as i32);
        listen::bind_abstract(&name).map(IntoRawFd::into_raw_fd).map_err(|e| io_error(&env, e, "binding the control socket"))
    }
    #[cfg(not(target_os = "linux"))]
    Err(linux_only(&env))
}

/// Connects to the graceful-restart control socket of `pid` (Linux); returns the descriptor.
#[napi]
pub fn connect_control(env: Env, pid: i32) -> Result<i32> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::IntoRawFd;
        let name = listen::control_name(pid);
        listen::connect_abstract(&name).map(IntoRawFd::into_raw_fd).map_err(|e| io_error(&env, e, "connecting to the control socket"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Err(linux_only(&env))
    }
}

/// The user id of the peer of the unix socket `fd` (Linux).
#[napi]
pub fn peer_uid(env: Env, fd: i32) -> Result<u32> {
    #[cfg(target_os = "linux")]
    {
        listen::peer_uid(fd).map_err(|e| errno_error(&env, e, "getsockopt"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(linux_only(&env))
    }
}

/// The process id of the peer of the unix socket `fd` (Linux): for a client, the process that
/// listens on the socket it connected to.
#[napi]
pub fn peer_pid(env: Env, fd: i32) -> Result<i32> {
    #[cfg(target_os = "linux")]
    {
        listen::peer_pid(fd).map_err(|e| errno_error(&env, e, "getsockopt"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        Err(linux_only(&env))
    }
}
