//! The control socket where a graceful restart is asked for (`--wait-ready`, Linux): one line
//! `UPGRADE` from a client of our own user or root, answered once the restart is over (the
//! protocol is `daemonkit_core::control`). Its name is `daemonkit_core::listen::control_name` of
//! our pid.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use daemonkit_core::control::{Reply, Request, REQUEST_LIMIT};

/// Binds the control socket (Linux only: an abstract name leaves nothing on disk); `Ok(None)`
/// elsewhere.
pub fn bind() -> std::io::Result<Option<UnixListener>> {
    #[cfg(target_os = "linux")]
    {
        let name = daemonkit_core::listen::control_name(std::process::id() as i32);
        let listener: UnixListener = daemonkit_core::listen::bind_abstract(&name)?.into();
        listener.set_nonblocking(true)?;
        Ok(Some(listener))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(None)
    }
}

/// The uid of the process at the other end of `stream` (SO_PEERCRED).
#[cfg(target_os = "linux")]
fn peer_uid(stream: &UnixStream) -> Option<libc::uid_t> {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials).ok().map(|c| c.uid())
}

#[cfg(not(target_os = "linux"))]
fn peer_uid(_stream: &UnixStream) -> Option<libc::uid_t> {
    None
}

/// Whether the client at the other end of `stream` may ask: root, or our own user.
fn may_ask(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    matches!(peer_uid(stream), Some(uid) if uid == 0 || uid == me)
}

/// The next waiting client that may ask; `None` when none is waiting. Others are hung up on.
pub fn accept(listener: &UnixListener) -> Option<UnixStream> {
    loop {
        let (stream, _) = listener.accept().ok()?;
        if may_ask(&stream) {
            return Some(stream);
        }
    }
}

/// How long a client has to send its whole request: the supervisor's loop waits meanwhile.
const REQUEST_TIME: Duration = Duration::from_secs(2);

/// Reads the client's request: one line of at most `REQUEST_LIMIT` bytes, within
/// [`REQUEST_TIME`] in all (a client sending a byte at a time gets no more).
pub fn read_request(stream: &UnixStream) -> Request {
    let _ = stream.set_nonblocking(false);
    let deadline = Instant::now() + REQUEST_TIME;
    let mut line = [0u8; REQUEST_LIMIT];
    let mut got = 0;
    while got < line.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match (&*stream).read(&mut line[got..]) {
            // A signal (a child's exit) cuts a read with a timeout short even under SA_RESTART.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if line[..got].contains(&b'\n') {
            break;
        }
    }
    Request::parse(&line[..got])
}

/// Tells whoever asked for a graceful restart how it went; nobody to tell is fine.
pub fn reply(to: Option<UnixStream>, answer: &Reply) {
    if let Some(stream) = to {
        let _ = (&stream).write_all(answer.encode().as_bytes());
    }
}

/// Answers a request that is not one.
pub fn refuse_unknown(to: UnixStream) {
    reply(Some(to), &Reply::unknown_request());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(parts: &[&[u8]], close: bool) -> Request {
        let (client, server) = UnixStream::pair().unwrap();
        for part in parts {
            (&client).write_all(part).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        if close {
            client.shutdown(std::net::Shutdown::Write).unwrap();
        }
        read_request(&server)
    }

    /// Reads a request on a thread while this one writes `first`, then (once the reader waits
    /// for more, and after `between` ran with the reader's thread id) `rest`.
    fn ask_in_two(first: &[u8], rest: &'static [u8], between: impl FnOnce(libc::pthread_t)) -> Request {
        let (client, server) = UnixStream::pair().unwrap();
        (&client).write_all(first).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() }).unwrap();
            read_request(&server)
        });
        let id = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(200)); // the reader has taken `first` and waits
        between(id);
        std::thread::sleep(Duration::from_millis(50));
        (&client).write_all(rest).unwrap();
        reader.join().unwrap()
    }

    extern "C" fn ignore(_: libc::c_int) {}

    #[test]
    fn a_line_in_pieces_and_a_signal_between_them() {
        assert_eq!(ask_in_two(b"UPG", b"RADE\n", |_| {}), Request::Upgrade, "a line in pieces");
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        // SIGWINCH: a signal the supervisor never handles, so this handler cannot take the place
        // of the one signals.rs's test installs (handlers are the process's; tests run in threads).
        // SAFETY: the handler does nothing.
        unsafe { sigaction(Signal::SIGWINCH, &SigAction::new(SigHandler::Handler(ignore), SaFlags::SA_RESTART, SigSet::empty())) }.unwrap();
        let interrupted = ask_in_two(b"UPG", b"RADE\n", |reader| {
            // SAFETY: `reader` is a live thread of ours (joined only afterwards).
            assert_eq!(unsafe { libc::pthread_kill(reader, libc::SIGWINCH) }, 0);
        });
        assert_eq!(interrupted, Request::Upgrade, "a signal while the request is read (a read with a timeout is cut short even under SA_RESTART)");
    }

    #[test]
    fn requests() {
        assert_eq!(ask(&[b"UPGRADE\n"], false), Request::Upgrade);
        assert_eq!(ask(&[b"UPGRADE"], true), Request::Unknown, "no newline before the end");
        assert_eq!(ask(&[b"UPGRADE\nUPGRADE\n"], false), Request::Unknown, "one request per connection");
        assert_eq!(ask(&[&[b'x'; REQUEST_LIMIT + 6]], false), Request::Unknown, "at most REQUEST_LIMIT bytes are read");
    }

    #[test]
    fn a_byte_at_a_time_gets_no_more_than_the_request_time() {
        let (client, server) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            for _ in 0..REQUEST_LIMIT {
                if (&client).write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let started = Instant::now();
        assert_eq!(read_request(&server), Request::Unknown);
        let took = started.elapsed();
        // Reading all of it would take 6.4 s: each byte came before a per-read timeout.
        assert!(took >= REQUEST_TIME && took < REQUEST_TIME * 2, "{took:?}");
        drop(server);
        writer.join().unwrap();
    }

    #[test]
    fn replies_and_who_may_ask() {
        let (client, server) = UnixStream::pair().unwrap();
        #[cfg(target_os = "linux")]
        {
            // SAFETY: geteuid has no preconditions.
            assert_eq!(peer_uid(&server), Some(unsafe { libc::geteuid() }));
            assert!(may_ask(&server));
        }
        refuse_unknown(server);
        let mut answer = String::new();
        (&client).read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "FAIL usage \"unknown request\"\n");
        reply(None, &Reply::Ok { pid: 1 });
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_socket_takes_clients_by_our_pids_name() {
        let listener = bind().unwrap().unwrap();
        assert!(accept(&listener).is_none(), "nobody waiting: no blocking");
        let name = daemonkit_core::listen::control_name(std::process::id() as i32);
        let client: UnixStream = daemonkit_core::listen::connect_abstract(&name).unwrap().into();
        (&client).write_all(b"UPGRADE\n").unwrap();
        let stream = accept(&listener).unwrap();
        assert_eq!(read_request(&stream), Request::Upgrade);
        reply(Some(stream), &Reply::Ok { pid: 42 });
        let mut answer = String::new();
        (&client).read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "OK 42\n");
    }
}
