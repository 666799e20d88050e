//! The command's readiness: the private `$NOTIFY_SOCKET` it says `READY=1` on (the systemd
//! protocol), who sent a message there, and the settle window that stands in for it.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A fresh datagram socket for the command's readiness message, and its name for
/// `$NOTIFY_SOCKET`.
pub struct ReadySocket {
    socket: UnixDatagram,
    name: OsString,
}

impl ReadySocket {
    /// Binds it: in Linux's abstract namespace (nothing on disk; `@name`), elsewhere in the
    /// temporary directory. Non-blocking; on Linux every message carries its sender's pid.
    pub fn bind() -> std::io::Result<ReadySocket> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("daemonkit-ready-{}-{nanos}", std::process::id());
        #[cfg(target_os = "linux")]
        let (socket, name) = {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            (UnixDatagram::bind_addr(&addr)?, OsString::from(format!("@{name}")))
        };
        #[cfg(not(target_os = "linux"))]
        let (socket, name) = {
            let path = std::env::temp_dir().join(format!("{name}.sock"));
            (UnixDatagram::bind(&path)?, path.into_os_string())
        };
        socket.set_nonblocking(true)?;
        #[cfg(target_os = "linux")]
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)?;
        Ok(ReadySocket { socket, name })
    }

    /// The value for the command's `$NOTIFY_SOCKET`.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Receives one datagram into `buf`; on Linux also the sender's pid (`SCM_CREDENTIALS`).
    /// `None` when nothing is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> Option<(usize, Option<i32>)> {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
            let mut iov = [std::io::IoSliceMut::new(buf)];
            // Room for the credentials and as many descriptors as one message can carry, so
            // that none is cut off; a descriptor sent along is closed (and close-on-exec from its
            // arrival, so that no restart of the command can inherit it).
            let mut space = nix::cmsg_space!(UnixCredentials, [RawFd; 253]);
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
            let msg = recvmsg::<()>(self.socket.as_raw_fd(), &mut iov, Some(&mut space), flags).ok()?;
            let mut sender = None;
            for cmsg in msg.cmsgs().into_iter().flatten() {
                match cmsg {
                    ControlMessageOwned::ScmCredentials(cred) => sender = Some(cred.pid()),
                    ControlMessageOwned::ScmRights(fds) => {
                        for fd in fds {
                            let _ = daemonkit_core::stdio::close(fd);
                        }
                    }
                    _ => {}
                }
            }
            Some((msg.bytes, sender))
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.socket.recv(buf).ok().map(|n| (n, None))
        }
    }
}

/// Whether a datagram says `READY=1` (one of its lines).
pub fn says_ready(datagram: &[u8]) -> bool {
    String::from_utf8_lossy(datagram).lines().any(|l| l == "READY=1")
}

/// Whether `pid` is `ancestor` or one of its descendants (walks the parents in /proc).
pub fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..64 {
        if pid == ancestor {
            return true;
        }
        if pid <= 1 {
            return false;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some(parent) = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<i32>().ok()) else {
            return false;
        };
        pid = parent;
    }
    false
}

/// Who sent a message on the readiness socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The running command or one of its processes.
    Command,
    /// The new command of a graceful restart, or one of its processes.
    Upgrade,
    /// Someone else: ignored.
    Stranger,
}

/// Tells who `sender` is, given the running command `child` and the new one `upgrade`.
pub fn sender(sender: Option<i32>, child: Option<i32>, upgrade: Option<i32>) -> Sender {
    if let (Some(sender), Some(up)) = (sender, upgrade) {
        if descends_from(sender, up) {
            return Sender::Upgrade;
        }
    }
    let from_command = match (sender, child) {
        (Some(sender), Some(child)) => descends_from(sender, child),
        // Without sender credentials (not Linux) the socket's privacy must do.
        (None, _) => cfg!(not(target_os = "linux")),
        _ => false,
    };
    if from_command {
        Sender::Command
    } else {
        Sender::Stranger
    }
}

/// How long the first command must stay up to count as started (`--settle`): only with a
/// launcher to tell, and not when it says `READY=1` itself (`--wait-ready`). Zero: at exec.
pub fn settle_window(has_launcher: bool, wait_ready: bool, settle: Duration) -> Duration {
    if has_launcher && !wait_ready {
        settle
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> i32 {
        std::process::id() as i32
    }

    #[test]
    fn ready_is_one_whole_line() {
        assert!(says_ready(b"READY=1"));
        assert!(says_ready(b"STATUS=up\nREADY=1\n"));
        assert!(!says_ready(b"READY=10"));
        assert!(!says_ready(b"XREADY=1\nSTOPPING=1"));
        assert!(!says_ready(b""));
    }

    #[test]
    fn the_settle_window_needs_a_launcher_and_no_wait_ready() {
        let ms = Duration::from_millis(500);
        assert_eq!(settle_window(true, false, ms), ms);
        assert_eq!(settle_window(false, false, ms), Duration::ZERO);
        assert_eq!(settle_window(true, true, ms), Duration::ZERO);
    }

    #[test]
    fn descent_follows_real_parents() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(descends_from(me(), me()));
        assert!(descends_from(pid, me()));
        assert!(descends_from(me(), std::os::unix::process::parent_id() as i32));
        assert!(!descends_from(me(), pid));
        assert!(!descends_from(1, me()));
        assert!(!descends_from(i32::MAX, me()), "no such process");
        assert_eq!(sender(Some(pid), Some(me()), None), Sender::Command);
        assert_eq!(sender(Some(pid), Some(me()), Some(pid)), Sender::Upgrade);
        assert_eq!(sender(Some(1), Some(me()), Some(pid)), Sender::Stranger);
        assert_eq!(sender(Some(pid), None, None), Sender::Stranger);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_message_comes_with_its_senders_pid() {
        let socket = ReadySocket::bind().unwrap();
        assert!(socket.name().to_str().unwrap().starts_with("@daemonkit-ready-"));
        let mut buf = [0u8; 64];
        assert_eq!(socket.recv(&mut buf), None, "nothing waiting: no blocking");
        daemonkit_core::notify::notify_to(socket.name(), "READY=1").unwrap();
        let (n, from) = socket.recv(&mut buf).unwrap();
        assert!(says_ready(&buf[..n]));
        assert_eq!(from, Some(me()));
        assert_eq!(sender(None, Some(me()), None), Sender::Stranger, "Linux: no credentials, no trust");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_descriptor_sent_along_is_closed() {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let socket = ReadySocket::bind().unwrap();
        let (r, w) = crate::fd::tests::pipe();
        let name = socket.name().to_str().unwrap().trim_start_matches('@').to_string();
        let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
        let client = UnixDatagram::unbound().unwrap();
        let iov = [std::io::IoSlice::new(b"READY=1")];
        sendmsg(client.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&[w])], MsgFlags::empty(), Some(&addr)).unwrap();
        daemonkit_core::stdio::close(w).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = socket.recv(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"READY=1"[..], Some(me())));
        let mut byte = [0u8; 1];
        // SAFETY: reads into a live buffer; returns 0 only once no write end is left open.
        assert_eq!(unsafe { libc::read(r, byte.as_mut_ptr() as *mut libc::c_void, 1) }, 0);
        daemonkit_core::stdio::close(r).unwrap();
    }
}
