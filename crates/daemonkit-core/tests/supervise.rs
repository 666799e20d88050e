//! The supervisor's command line and report lines: round trips and refusals.

use std::ffi::OsString;
use std::time::Duration;

use daemonkit_core::launch::{LaunchError, Stage};
use daemonkit_core::supervise::*;
use nix::errno::Errno;

fn os(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

fn full() -> Config {
    Config {
        program: "/bin/sleep".into(),
        args: os(&["10", "--", "-x"]),
        ready_fd: Some(3),
        lock_fd: Some(4),
        pidfile: Some("/run/a.pid".into()),
        stdout: Some("/var/log/a.log".into()),
        stderr: Some("/var/log/a.err".into()),
        restart: Restart::OnFailure,
        backoff_min: Duration::from_millis(250),
        backoff_max: Duration::from_millis(9_000),
        burst: 7,
        burst_window: Duration::from_millis(12_345),
        user: Some("nobody".into()),
        group: Some("1234".into()),
        credentials: None,
        chroot: Some("/srv/jail".into()),
        cwd: Some("/tmp".into()),
        umask: Some(0o027),
        notify: true,
        forward_hup: true,
        new_session: true,
        wait_ready: true,
        listen: vec![(5, "http".into()), (6, "admin".into())],
        stop_timeout: Duration::from_millis(1_500),
        upgrade_timeout: Duration::from_millis(4_000),
        settle: Duration::from_millis(700),
    }
}

#[test]
fn argv_round_trip() {
    let minimal = Config { program: "prog".into(), ..Config::default() };
    let upgrade_only = Config { program: "prog".into(), upgrade_timeout: Duration::from_millis(5), ..Config::default() };
    for cfg in [full(), minimal, upgrade_only, Config { restart: Restart::Always, wait_ready: false, ..full() }] {
        assert_eq!(parse(cfg.to_argv()).unwrap(), cfg);
    }
}

#[test]
fn argv_is_what_the_launcher_always_passed() {
    let cfg = Config { program: "node".into(), args: os(&["app.js"]), ready_fd: Some(3), cwd: Some("/".into()), umask: Some(0o22), settle: Duration::from_secs(1), ..Config::default() };
    let expected = "--ready-fd 3 --restart never --backoff-min 100 --backoff-max 30000 --burst 5 --burst-window 60000 --cwd / --umask 22 --stop-timeout 10000 --settle 1000 -- node app.js";
    assert_eq!(cfg.to_argv(), os(&expected.split(' ').collect::<Vec<_>>()));
}

#[test]
fn parse_args_skips_argv0_and_accepts_no() {
    let cfg = parse_args(os(&[SUPERVISOR_NAME, "--restart", "no", "--", "x"])).unwrap();
    assert_eq!(cfg.restart, Restart::Never);
    assert_eq!(cfg.program, OsString::from("x"));
    assert!(cfg.credentials.is_none());
}

#[test]
fn bad_arguments() {
    let err = |words: &[&str]| parse(os(words)).unwrap_err().message;
    assert_eq!(err(&[]), "missing -- PROGRAM");
    assert_eq!(err(&["--"]), "missing PROGRAM after --");
    assert_eq!(err(&["--burst"]), "--burst needs a value");
    assert_eq!(err(&["--burst", "x", "--", "p"]), "--burst: not a number: x");
    assert_eq!(err(&["--ready-fd", "-1", "--", "p"]), "--ready-fd: not a descriptor: -1");
    assert_eq!(err(&["--restart", "sometimes", "--", "p"]), "--restart: unknown policy sometimes");
    assert_eq!(err(&["--umask", "9", "--", "p"]), "--umask: not octal: 9");
    assert_eq!(err(&["--listen-fd", "5:a:b", "--", "p"]), "--listen-fd: bad socket name \"a:b\"");
    assert_eq!(err(&["--frobnicate", "1", "--", "p"]), "unknown option --frobnicate");
    assert!(parse(os(&["--", "p"])).is_ok());
    assert!(parse(os(&["--burst", "1"])).unwrap_err().usage);
}

#[test]
fn unknown_user_is_not_a_usage_error() {
    let err = parse_args(os(&["s", "--user", "no-such-user-daemonkit", "--", "p"])).unwrap_err();
    assert!(!err.usage);
}

#[test]
fn report_round_trip() {
    let reports = [
        Report::Ready { pid: 4242 },
        Report::NotReady { status: 1, stderr: String::new() },
        Report::NotReady { status: 137, stderr: "Error: \"x\"\n\tat \\ line\u{2028}é😀\u{7f}\u{0}".into() },
        Report::Fail { stage: "chdir".into(), errno: 2, message: "chdir failed: No such file or directory (2)".into() },
        Report::Fail { stage: "config".into(), errno: 22, message: String::new() },
    ];
    for report in reports {
        let line = report.encode();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
        assert!(line.is_ascii() || matches!(report, Report::Fail { .. }), "{line:?}");
        assert_eq!(Report::decode(line.trim_end_matches('\n')), Some(report));
    }
}

#[test]
fn report_lines() {
    assert_eq!(Report::Ready { pid: 7 }.encode(), "READY 7\n");
    assert_eq!(Report::NotReady { status: 3, stderr: "a\nb".into() }.encode(), "NOTREADY 3 \"a\\nb\"\n");
    assert_eq!(Report::Fail { stage: "logs".into(), errno: 13, message: "cannot open".into() }.encode(), "FAIL logs 13 cannot open\n");
    let e = LaunchError::Child { stage: Stage::SecondFork, errno: Errno::EAGAIN };
    assert_eq!(Report::launch_failed(&e), Report::Fail { stage: "second-fork".into(), errno: 11, message: e.to_string() });
    let e = LaunchError::NotFound("x".into());
    assert!(matches!(Report::launch_failed(&e), Report::Fail { errno: 2, .. }));
}

#[test]
fn bad_reports() {
    for line in [
        "",
        "READY",
        "READY ",
        "READY 12x",
        "READY -1",
        "READY 1 2",
        "ready 1",
        "NOTREADY 1",
        "NOTREADY x \"\"",
        "NOTREADY 1 \"unterminated",
        "NOTREADY 1 \"bad \\q escape\"",
        "NOTREADY 1 \"\\u12\"",
        "NOTREADY 1 \"a\" trailing\"",
        "FAIL exec 2",
        "FAIL exec x msg",
        "FAIL  2 msg",
        "OK 12",
    ] {
        assert_eq!(Report::decode(line), None, "{line:?}");
    }
    assert_eq!(Report::decode("NOTREADY 1 \"\\ud800\""), Some(Report::NotReady { status: 1, stderr: "\u{fffd}".into() }));
    assert_eq!(Report::decode("FAIL exec 2 "), Some(Report::Fail { stage: "exec".into(), errno: 2, message: String::new() }));
}

#[test]
fn errno_names_and_messages() {
    assert_eq!(errno_name(libc::ENOENT).as_deref(), Some("ENOENT"));
    assert_eq!(errno_name(libc::EACCES).as_deref(), Some("EACCES"));
    assert_eq!(errno_name(0), None);
    assert_eq!(errno_name(100_000), None);
    assert_eq!(errno_message(libc::ENOENT), "No such file or directory");
    assert_eq!(errno_message(libc::EACCES), "Permission denied");
}
