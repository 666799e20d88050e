//! Listening sockets that outlive the process that serves on them.
//!
//! A launcher binds the sockets (so that `EADDRINUSE` or `EACCES` reach the shell that asked),
//! and passes them to the daemon across `execve`, which serves on them; a new copy of the
//! daemon gets the very same sockets, so connections made meanwhile wait in the backlog.
//!
//! Addresses are written `IPV4:PORT`, `[IPV6]:PORT` or `unix:PATH`.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;

/// The backlog of every socket: Node's own default for `server.listen()`.
pub const BACKLOG: libc::c_int = 511;

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A TCP address, IPv4 or IPv6 (an IPv6 socket is bound v6-only).
    Tcp(SocketAddr),
    /// A Unix stream socket at this path.
    Unix(PathBuf),
}

/// Why an address cannot be listened on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenError {
    /// The system error behind it (`EINVAL` for an address that does not parse).
    pub errno: Errno,
    /// What went wrong, for people.
    pub message: String,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ListenError {}

fn invalid(message: String) -> ListenError {
    ListenError { errno: Errno::EINVAL, message }
}

/// Longest path a `sockaddr_un` holds, with its NUL.
const SUN_PATH_LEN: usize = 108;

impl Address {
    /// Parses `IPV4:PORT`, `[IPV6]:PORT` or `unix:PATH` (host names are refused: a daemon's
    /// address must not depend on the resolver at boot).
    pub fn parse(text: &str) -> Result<Address, ListenError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() || path.contains('\0') {
                return Err(invalid("a unix socket path must be a non-empty path without NUL bytes".into()));
            }
            if path.len() >= SUN_PATH_LEN {
                return Err(invalid(format!("a unix socket path is limited to {} bytes", SUN_PATH_LEN - 1)));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        text.parse::<SocketAddr>().map(Address::Tcp).map_err(|_| {
            invalid("not an address: expected IPV4:PORT (127.0.0.1:8080), [IPV6]:PORT ([::1]:8080) or unix:PATH".into())
        })
    }
}

/// Integer socket option, read.
fn get_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> Result<libc::c_int, Errno> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given.
    let rc = unsafe { libc::getsockopt(fd, level, name, &mut value as *mut libc::c_int as *mut libc::c_void, &mut len) };
    Errno::result(rc).map(|_| value)
}

/// Integer socket option, set.
fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> Result<(), Errno> {
    // SAFETY: `value` lives across the call and its size is given.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, &value as *const libc::c_int as *const libc::c_void, std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
    Errno::result(rc).map(drop)
}

/// A new close-on-exec stream socket.
fn stream_socket(domain: libc::c_int) -> Result<OwnedFd, Errno> {
    #[cfg(any(linux_like, target_os = "freebsd"))]
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    #[cfg(not(any(linux_like, target_os = "freebsd")))]
    // SAFETY: socket has no memory preconditions.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) };
    Errno::result(fd)?;
    // SAFETY: a descriptor just returned by socket, owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    #[cfg(not(any(linux_like, target_os = "freebsd")))]
    crate::stdio::set_cloexec(owned.as_raw_fd(), true)?;
    Ok(owned)
}

fn unix_sockaddr(path: &std::path::Path) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    (addr, len as libc::socklen_t)
}

/// Whether a unix socket file at `path` is left over by a process that is gone (nobody accepts
/// on it). Checked by connecting, as systemd and most servers do.
fn stale_unix_socket(path: &std::path::Path) -> bool {
    let Ok(sock) = stream_socket(libc::AF_UNIX) else { return false };
    let (addr, len) = unix_sockaddr(path);
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let rc = unsafe { libc::connect(sock.as_raw_fd(), &addr as *const libc::sockaddr_un as *const libc::sockaddr, len) };
    rc < 0 && Errno::last() == Errno::ECONNREFUSED
}

fn describe(errno: Errno, address: &Address) -> String {
    match (errno, address) {
        (Errno::EADDRINUSE, Address::Tcp(a)) => format!("port {} is in use on {} (another process listens there)", a.port(), a.ip()),
        (Errno::EADDRINUSE, Address::Unix(_)) => "a process already listens on this socket".into(),
        (Errno::EACCES, Address::Tcp(a)) if a.port() < 1024 => format!("port {} is privileged: binding it needs root (or CAP_NET_BIND_SERVICE)", a.port()),
        (Errno::EADDRNOTAVAIL, Address::Tcp(a)) => format!("{} is not an address of this machine", a.ip()),
        (Errno::ENOENT, Address::Unix(p)) => format!("the folder {} does not exist", p.parent().map_or_else(|| ".".into(), |d| d.display().to_string())),
        (e, _) => e.desc().to_string(),
    }
}

/// Creates a stream socket, binds it to `address` and listens on it. The descriptor is
/// close-on-exec (pass it on explicitly). A unix socket file left by a process that is gone is
/// replaced; any other file at the path is refused.
pub fn bind_listener(address: &Address) -> Result<OwnedFd, ListenError> {
    bind_listener_with(address, &SocketAccess::default())
}

/// Who may use a unix socket bound by [`bind_listener_with`]: its file gets this owner and a
/// mode from this umask before `listen()`, so nobody can connect while it is still root's.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketAccess {
    /// The owner to give the socket file (`None`: the binding process's).
    pub uid: Option<libc::uid_t>,
    /// The group to give it (`None`: the binding process's).
    pub gid: Option<libc::gid_t>,
    /// The umask the file is created under (`None`: the process's). The umask is process-wide:
    /// it is set only around the `bind()` call.
    pub umask: Option<libc::mode_t>,
}

/// [`bind_listener`], with a unix socket's file given the owner and mode of `access` (ignored
/// for TCP). The owner is set with `fchownat(AT_SYMLINK_NOFOLLOW)`: a symlink put in its place
/// is never followed.
pub fn bind_listener_with(address: &Address, access: &SocketAccess) -> Result<OwnedFd, ListenError> {
    let fail = |errno: Errno| ListenError { errno, message: describe(errno, address) };
    let sock = match address {
        Address::Tcp(addr) => {
            let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
            let sock = stream_socket(domain).map_err(fail)?;
            // A restart must be able to bind again while old connections sit in TIME_WAIT.
            set_int_opt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).map_err(fail)?;
            let rc = match addr {
                SocketAddr::V4(v4) => {
                    // SAFETY: sockaddr_in is plain data; all zeroes is a valid value.
                    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                    sa.sin_family = libc::AF_INET as libc::sa_family_t;
                    sa.sin_port = v4.port().to_be();
                    sa.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                    // SAFETY: `sa` is a valid sockaddr_in of the size given.
                    unsafe { libc::bind(sock.as_raw_fd(), &sa as *const libc::sockaddr_in as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t) }
                }
                SocketAddr::V6(v6) => {
                    set_int_opt(sock.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1).map_err(fail)?;
                    // SAFETY: sockaddr_in6 is plain data; all zeroes is a valid value.
                    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    sa.sin6_port = v6.port().to_be();
                    sa.sin6_addr.s6_addr = v6.ip().octets();
                    sa.sin6_scope_id = v6.scope_id();
                    // SAFETY: `sa` is a valid sockaddr_in6 of the size given.
                    unsafe { libc::bind(sock.as_raw_fd(), &sa as *const libc::sockaddr_in6 as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t) }
                }
            };
            Errno::result(rc).map_err(fail)?;
            sock
        }
        Address::Unix(path) => {
            match std::fs::symlink_metadata(path) {
                Ok(meta) => {
                    use std::os::unix::fs::FileTypeExt;
                    if !meta.file_type().is_socket() {
                        return Err(ListenError { errno: Errno::EEXIST, message: "the path exists and is not a socket; refusing to replace it".into() });
                    }
                    if !stale_unix_socket(path) {
                        return Err(fail(Errno::EADDRINUSE));
                    }
                    std::fs::remove_file(path).map_err(|e| fail(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(fail(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))),
            }
            let sock = stream_socket(libc::AF_UNIX).map_err(fail)?;
            let (addr, len) = unix_sockaddr(path);
            // SAFETY: umask has no preconditions.
            let previous = access.umask.map(|mask| unsafe { libc::umask(mask & 0o777) });
            // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
            let rc = unsafe { libc::bind(sock.as_raw_fd(), &addr as *const libc::sockaddr_un as *const libc::sockaddr, len) };
            if let Some(previous) = previous {
                // SAFETY: umask has no preconditions.
                unsafe { libc::umask(previous) };
            }
            Errno::result(rc).map_err(fail)?;
            if access.uid.is_some() || access.gid.is_some() {
                let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| fail(Errno::EINVAL))?;
                // SAFETY: `c_path` is a NUL-terminated path; -1 leaves an id unchanged.
                let rc = unsafe { libc::fchownat(libc::AT_FDCWD, c_path.as_ptr(), access.uid.unwrap_or(libc::uid_t::MAX), access.gid.unwrap_or(libc::gid_t::MAX), libc::AT_SYMLINK_NOFOLLOW) };
                if let Err(errno) = Errno::result(rc) {
                    let _ = std::fs::remove_file(path);
                    return Err(fail(errno));
                }
            }
            sock
        }
    };
    // SAFETY: listen on a socket we own.
    let rc = unsafe { libc::listen(sock.as_raw_fd(), BACKLOG) };
    if let Err(errno) = Errno::result(rc) {
        if let Address::Unix(path) = address {
            let _ = std::fs::remove_file(path);
        }
        return Err(fail(errno));
    }
    Ok(sock)
}

/// Whether `fd` is a stream socket in the listening state (`SO_ACCEPTCONN`).
pub fn is_listening_socket(fd: RawFd) -> Result<bool, Errno> {
    // SAFETY: fstat writes into a zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes.
    Errno::result(unsafe { libc::fstat(fd, &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Ok(false);
    }
    Ok(get_int_opt(fd, libc::SOL_SOCKET, libc::SO_TYPE)? == libc::SOCK_STREAM && get_int_opt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? == 1)
}

/// The abstract socket name (Linux) on which the daemon with pid `pid` (daemonkit's supervisor,
/// or a `daemonize()` app) takes graceful-restart requests: one line `UPGRADE`, answered by
/// `OK <new pid>` or `FAIL <reason> <message as JSON>` once the restart is over.
pub fn control_name(pid: i32) -> String {
    format!("daemonkit-control/{pid}")
}

/// Binds and listens on the stream socket `name` in Linux's abstract namespace (nothing on
/// disk). Close-on-exec.
#[cfg(linux_like)]
pub fn bind_abstract(name: &str) -> std::io::Result<OwnedFd> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    Ok(listener.into())
}

/// Connects to the stream socket `name` in Linux's abstract namespace. Close-on-exec, blocking.
#[cfg(linux_like)]
pub fn connect_abstract(name: &str) -> std::io::Result<OwnedFd> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    Ok(stream.into())
}

/// The user id of the process at the other end of the unix socket `fd` (`SO_PEERCRED`).
#[cfg(linux_like)]
pub fn peer_uid(fd: RawFd) -> Result<libc::uid_t, Errno> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut libc::ucred as *mut libc::c_void, &mut len) };
    Errno::result(rc).map(|_| cred.uid)
}

/// The process id of the process at the other end of the unix socket `fd` (`SO_PEERCRED`):
/// for a connected client, the process that bound and listened on the server's socket.
#[cfg(linux_like)]
pub fn peer_pid(fd: RawFd) -> Result<libc::pid_t, Errno> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut libc::ucred as *mut libc::c_void, &mut len) };
    Errno::result(rc).map(|_| cred.pid)
}
