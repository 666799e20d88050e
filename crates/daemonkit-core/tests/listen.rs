//! Integration tests of `daemonkit_core::listen` and of `Command::listen_pid`: real sockets,
//! real connections, a real spawned process that reports its environment.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};

use common::{serial, Reaped, TempDir};
use daemonkit_core::launch::{Command, Stdio};
use daemonkit_core::listen::{bind_listener, is_listening_socket, Address};
use daemonkit_core::Errno;

/// The port a bound TCP socket got.
fn local_port(fd: i32) -> u16 {
    // SAFETY: sockaddr_storage is plain data; getsockname writes at most `len` bytes into it.
    unsafe {
        let mut sa: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        assert_eq!(libc::getsockname(fd, &mut sa as *mut _ as *mut libc::sockaddr, &mut len), 0);
        u16::from_be((*(&sa as *const _ as *const libc::sockaddr_in)).sin_port)
    }
}

#[test]
fn addresses_parse_or_say_why() {
    assert_eq!(Address::parse("127.0.0.1:8080").unwrap(), Address::Tcp("127.0.0.1:8080".parse().unwrap()));
    assert_eq!(Address::parse("[::1]:80").unwrap(), Address::Tcp("[::1]:80".parse().unwrap()));
    assert_eq!(Address::parse("unix:/run/a.sock").unwrap(), Address::Unix("/run/a.sock".into()));
    for bad in ["999.1.1.1:80", "localhost:80", "127.0.0.1", "unix:", ":80", "127.0.0.1:99999"] {
        let e = Address::parse(bad).unwrap_err();
        assert_eq!(e.errno, Errno::EINVAL, "{bad}");
    }
    let long = format!("unix:/{}", "x".repeat(200));
    assert!(Address::parse(&long).unwrap_err().message.contains("limited to 107 bytes"));
}

#[test]
fn a_bound_tcp_socket_listens_and_accepts() {
    let fd = bind_listener(&Address::parse("127.0.0.1:0").unwrap()).unwrap();
    assert!(is_listening_socket(fd.as_raw_fd()).unwrap());
    let port = local_port(fd.as_raw_fd());
    // The connection completes in the backlog, before anybody accepts.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"x").unwrap();
    // Port in use: a second bind fails, saying so.
    let e = bind_listener(&Address::parse(&format!("127.0.0.1:{port}")).unwrap()).unwrap_err();
    assert_eq!(e.errno, Errno::EADDRINUSE);
    assert!(e.message.contains("in use"), "{}", e.message);
    // Close-on-exec until passed on explicitly.
    // SAFETY: F_GETFD reads the flags of a descriptor we own.
    assert_ne!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC, 0);
}

#[test]
fn other_descriptors_are_not_listening_sockets() {
    let dir = TempDir::new("listen-not");
    let file = std::fs::File::create(dir.join("f")).unwrap();
    assert!(!is_listening_socket(file.as_raw_fd()).unwrap());
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(!is_listening_socket(a.as_raw_fd()).unwrap());
    assert_eq!(is_listening_socket(9999).unwrap_err(), Errno::EBADF);
}

#[test]
fn unix_sockets_replace_only_stale_socket_files() {
    // Serial: a program another test spawns meanwhile would hold a copy of the closed listener's
    // descriptor until its exec, and the stale socket would look served.
    let _guard = serial();
    let dir = TempDir::new("listen-unix");
    let path = dir.join("s.sock");
    let addr = Address::Unix(path.clone());
    // A socket file nobody accepts on any more is replaced.
    drop(UnixListener::bind(&path).unwrap());
    let fd = bind_listener(&addr).unwrap();
    assert!(is_listening_socket(fd.as_raw_fd()).unwrap());
    UnixStream::connect(&path).unwrap();
    // One that is served is not.
    assert_eq!(bind_listener(&addr).unwrap_err().errno, Errno::EADDRINUSE);
    // Nor is a file that is not a socket, which is left as it was.
    let plain = dir.join("plain");
    std::fs::write(&plain, "data").unwrap();
    let e = bind_listener(&Address::Unix(plain.clone())).unwrap_err();
    assert_eq!(e.errno, Errno::EEXIST);
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "data");
    // A missing folder is named.
    let e = bind_listener(&Address::Unix(dir.join("missing/s.sock"))).unwrap_err();
    assert_eq!(e.errno, Errno::ENOENT);
    assert!(e.message.contains("missing does not exist"), "{}", e.message);
}

#[test]
fn spawn_with_listen_pid_gives_the_child_its_own_pid_and_the_socket_at_fd_3() {
    let _guard = serial();
    let dir = TempDir::new("listen-pid");
    let fd = bind_listener(&Address::parse("127.0.0.1:0").unwrap()).unwrap();
    let out = dir.join("out");
    let script = format!(
        "echo \"$$ $LISTEN_PID $LISTEN_FDS\" > {}; [ -S /proc/self/fd/3 ] || readlink /proc/$$/fd/3 >> {}",
        out.display(),
        out.display()
    );
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", &script]);
    cmd.env_list([("LISTEN_PID", "1"), ("LISTEN_FDS", "1"), ("PATH", "/usr/bin:/bin")]);
    cmd.stdout(Stdio::Null).stderr(Stdio::Null);
    cmd.pass_fds(&[fd.as_raw_fd()]);
    cmd.listen_pid(true);
    let launched = cmd.spawn().unwrap();
    let mut child = Reaped::adopt(launched.pid);
    child.wait();
    let mut text = String::new();
    std::fs::File::open(&out).unwrap().read_to_string(&mut text).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words[0], launched.pid.to_string(), "{text}");
    assert_eq!(words[1], launched.pid.to_string(), "LISTEN_PID is the child's own pid, the old value replaced: {text}");
    assert_eq!(words[2], "1");
    assert!(text.lines().nth(1).is_none_or(|l| l.starts_with("socket:")), "fd 3 is the socket: {text}");
}
