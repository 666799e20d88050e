//! How the command is started: its program and arguments, streams, identity, and the
//! environment that carries our readiness socket and the listening sockets we pass on.

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;

use daemonkit_core::launch::{Command, Stdio};

use crate::logs::Logs;
use crate::Config;

/// The command as `cfg` describes it, writing into `logs`, told `notify_socket` as its
/// `$NOTIFY_SOCKET` if given.
pub fn build(cfg: &Config, logs: &Logs, notify_socket: Option<&OsStr>) -> Command {
    let mut cmd = Command::new(&cfg.program);
    cmd.args(&cfg.args);
    cmd.stdin(Stdio::Null);
    cmd.stdout(logs.command_stdout());
    cmd.stderr(logs.command_stderr());
    if let Some(root) = &cfg.chroot {
        cmd.chroot(root);
    }
    if let Some(dir) = &cfg.cwd {
        cmd.current_dir(dir);
    }
    if let Some(mask) = cfg.umask {
        cmd.umask(mask);
    }
    if let Some(creds) = &cfg.credentials {
        cmd.credentials(creds.clone());
    }
    if let Some(vars) = environment(std::env::vars_os(), notify_socket, &cfg.listen) {
        if !cfg.listen.is_empty() {
            // The systemd socket-activation protocol: the sockets at 3, 4, …, LISTEN_PID
            // written by the command's own process just before execve.
            let fds: Vec<RawFd> = cfg.listen.iter().map(|(fd, _)| *fd).collect();
            cmd.pass_fds(&fds);
            cmd.listen_pid(true);
        }
        cmd.env_list(vars);
    }
    cmd.parent_death_signal(libc::SIGKILL);
    cmd.new_session(cfg.new_session);
    // Its group is what the guard ends if we are killed.
    cmd.process_group(true);
    cmd
}

/// The command's environment: ours, with `NOTIFY_SOCKET` pointing at us (the command tells
/// us, not systemd, that it is ready) and `LISTEN_FDS` / `LISTEN_FDNAMES` describing `listen`.
/// `None` when there is nothing to change: it inherits ours.
pub fn environment(ours: impl Iterator<Item = (OsString, OsString)>, notify_socket: Option<&OsStr>, listen: &[(RawFd, String)]) -> Option<Vec<(OsString, OsString)>> {
    if notify_socket.is_none() && listen.is_empty() {
        return None;
    }
    let mut vars: Vec<(OsString, OsString)> = ours
        .filter(|(k, _)| {
            let replaced_notify = k == "NOTIFY_SOCKET" && notify_socket.is_some();
            let listen_var = matches!(k.to_str(), Some("LISTEN_FDS" | "LISTEN_PID" | "LISTEN_FDNAMES"));
            !replaced_notify && !listen_var
        })
        .collect();
    if let Some(name) = notify_socket {
        vars.push(("NOTIFY_SOCKET".into(), name.to_owned()));
    }
    if !listen.is_empty() {
        vars.push(("LISTEN_FDS".into(), listen.len().to_string().into()));
        let names: Vec<&str> = listen.iter().map(|(_, n)| n.as_str()).collect();
        vars.push(("LISTEN_FDNAMES".into(), names.join(":").into()));
    }
    Some(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect::<Vec<_>>().into_iter()
    }

    fn text(vars: Vec<(OsString, OsString)>) -> Vec<String> {
        vars.into_iter().map(|(k, v)| format!("{}={}", k.to_str().unwrap(), v.to_str().unwrap())).collect()
    }

    #[test]
    fn nothing_to_change_inherits_ours() {
        assert_eq!(environment(env(&[("PATH", "/bin")]), None, &[]), None);
    }

    #[test]
    fn the_notify_socket_is_ours() {
        let vars = environment(env(&[("PATH", "/bin"), ("NOTIFY_SOCKET", "/run/systemd/notify"), ("LISTEN_PID", "1")]), Some(OsStr::new("@daemonkit-ready-1-2")), &[]).unwrap();
        assert_eq!(text(vars), ["PATH=/bin", "NOTIFY_SOCKET=@daemonkit-ready-1-2"]);
    }

    #[test]
    fn listening_sockets_are_described_afresh() {
        let listen = [(5, "http".to_string()), (6, "admin".to_string())];
        let ours = env(&[("NOTIFY_SOCKET", "/run/systemd/notify"), ("LISTEN_FDS", "9"), ("LISTEN_FDNAMES", "old"), ("HOME", "/root")]);
        let vars = environment(ours, None, &listen).unwrap();
        assert_eq!(text(vars), ["NOTIFY_SOCKET=/run/systemd/notify", "HOME=/root", "LISTEN_FDS=2", "LISTEN_FDNAMES=http:admin"]);
    }
}
