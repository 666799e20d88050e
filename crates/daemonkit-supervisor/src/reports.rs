//! What the supervisor tells others: the launcher (`READY <pid>`, `NOTREADY <status> <stderr as
//! JSON>`, `FAIL <stage> <errno> <message>`, one line on the `--ready-fd` pipe), and the files
//! beside the pidfile: `PIDFILE.failed` (the last failure, JSON) and `PIDFILE.restarts`.

use std::ffi::OsStr;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use daemonkit_core::launch::LaunchError;
use daemonkit_core::stdio;
pub use daemonkit_core::supervise::{json_string, TAIL_LIMIT};
use daemonkit_core::supervise::Report;

use crate::fd::write_all;

/// How many of its last lines a recorded failure keeps.
pub const FAILURE_LINES: usize = 20;

/// The last [`TAIL_LIMIT`] bytes of the command's stderr.
#[derive(Default)]
pub struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    /// Adds the next piece of the stream, forgetting what falls out of the limit.
    pub fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        let excess = self.bytes.len().saturating_sub(TAIL_LIMIT);
        self.bytes.drain(..excess);
    }

    /// Forgets everything (the command became ready, or another one starts).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// The tail as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Its last `n` lines, without the final newline.
    pub fn last_lines(&self, n: usize) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// The status a wait status stands for: the exit code, or 128 + the signal's number.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// `READY <pid>`: the command has started (exec'd, said `READY=1`, or settled).
pub fn ready(pid: i32) -> String {
    Report::Ready { pid }.encode()
}

/// `NOTREADY <status> <text as JSON>`: the command exited with `code` before it was ready.
pub fn not_ready(code: i32, text: &str) -> String {
    Report::NotReady { status: code, stderr: text.to_string() }.encode()
}

/// `FAIL <stage> <errno> <message>`: the command could not be started.
pub fn launch_failure(e: &LaunchError) -> String {
    Report::launch_failed(e).encode()
}

/// `FAIL logs ...` from a log-opening error `"<errno> <path>: <why>"` (see `logs::Log::open`).
pub fn log_failure(e: &str) -> String {
    let (errno, what) = e.split_once(' ').unwrap_or(("5", e));
    let errno = errno.parse().unwrap_or(libc::EIO);
    Report::Fail { stage: "logs".into(), errno, message: format!("cannot open the log file {what}") }.encode()
}

/// Tells the launcher how the start went (`line`, on `ready_fd`, which is closed then);
/// without a launcher (`daemonkit run`), a failure is said on stderr in plain words.
pub fn tell(ready_fd: Option<RawFd>, program: &OsStr, line: &str) {
    match ready_fd {
        Some(fd) => {
            write_all(fd, line.as_bytes());
            let _ = stdio::close(fd);
        }
        None => {
            if let Some(words) = plain_words(program, line) {
                eprintln!("{words}");
            }
        }
    }
}

/// A report line in plain words, for a terminal; `None` for `READY`, which goes unsaid.
pub fn plain_words(program: &OsStr, line: &str) -> Option<String> {
    match Report::decode(line.trim_end_matches('\n'))? {
        Report::Fail { message, .. } => Some(format!("daemonkit-supervise: cannot start {:?}: {message}", program)),
        Report::NotReady { status, .. } => Some(format!("daemonkit-supervise: {:?} exited with status {status} before it was ready", program)),
        Report::Ready { .. } => None,
    }
}

/// A file beside the pidfile: `PIDFILE<suffix>`.
pub fn side_path(pidfile: Option<&Path>, suffix: &str) -> Option<PathBuf> {
    let mut name = pidfile?.as_os_str().to_owned();
    name.push(suffix);
    Some(PathBuf::from(name))
}

/// Where a failure of the daemon of `pidfile` is recorded: `PIDFILE.failed`.
pub fn failure_path(pidfile: Option<&Path>) -> Option<PathBuf> {
    side_path(pidfile, ".failed")
}

/// Where the restart count of the running daemon is kept, for `daemonkit list`: `PIDFILE.restarts`.
pub fn restarts_path(pidfile: Option<&Path>) -> Option<PathBuf> {
    side_path(pidfile, ".restarts")
}

/// Where the pid of the command that runs now is published, for `status` and `list`:
/// `PIDFILE.command`. Among the supervisor's children, orphans of an earlier command can lead
/// process groups of their own too; only the supervisor knows which child is the command.
pub fn command_path(pidfile: Option<&Path>) -> Option<PathBuf> {
    side_path(pidfile, ".command")
}

/// Removes the failure record, the restart count and the command pid of the last start.
pub fn remove_side_files(pidfile: &Path) {
    for path in [failure_path(Some(pidfile)), restarts_path(Some(pidfile)), command_path(Some(pidfile))].into_iter().flatten() {
        let _ = std::fs::remove_file(path);
    }
}

/// The contents of `PIDFILE.failed` for the wait status `status` at `at` (ms since the epoch):
/// `{"status":N|null,"signal":N|null,"at":MS,"restarts":N,"stderr":"last lines"}`.
pub fn failure_record(status: i32, at: u128, restarts: u32, tail: &Tail) -> String {
    let (exit, signal) = if libc::WIFEXITED(status) { (libc::WEXITSTATUS(status).to_string(), "null".to_string()) } else { ("null".to_string(), libc::WTERMSIG(status).to_string()) };
    let last = tail.last_lines(FAILURE_LINES);
    format!("{{\"status\":{exit},\"signal\":{signal},\"at\":{at},\"restarts\":{},\"stderr\":{}}}\n", restarts, json_string(&last))
}

/// Writes `data` to a fresh file of `mode` beside `path` (never through a symlink) and renames
/// it over `path`.
pub fn write_replacing(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&tmp)?;
    let written = f.write_all(data).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::tests::{pipe, test_dir};
    use std::os::unix::process::ExitStatusExt;

    fn wait_status(script: &str) -> i32 {
        std::process::Command::new("/bin/sh").args(["-c", script]).status().unwrap().into_raw()
    }

    #[test]
    fn the_tail_keeps_the_last_8_kib() {
        let mut tail = Tail::default();
        tail.push(&[b'a'; 5000]);
        tail.push(&[b'b'; 5000]);
        let text = tail.text();
        assert_eq!(text.len(), TAIL_LIMIT);
        assert_eq!(text, format!("{}{}", "a".repeat(TAIL_LIMIT - 5000), "b".repeat(5000)));
        tail.push(&[b'c'; 10000]);
        assert_eq!(tail.text(), "c".repeat(TAIL_LIMIT));
        tail.clear();
        assert_eq!(tail.text(), "");
    }

    #[test]
    fn the_tail_gives_its_last_lines() {
        let mut tail = Tail::default();
        for i in 0..25 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        tail.push(b"cut sh");
        let expected: Vec<String> = (6..25).map(|i| format!("line {i}")).chain(["cut sh".to_string()]).collect();
        assert_eq!(tail.last_lines(FAILURE_LINES), expected.join("\n"));
        let mut short = Tail::default();
        short.push(b"one\ntwo\n");
        assert_eq!(short.last_lines(FAILURE_LINES), "one\ntwo");
        short.push(&[0xff, b'\n']);
        assert_eq!(short.last_lines(1), "\u{fffd}");
    }

    #[test]
    fn exit_codes_of_real_wait_statuses() {
        assert_eq!(exit_code(wait_status("exit 0")), 0);
        assert_eq!(exit_code(wait_status("exit 3")), 3);
        assert_eq!(exit_code(wait_status("kill -9 $$")), 128 + libc::SIGKILL);
        assert_eq!(exit_code(wait_status("kill -TERM $$")), 128 + libc::SIGTERM);
    }

    #[test]
    fn json_strings_stay_ascii_and_valid() {
        assert_eq!(json_string(""), r#""""#);
        assert_eq!(json_string(r#"say "hi" \ bye"#), r#""say \"hi\" \\ bye""#);
        assert_eq!(json_string("a\nb\tc\r\u{1}\u{7f}"), r#""a\nb\u0009c\u000d\u0001\u007f""#);
        assert_eq!(json_string("é\u{2028}😀"), r#""\u00e9\u2028\ud83d\ude00""#);
    }

    #[test]
    fn report_lines() {
        assert_eq!(ready(42), "READY 42\n");
        assert_eq!(not_ready(3, "boom\n"), "NOTREADY 3 \"boom\\n\"\n");
        assert_eq!(launch_failure(&LaunchError::NotFound("nope".into())), "FAIL exec 2 command not found on PATH: nope\n");
        assert_eq!(launch_failure(&LaunchError::NoReport), "FAIL launch 5 the intermediate process exited without a report\n");
        assert_eq!(log_failure("13 /var/log/a.log: Permission denied"), "FAIL logs 13 cannot open the log file /var/log/a.log: Permission denied\n");
        assert_eq!(log_failure("odd"), "FAIL logs 5 cannot open the log file odd\n");
    }

    #[test]
    fn plain_words_for_a_terminal() {
        let program = OsStr::new("app");
        assert_eq!(plain_words(program, "FAIL exec 2 command not found on PATH: app\n").unwrap(), "daemonkit-supervise: cannot start \"app\": command not found on PATH: app");
        assert_eq!(plain_words(program, "NOTREADY 3 \"boom\"\n").unwrap(), "daemonkit-supervise: \"app\" exited with status 3 before it was ready");
        assert_eq!(plain_words(program, "READY 42\n"), None);
    }

    #[test]
    fn tell_writes_one_line_and_closes_the_pipe() {
        let (r, w) = pipe();
        tell(Some(w), OsStr::new("app"), "READY 42\n");
        let mut got = String::new();
        use std::io::Read;
        // SAFETY: `r` is ours, owned by the File from here on.
        let mut reader = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(r) };
        reader.read_to_string(&mut got).unwrap(); // ends: the write end was closed
        assert_eq!(got, "READY 42\n");
    }

    #[test]
    fn side_paths() {
        let pidfile = Path::new("/run/app.pid");
        assert_eq!(failure_path(Some(pidfile)).unwrap(), Path::new("/run/app.pid.failed"));
        assert_eq!(restarts_path(Some(pidfile)).unwrap(), Path::new("/run/app.pid.restarts"));
        assert_eq!(command_path(Some(pidfile)).unwrap(), Path::new("/run/app.pid.command"));
        assert_eq!(failure_path(None), None);
    }

    #[test]
    fn failure_records() {
        let mut tail = Tail::default();
        tail.push(b"starting\nError: \"port\" in use\n");
        assert_eq!(
            failure_record(wait_status("exit 3"), 1700000000123, 2, &tail),
            "{\"status\":3,\"signal\":null,\"at\":1700000000123,\"restarts\":2,\"stderr\":\"starting\\nError: \\\"port\\\" in use\"}\n"
        );
        assert_eq!(failure_record(wait_status("kill -9 $$"), 5, 0, &Tail::default()), "{\"status\":null,\"signal\":9,\"at\":5,\"restarts\":0,\"stderr\":\"\"}\n");
    }

    #[test]
    fn write_replacing_replaces_a_symlink_not_its_target() {
        use std::os::unix::fs::PermissionsExt;
        let dir = test_dir("replacing");
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        let path = dir.join("app.pid.failed");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write_replacing(&path, b"{}\n", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        write_replacing(&path, b"again\n", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "again\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "no temporary file left");
        assert!(write_replacing(&dir.join("missing/x"), b"", 0o600).is_err());

        let pidfile = dir.join("app.pid");
        std::fs::write(restarts_path(Some(&pidfile)).unwrap(), "1\n").unwrap();
        std::fs::write(command_path(Some(&pidfile)).unwrap(), "42\n").unwrap();
        remove_side_files(&pidfile);
        assert!(!path.exists() && !restarts_path(Some(&pidfile)).unwrap().exists());
        assert!(!command_path(Some(&pidfile)).unwrap().exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
