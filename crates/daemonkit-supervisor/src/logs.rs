//! The command's output: the pipes it writes into, the log files they are copied to (reopened
//! on SIGHUP, for `logrotate`), and the lines the supervisor itself writes there.

use std::os::fd::{IntoRawFd, RawFd};
use std::path::{Path, PathBuf};

use daemonkit_core::launch::{Credentials, Stdio};
use daemonkit_core::{logfile, stdio};

use crate::fd::{self, write_all};
use crate::reports::Tail;

/// Opens a log file safely (see `daemonkit_core::logfile`): as root, with `service`'s
/// credentials where that user could have prepared the path.
fn open_log(path: &Path, service: Option<&Credentials>) -> Result<RawFd, logfile::OpenError> {
    Ok(logfile::open_append(path, service)?.into_raw_fd())
}

/// A log stream: the pipe the command writes into and the file it lands in.
pub struct Log {
    /// `None` for output that is only watched (for a readiness failure), then dropped.
    path: Option<PathBuf>,
    /// The user the file is opened as, where that user could have prepared its path.
    service: Option<Credentials>,
    file: RawFd,
    out: logfile::Appender,
    pipe_read: RawFd,
    pipe_write: RawFd,
}

impl Log {
    /// Opens the log file at `path`; the error reads `"<errno> <path>: <why>"`.
    pub fn open(path: &Path, service: Option<&Credentials>) -> Result<Log, String> {
        let file = open_log(path, service).map_err(|e| format!("{} {}: {e}", e.errno() as i32, path.display()))?;
        let mut log = Log::with_file(Some(path.to_path_buf()), file).map_err(|e| format!("{} {}: {e}", e.raw_os_error().unwrap_or(5), path.display()))?;
        log.service = service.cloned();
        Ok(log)
    }

    /// Output that passes through us on its way to our own stderr (where it would have gone
    /// anyway), so that its tail can be shown if the command fails to start.
    pub fn pass_through_stderr() -> std::io::Result<Log> {
        // SAFETY: F_DUPFD_CLOEXEC on our own fd 2 returns a new descriptor or -1.
        let file = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
        if file < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Log::with_file(None, file)
    }

    fn with_file(path: Option<PathBuf>, file: RawFd) -> std::io::Result<Log> {
        let (r, w) = stdio::pipe_cloexec().map_err(std::io::Error::from)?;
        let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
        fd::set_nonblocking(r)?;
        Ok(Log { path, service: None, file, out: logfile::Appender::new(file), pipe_read: r, pipe_write: w })
    }

    /// Copies what is in the pipe now into the file, showing each chunk to `watch`.
    fn drain(&mut self, watch: &mut dyn FnMut(&[u8])) {
        let mut buf = [0u8; 65536];
        loop {
            let n = fd::read_now(self.pipe_read, &mut buf);
            if n == 0 {
                return;
            }
            watch(&buf[..n]);
            // Whole lines or none, and a notice of what a full disk cost once it has room again.
            self.out.write(&buf[..n]);
        }
    }

    /// Reopens the file at its path (after a rotation), keeping the descriptor number. A path
    /// that is refused now keeps the old file, which says why.
    fn reopen(&mut self) {
        self.drain(&mut |_| {});
        let Some(path) = &self.path else { return };
        match open_log(path, self.service.as_ref()) {
            Ok(fresh) => {
                let _ = stdio::dup_onto(fresh, self.file);
                let _ = stdio::set_cloexec(self.file, true);
                let _ = stdio::close(fresh);
                self.out.reset();
            }
            Err(e) => {
                let msg = format!("daemonkit-supervise: cannot reopen {}: {e}; still writing here\n", path.display());
                self.out.write(msg.as_bytes());
            }
        }
    }
}

/// The command's two streams. Without a log, a stream goes straight to ours.
#[derive(Default)]
pub struct Logs {
    stdout: Option<Log>,
    stderr: Option<Log>,
    /// `--stderr` names the same file as `--stdout`: both streams go into the stdout log.
    merged: bool,
}

impl Logs {
    /// Opens the logs `--stdout` and `--stderr` name; the error reads `"<errno> <path>: <why>"`.
    pub fn open(stdout: Option<&Path>, stderr: Option<&Path>, service: Option<&Credentials>) -> Result<Logs, String> {
        let open = |p: Option<&Path>| p.map(|p| Log::open(p, service)).transpose();
        let merged = stderr.is_some() && stderr == stdout;
        let out = open(stdout)?;
        let err = if stderr.is_some() && !merged { open(stderr)? } else { None };
        Ok(Logs { stdout: out, stderr: err, merged })
    }

    /// Passes the command's stderr (which has no log) through us, to watch it.
    pub fn watch_stderr(&mut self) -> std::io::Result<()> {
        self.stderr = Some(Log::pass_through_stderr()?);
        Ok(())
    }

    /// Where the command's stdout goes.
    pub fn command_stdout(&self) -> Stdio {
        self.stdout.as_ref().map_or(Stdio::Fd(1), |l| Stdio::Fd(l.pipe_write))
    }

    /// Where the command's stderr goes.
    pub fn command_stderr(&self) -> Stdio {
        match (&self.stderr, &self.stdout) {
            (Some(l), _) => Stdio::Fd(l.pipe_write),
            (None, Some(l)) if self.merged => Stdio::Fd(l.pipe_write),
            _ => Stdio::Fd(2),
        }
    }

    /// The pipes to poll.
    pub fn pipes(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.stdout.iter().chain(self.stderr.iter()).map(|l| l.pipe_read)
    }

    /// Copies what the command wrote into the files; what carries its stderr is kept in `tail`.
    pub fn drain(&mut self, tail: &mut Tail) {
        let mut keep = |chunk: &[u8]| tail.push(chunk);
        // The stream that carries the command's stderr is watched; the other one just flows.
        match (&mut self.stderr, &mut self.stdout) {
            (Some(err), out) => {
                err.drain(&mut keep);
                if let Some(out) = out {
                    out.drain(&mut |_| {});
                }
            }
            (None, Some(out)) => out.drain(&mut keep),
            (None, None) => {}
        }
    }

    /// Whether any stream is written to a file (then SIGHUP reopens them).
    pub fn has_files(&self) -> bool {
        self.stdout.iter().chain(self.stderr.iter()).any(|l| l.path.is_some())
    }

    /// Reopens the files at their paths (after a rotation).
    pub fn reopen(&mut self) {
        if let Some(l) = self.stdout.as_mut() {
            l.reopen();
        }
        if let Some(l) = self.stderr.as_mut() {
            l.reopen();
        }
    }

    /// Says `line` where the command's stderr goes: its stderr log (also when that is the same
    /// file as its stdout log), else our own stderr; never into a stdout-only log.
    pub fn say(&self, line: &str) {
        let fd = match (&self.stderr, &self.stdout) {
            (Some(err), _) => err.file,
            (None, Some(out)) if self.merged => out.file,
            _ => 2,
        };
        write_all(fd, format!("daemonkit-supervise: {line}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::tests::test_dir;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn pipe_of(stdio: Stdio) -> RawFd {
        match stdio {
            Stdio::Fd(fd) => fd,
            Stdio::Null => panic!("not a pipe"),
        }
    }

    #[test]
    fn output_is_copied_into_the_file_as_it_comes() {
        let dir = test_dir("logs-copy");
        let out = dir.join("out.log");
        let mut logs = Logs::open(Some(&out), None, None).unwrap();
        assert_eq!(logs.command_stderr(), Stdio::Fd(2), "stderr has no log: it is not ours to take");
        let pipe = pipe_of(logs.command_stdout());
        let mut tail = Tail::default();
        write_all(pipe, b"one\ntw");
        logs.drain(&mut tail);
        assert_eq!(read(&out), "one\ntw", "a partial line is not held back");
        write_all(pipe, b"o\n");
        logs.drain(&mut tail);
        assert_eq!(read(&out), "one\ntwo\n");
        assert_eq!(tail.text(), "one\ntwo\n", "with no stderr log, stdout is what is watched");
        assert!(logs.has_files());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_stderr_stream_is_watched() {
        let dir = test_dir("logs-watch");
        let (out, err) = (dir.join("out.log"), dir.join("err.log"));
        let mut logs = Logs::open(Some(&out), Some(&err), None).unwrap();
        let mut tail = Tail::default();
        write_all(pipe_of(logs.command_stdout()), b"to stdout\n");
        write_all(pipe_of(logs.command_stderr()), b"to stderr\n");
        logs.drain(&mut tail);
        assert_eq!((read(&out), read(&err)), ("to stdout\n".into(), "to stderr\n".into()));
        assert_eq!(tail.text(), "to stderr\n");
        logs.say("restarting");
        assert_eq!(read(&err), "to stderr\ndaemonkit-supervise: restarting\n");
        assert_eq!(read(&out), "to stdout\n", "our lines never go into a stdout-only log");
        assert_eq!(logs.pipes().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_file_for_both_streams() {
        let dir = test_dir("logs-merged");
        let both = dir.join("app.log");
        let mut logs = Logs::open(Some(&both), Some(&both), None).unwrap();
        assert_eq!(logs.command_stdout(), logs.command_stderr());
        assert_eq!(logs.pipes().count(), 1);
        write_all(pipe_of(logs.command_stderr()), b"oops\n");
        logs.drain(&mut Tail::default());
        logs.say("command exited with status 1");
        assert_eq!(read(&both), "oops\ndaemonkit-supervise: command exited with status 1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reopen_follows_a_rotation_and_keeps_a_refused_file() {
        let dir = test_dir("logs-reopen");
        let out = dir.join("out.log");
        let mut logs = Logs::open(Some(&out), None, None).unwrap();
        let pipe = pipe_of(logs.command_stdout());
        write_all(pipe, b"before\n");
        std::fs::rename(&out, dir.join("out.log.1")).unwrap();
        logs.reopen(); // drains into the old file first
        write_all(pipe, b"after\n");
        logs.drain(&mut Tail::default());
        assert_eq!(read(&dir.join("out.log.1")), "before\n");
        assert_eq!(read(&out), "after\n");

        let rotated = dir.join("out.log.2");
        std::fs::rename(&out, &rotated).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), &out).unwrap(); // refused: never through a symlink
        logs.reopen();
        let text = read(&rotated);
        assert!(text.starts_with("after\ndaemonkit-supervise: cannot reopen "), "{text}");
        assert!(text.ends_with("; still writing here\n"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unopenable_log_says_errno_and_path() {
        let err = Logs::open(Some(Path::new("/nonexistent-daemonkit-dir/out.log")), None, None).err().unwrap();
        assert!(err.starts_with("2 /nonexistent-daemonkit-dir/out.log: "), "{err}");
    }
}
