//! The supervisor: starts the command, passes signals on, restarts it when it dies (with
//! backoff), reports its start, and at the end cleans up and exits with its status.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use daemonkit_core::launch::LaunchError;
use daemonkit_core::{notify, pidfile};

use crate::logs::Logs;
use crate::readiness::{self, ReadySocket, Sender};
use crate::reports::{self, Tail};
use crate::restart::{self, Backoff, Next};
use crate::signals::SignalPipe;
use crate::{command, control, guard, Config};

mod tree;
mod upgrade;

use upgrade::Upgrade;

/// The supervisor's state.
pub struct Supervisor {
    cfg: Config,
    logs: Logs,
    signals: SignalPipe,
    child: Option<i32>,
    stopping: bool,
    backoff: Backoff,
    started_at: Instant,
    /// When to start the command again, after it exited.
    restart_at: Option<Instant>,
    /// With `--wait-ready`: the socket the command says `READY=1` on.
    ready_socket: Option<ReadySocket>,
    /// Still waiting for the command's `READY=1` (or the end of the settle window).
    awaiting_ready: bool,
    /// When the settle window of the first command ends.
    settle_at: Option<Instant>,
    /// The last bytes of the command's stderr (since readiness, or from the start).
    tail: Tail,
    /// How many times the command was restarted, in all.
    restart_count: u32,
    /// Started with the first command; `None` before, or if it could not be started.
    guard: Option<guard::Guard>,
    guard_started: bool,
    /// The cgroup of our own we entered, if any: left and removed at exit.
    cgroup: Option<PathBuf>,
    /// With `--wait-ready` (Linux): where graceful restarts are asked for.
    control: Option<UnixListener>,
    /// The graceful restart in progress.
    upgrade: Option<Upgrade>,
    /// Old commands told to stop after a graceful restart: pid, and when to SIGKILL them.
    retiring: Vec<(i32, Instant)>,
}

/// Sets up what `cfg` asks for, starts the command and supervises it until the end.
pub fn supervise(cfg: Config, signals: SignalPipe) -> ! {
    let (mut sup, startup_error) = Supervisor::new(cfg, signals);
    if let Some(line) = startup_error {
        sup.report(&line);
        sup.finish(1);
    }
    sup.start();
    sup.run()
}

impl Supervisor {
    /// Opens the logs and binds the sockets `cfg` asks for; a failure is returned as the
    /// report line that says it.
    fn new(cfg: Config, signals: SignalPipe) -> (Supervisor, Option<String>) {
        let logs = Logs::open(cfg.stdout.as_deref(), cfg.stderr.as_deref(), cfg.credentials.as_ref());
        let mut startup_error = logs.as_ref().err().map(|e| reports::log_failure(e));
        let mut logs = logs.unwrap_or_default();
        let settle = readiness::settle_window(cfg.ready_fd.is_some(), cfg.wait_ready, cfg.settle);
        let awaiting = cfg.wait_ready || !settle.is_zero();
        let mut ready_socket = None;
        // Under systemd the command gets a private NOTIFY_SOCKET too: a program that speaks the
        // protocol (daemonize() does) then stays in place under us instead of forking away.
        if (awaiting || cfg.notify) && startup_error.is_none() {
            // Watch the command's stderr even without a log file, to show it if it fails to start.
            if awaiting && cfg.stderr.is_none() {
                if let Err(e) = logs.watch_stderr() {
                    startup_error = Some(format!("FAIL setup {} cannot make a pipe: {e}\n", e.raw_os_error().unwrap_or(5)));
                }
            }
            match ReadySocket::bind() {
                Ok(socket) => ready_socket = Some(socket),
                Err(e) => startup_error = Some(format!("FAIL setup {} cannot bind the readiness socket: {e}\n", e.raw_os_error().unwrap_or(5))),
            }
        }
        let backoff = Backoff::new(&cfg);
        let wait_ready = cfg.wait_ready;
        let mut sup = Supervisor {
            cfg,
            logs,
            signals,
            child: None,
            stopping: false,
            backoff,
            started_at: Instant::now(),
            restart_at: None,
            ready_socket,
            awaiting_ready: awaiting,
            settle_at: None,
            tail: Tail::default(),
            restart_count: 0,
            guard: None,
            guard_started: false,
            cgroup: None,
            control: None,
            upgrade: None,
            retiring: Vec::new(),
        };
        if wait_ready {
            match control::bind() {
                Ok(control) => sup.control = control,
                // Another process may hold the (predictable) name already: graceful restarts are then
                // off, and said so; a client checks the listener's pid, so it refuses an impostor.
                Err(e) => sup.log_line(&format!("graceful restarts are off: cannot bind the control socket: {e}")),
            }
        }
        (sup, startup_error)
    }

    /// Starts the first command and reports it started, unless its readiness is awaited.
    fn start(&mut self) {
        match self.spawn() {
            Ok(_) if self.awaiting_ready => {
                // READY comes from the command itself, or at the end of the settle window
                let settle = readiness::settle_window(self.cfg.ready_fd.is_some(), self.cfg.wait_ready, self.cfg.settle);
                if !settle.is_zero() {
                    self.settle_at = Some(Instant::now() + settle);
                }
            }
            Ok(pid) => {
                self.report(&reports::ready(pid));
                if self.cfg.notify {
                    self.notify_ready();
                }
            }
            Err(e) => {
                self.report(&reports::launch_failure(&e));
                self.finish(127);
            }
        }
    }

    fn spawn(&mut self) -> Result<i32, LaunchError> {
        if !self.guard_started {
            self.guard_started = true;
            self.start_guard();
        }
        let pid = self.command().spawn()?.pid;
        self.child = Some(pid);
        self.publish_command(pid);
        self.started_at = Instant::now();
        if self.guard.as_ref().is_some_and(|g| !g.watch(pid)) {
            self.guard_lost();
        }
        Ok(pid)
    }

    fn command(&self) -> daemonkit_core::launch::Command {
        command::build(&self.cfg, &self.logs, self.ready_socket.as_ref().map(ReadySocket::name))
    }

    /// Tells the launcher how the start went (`READY <pid>` / `FAIL ...`); without a launcher
    /// (`daemonkit run`), a failure is said on stderr in plain words.
    fn report(&mut self, line: &str) {
        reports::tell(self.cfg.ready_fd.take(), &self.cfg.program, line);
    }

    /// Says `line` where the command's stderr goes (see [`Logs::say`]).
    fn log_line(&self, line: &str) {
        self.logs.say(line);
    }

    fn drain_logs(&mut self) {
        self.logs.drain(&mut self.tail);
    }

    /// Tells systemd (`--notify`) that we are ready, with our pid as the main one.
    fn notify_ready(&self) {
        let _ = notify::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    }

    /// The command said `READY=1`: tell the launcher (and systemd).
    fn command_ready(&mut self) {
        if !self.awaiting_ready || self.stopping {
            return;
        }
        self.awaiting_ready = false;
        self.tail.clear();
        if let Some(pid) = self.child {
            self.report(&reports::ready(pid));
        }
        if self.cfg.notify {
            self.notify_ready();
        }
    }

    /// Reads what the command sent on the readiness socket.
    fn read_ready_socket(&mut self) {
        let mut ready = false;
        let mut upgrade_ready = false;
        if let Some(socket) = &self.ready_socket {
            let mut buf = [0u8; 4096];
            while let Some((n, from)) = socket.recv(&mut buf) {
                match readiness::sender(from, self.child, self.upgrade.as_ref().map(|u| u.pid)) {
                    Sender::Upgrade => upgrade_ready |= readiness::says_ready(&buf[..n]),
                    Sender::Command => ready |= readiness::says_ready(&buf[..n]),
                    Sender::Stranger => {}
                }
            }
        }
        if ready {
            self.command_ready();
        }
        if upgrade_ready {
            self.upgrade_ready();
        }
    }

    /// Records a failure beside the pidfile (`PIDFILE.failed`, 0600, JSON) for `status`: the
    /// wait status, when, the restart count and the last lines of stderr. Replaced atomically;
    /// the next start removes it.
    fn record_failure(&mut self, status: i32) {
        self.drain_logs();
        let Some(path) = reports::failure_path(self.cfg.pidfile.as_deref()) else { return };
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let json = reports::failure_record(status, at, self.restart_count, &self.tail);
        if let Err(e) = reports::write_replacing(&path, json.as_bytes(), 0o600) {
            self.log_line(&format!("cannot record the failure in {}: {e}", path.display()));
        }
    }

    /// Publishes `pid` as the command's in `PIDFILE.command` (see [`reports::command_path`]).
    fn publish_command(&self, pid: i32) {
        if let Some(path) = reports::command_path(self.cfg.pidfile.as_deref()) {
            // A pid is no secret: 0644, so that `status` run by another user sees it too.
            if let Err(e) = reports::write_replacing(&path, format!("{pid}\n").as_bytes(), 0o644) {
                self.log_line(&format!("cannot publish the command's pid in {}: {e}", path.display()));
            }
        }
    }

    fn finish(&mut self, code: i32) -> ! {
        self.end_tree();
        self.drain_logs();
        self.leave_cgroup();
        let pidfile = self.cfg.pidfile.as_deref();
        for path in [reports::restarts_path(pidfile), reports::command_path(pidfile)].into_iter().flatten() {
            let _ = std::fs::remove_file(path);
        }
        if let (Some(path), Some(fd)) = (&self.cfg.pidfile, self.cfg.lock_fd) {
            let _ = pidfile::remove_if_same(path, fd);
        }
        std::process::exit(code)
    }

    /// Decides what to do after the command exited with `status`; returns the delay before
    /// the next start, or exits.
    fn after_exit(&mut self, status: i32) -> Duration {
        let code = reports::exit_code(status);
        let failed = code != 0;
        if self.awaiting_ready {
            if self.stopping {
                self.report(&reports::not_ready(code, "stopped before it was ready"));
                self.finish(0);
            }
            // Exited before it was ready: the launcher reports it, with the command's own words.
            // The record comes first, so that a `status` run as soon as the launcher returns
            // finds it (it also drains what the command wrote last into the tail).
            self.record_failure(status);
            self.report(&reports::not_ready(code, &self.tail.text()));
            self.finish(if failed { code } else { 1 });
        }
        if self.stopping {
            self.finish(0);
        }
        if !restart::wanted(self.cfg.restart, failed) {
            self.log_line(&format!("command exited with status {code}"));
            if failed {
                self.record_failure(status);
            }
            self.finish(code);
        }
        match self.backoff.next(Instant::now(), self.started_at.elapsed()) {
            Next::GiveUp(restarts) => {
                self.log_line(&format!("command exited with status {code}; {} restarts within {} ms, giving up", restarts, self.backoff.window().as_millis()));
                self.record_failure(status);
                self.finish(if failed { code } else { 1 });
            }
            Next::After(delay) => {
                self.log_line(&format!("command exited with status {code}; restarting in {} ms", delay.as_millis()));
                delay
            }
        }
    }

    /// The command exited with `status` (it and what it left behind are gone): what comes next.
    fn exited(&mut self, status: i32) {
        let delay = self.after_exit(status);
        self.restart_at = Some(Instant::now() + delay);
    }

    /// The main loop: waits for signals, output, readiness messages, requests and deadlines.
    fn run(&mut self) -> ! {
        loop {
            self.wait();
            self.drain_logs();
            self.read_ready_socket();
            self.accept_control();
            self.upgrade_deadlines(Instant::now());
            if self.settle_at.filter(|_| self.awaiting_ready).is_some_and(|at| Instant::now() >= at) && self.child.is_some() {
                // Stayed up through the settle window: that is a start.
                self.settle_at = None;
                self.command_ready();
            }
            if self.restart_at.is_some_and(|at| Instant::now() >= at) {
                self.restart_at = None;
                self.restart();
            }
            for sig in self.signals.pending() {
                self.on_signal(sig);
            }
        }
    }

    /// Polls everything we watch until something happens or the next deadline comes.
    fn wait(&mut self) {
        let mut fds = vec![libc::pollfd { fd: self.signals.fd(), events: libc::POLLIN, revents: 0 }];
        for pipe in self.logs.pipes() {
            fds.push(libc::pollfd { fd: pipe, events: libc::POLLIN, revents: 0 });
        }
        if let Some(socket) = &self.ready_socket {
            fds.push(libc::pollfd { fd: socket.fd(), events: libc::POLLIN, revents: 0 });
        }
        // No events asked: POLLERR comes when the guard, the pipe's only reader, is gone.
        if let Some(g) = &self.guard {
            fds.push(libc::pollfd { fd: g.pipe(), events: 0, revents: 0 });
        }
        if let Some(control) = &self.control {
            fds.push(libc::pollfd { fd: control.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        let settle_at = self.settle_at.filter(|_| self.awaiting_ready);
        let next = self
            .restart_at
            .into_iter()
            .chain(settle_at)
            .chain(self.upgrade.as_ref().map(|u| u.deadline))
            .chain(self.retiring.iter().map(|(_, at)| *at))
            .min();
        // Rounded up, so that a wake-up never comes just before the deadline.
        let timeout = next.map_or(-1, |t| t.saturating_duration_since(Instant::now()).as_millis() as i32 + 1);
        // SAFETY: `fds` is a valid array of fds.len() pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if let Some(g) = &self.guard {
            if fds.iter().any(|p| p.fd == g.pipe() && p.revents & (libc::POLLERR | libc::POLLHUP) != 0) {
                self.guard_lost();
            }
        }
    }

    /// Starts the command again after its backoff delay.
    fn restart(&mut self) {
        match self.spawn() {
            Ok(pid) => {
                self.restart_count += 1;
                // For `daemonkit list`: how often it was restarted, while it runs.
                if let Some(path) = reports::restarts_path(self.cfg.pidfile.as_deref()) {
                    let _ = reports::write_replacing(&path, format!("{}\n", self.restart_count).as_bytes(), 0o644);
                }
                self.log_line(&format!("restarted command (pid {pid})"))
            }
            Err(e) => {
                self.log_line(&format!("restarting {:?} failed: {e}", self.cfg.program));
                self.finish(127);
            }
        }
    }

    /// Acts on one signal that arrived.
    fn on_signal(&mut self, sig: libc::c_int) {
        if sig == libc::SIGCHLD {
            self.reap();
            return;
        }
        if sig == libc::SIGHUP && self.logs.has_files() {
            self.logs.reopen();
            if !self.cfg.forward_hup {
                return;
            }
        }
        if sig == libc::SIGUSR2 && self.control.is_some() {
            self.start_upgrade(None);
            return;
        }
        let ends = sig == libc::SIGTERM || sig == libc::SIGINT;
        if ends {
            self.stopping = true;
            if self.cfg.notify {
                let _ = notify::notify("STOPPING=1");
            }
            if self.child.is_none() {
                self.finish(0);
            }
            // A new copy half-way through a graceful restart ends too.
            if let Some(pid) = self.upgrade.as_ref().map(|u| u.pid) {
                // SAFETY: our own unreaped child.
                unsafe { libc::kill(pid, sig) };
            }
        }
        if let Some(pid) = self.child {
            // SAFETY: `pid` is our own unreaped child, so it cannot have been recycled.
            unsafe { libc::kill(pid, sig) };
            // A stopped command (SIGSTOP) would only act on the signal once continued.
            if ends {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
        }
    }

    /// Reaps the children that have exited and acts on what they were.
    fn reap(&mut self) {
        while let Some((pid, status)) = self.reap_one() {
            if self.retired(pid) || self.upgrade_exited(pid, status) {
                continue;
            }
            if Some(pid) == self.child {
                self.child = None;
                self.drain_logs();
                // What the command left behind ends with it, before a restart or our exit.
                self.end_tree();
                self.exited(status);
            }
        }
    }
}

#[cfg(test)]
mod tests;
