//! The systemd readiness protocol (`sd_notify`): datagrams such as `READY=1` sent to the unix
//! socket named by `$NOTIFY_SOCKET`.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// The socket systemd asked to be notified on, if any (`$NOTIFY_SOCKET`).
pub fn socket_path() -> Option<std::ffi::OsString> {
    std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty())
}

/// An unbound datagram socket connected to `path` (`@name`: Linux's abstract namespace).
fn connect(path: &OsStr) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        #[cfg(linux_like)]
        {
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
            socket.connect_addr(&addr)?;
            return Ok(socket);
        }
        #[cfg(not(linux_like))]
        {
            let _ = abstract_name;
            return Err(io::Error::new(io::ErrorKind::Unsupported, "abstract sockets are Linux-only"));
        }
    }
    socket.connect(OsStr::from_bytes(bytes))?;
    Ok(socket)
}

/// Sends `state` (e.g. `"READY=1\nMAINPID=42"`) to the socket at `path`. A path starting with
/// `@` names a socket in Linux's abstract namespace.
pub fn notify_to(path: &OsStr, state: &str) -> io::Result<()> {
    connect(path)?.send(state.as_bytes()).map(drop)
}

/// Sends `state` to `$NOTIFY_SOCKET`. Returns `Ok(false)` when the variable is not set.
pub fn notify(state: &str) -> io::Result<bool> {
    match socket_path() {
        Some(path) => notify_to(&path, state).map(|()| true),
        None => Ok(false),
    }
}

/// Checks that a datagram socket is listening at `path` (`@name`: Linux's abstract namespace)
/// by connecting an unbound datagram socket to it. Nothing is sent.
pub fn reachable(path: &OsStr) -> io::Result<()> {
    connect(path).map(drop)
}
