/*
 * The help texts of the `daemonkit` command.
 */

import { durationText, supervisorDefaults, type SupervisorDefaults } from './defaults'

let cachedHelp: string | undefined

/** The whole help text, with the supervisor's own defaults (read from the binding when first asked). */
export function help(): string {
  cachedHelp ??= helpText(supervisorDefaults())
  return cachedHelp
}

function helpText(d: SupervisorDefaults): string {
  return `Usage: daemonkit <command> [options] [-- PROGRAM [ARGS...]]

Run any program as a correct Unix daemon: double fork, new session, no terminal, stdio on
/dev/null or log files, a locked pidfile, readiness, and safe stop.

Commands:
  start   [options] -- PROGRAM [ARGS...]  start PROGRAM as a daemon; succeeds once it has said
                                          READY=1 or stayed up for --settle (default ${durationText(d.startSettle)})
  run     [options] -- PROGRAM [ARGS...]  run PROGRAM under the supervisor in the foreground, for
                                          systemd, containers and other supervisors (this
                                          process becomes the supervisor: execve, same pid)
  stop    -p FILE [-t TIME] [-s SIG]      stop the daemon: SIG, wait, SIGKILL after TIME
  restart NAME | -p FILE [-- PROGRAM...]  stop it if it runs, then start it again: as it was
                                          started last time, or with the PROGRAM given
  restart --graceful NAME | -p FILE       start a new copy beside the running daemon, with the
                                          same sockets; stop the old one once the new one is
                                          ready; if the new one fails, the old one runs on
                                          (exit 1 with its message). Needs --wait-ready for a
                                          supervised PROGRAM; daemonize() apps take it as is
  reload  NAME | -p FILE                  send SIGHUP (reopen logs, reload configuration)
  status  NAME | -p FILE                  0 running, 1 dead (stale pidfile) or failed, 3 not running,
                                          4 unknown
  signal  SIG NAME | SIG -p FILE          send SIG if, and only if, the daemon holds the pidfile lock
  reset   NAME | -p FILE                  forget a failure, so status says "not running" again
  service install NAME [--print] [options] -- PROGRAM [ARGS...]
                                          write a boot unit (systemd; launchd on macOS) that runs
                                          PROGRAM with daemonkit run; --print only shows it
  service uninstall NAME                  remove it
  list    [--json]                        every named daemon: state, pids, uptime, RSS, CPU, ports
  logs    NAME [-n N] [-f]                the last N lines of its log (default 20); -f follows it,
                                          across log rotation
  help    [COMMAND]                       this help, or a command's own (also COMMAND --help)
  completion bash|zsh                     print a shell completion script

A daemon is named by --name NAME (or, after the command, by NAME): its pidfile, state and log
are then in daemonkit's registry ($DAEMONKIT_HOME/run and /log if set; as root /run/daemonkit
and /var/log/daemonkit; else $XDG_RUNTIME_DIR/daemonkit and ~/.local/state/daemonkit/log).

Options:
      --name NAME           the daemon's name in the registry (letters, digits, _ . @ -)
  -p, --pidfile FILE        the pidfile (locked by the daemon's supervisor for its whole life)
  -C, --cwd DIR             working directory of PROGRAM (default: the current directory)
      --umask OCTAL         umask of PROGRAM (default 022)
  -o, --stdout FILE         append PROGRAM's stdout to FILE (created 0640; default /dev/null)
  -e, --stderr FILE         append PROGRAM's stderr to FILE (created 0640; default /dev/null)
  -l, --log FILE            both of the above; SIGHUP reopens the files (for logrotate)
      --forward-hup         with log files, pass SIGHUP on to PROGRAM too (by default the
                            supervisor keeps it: most programs die of SIGHUP)
  -E, --env NAME=VALUE      set an environment variable (repeatable)
  -u, --user USER           run PROGRAM as USER (name or uid; groups from the group database)
  -g, --group GROUP         run PROGRAM with primary group GROUP
      --chroot DIR          chroot into DIR before running PROGRAM (cwd is inside it)
  -r, --restart POLICY      never (default), on-failure or always
      --restart-delay TIME  first restart delay, doubled each time (default ${durationText(d.restartDelay)})
      --restart-delay-max TIME  cap on the delay (default ${durationText(d.restartDelayMax)})
      --restart-burst N     give up after N restarts within the window (default ${d.restartBurst})
      --restart-window TIME the burst window (default ${durationText(d.restartWindow)})
      --no-supervise        start PROGRAM itself as the daemon, without the supervisor
                            (no pidfile, no restart, no log reopening)
      --detach auto|yes|no  start: auto (default) stays in the foreground, like run, under
                            systemd ($NOTIFY_SOCKET set to a listening socket)
      --wait-ready          start returns only once PROGRAM says READY=1 on $NOTIFY_SOCKET
                            (systemd's protocol; Node programs using daemonize() do it
                            themselves); if it exits first, start prints its stderr, exits 1
      --settle TIME         start: PROGRAM must stay up this long (or say READY=1 first);
                            if it exits sooner, start prints its status and stderr, exits 1
                            (default ${durationText(d.startSettle)}; 0 returns as soon as it has exec'd)
      --ready-timeout TIME  how long start waits for PROGRAM (default 30s)
      --stop-timeout TIME   in a graceful restart, how long the old PROGRAM has to end after
                            SIGTERM before SIGKILL (default ${durationText(d.stopTimeout)})
      --listen [NAME=]ADDR  a listening socket the supervisor binds and holds, handed to
                            PROGRAM (and every restart of it) at fd 3, 4, … with LISTEN_FDS,
                            LISTEN_PID, LISTEN_FDNAMES; ADDR is IPV4:PORT, [IPV6]:PORT or
                            unix:PATH (repeatable)
      --notify auto|yes|no  tell systemd READY=1 and STOPPING=1 over $NOTIFY_SOCKET
                            (auto, the default: when it is set)
  -t, --timeout TIME        stop: wait this long before SIGKILL (default 10s)
  -s, --signal SIG          stop: the first signal (default SIGTERM)
      --kill-signal SIG     stop: the escalation signal (default SIGKILL)
      --kill-timeout TIME   stop: wait this long after it (default 5s)
      --json                print one JSON object instead of a line of text
  -q, --quiet               print nothing on success (errors still go to stderr)
      --print               service install: print the unit instead of writing it
      --launchd             service install: a launchd plist (the default on macOS)
  -n, --lines N             logs: how many lines (default 20)
  -f, --follow              logs: keep printing new lines, across log rotation
  -h, --help                show this help
  -V, --version             show the version

TIME is a number with a unit: 500ms, 5s, 2m, 1h; a bare number means seconds (as with
start-stop-daemon and systemd). SIG is a name in any case, with or without SIG (TERM, sigusr1),
or a number.

The supervisor forwards SIGTERM, SIGINT, SIGQUIT, SIGUSR1 and SIGUSR2 to PROGRAM. SIGHUP
reopens the log files; without log files (or with --forward-hup) it is forwarded too. When
PROGRAM has exited, the processes it started are ended too (SIGTERM, SIGKILL 3 s later), also
if the supervisor is killed. With
systemd (Type=notify) it sends READY=1 and STOPPING=1. Exit codes follow LSB init scripts: 0 success, 1 failure, 2 usage, 3 not running
(status), 4 insufficient privilege or unknown, 7 not running (signal).

Examples:
  daemonkit start -p /run/api.pid -l /var/log/api.log -u www-data -- node server.js
  daemonkit start -p /tmp/worker.pid -r on-failure -- python3 worker.py --queue jobs
  daemonkit status -p /run/api.pid
  daemonkit signal HUP -p /run/api.pid      # after logrotate: reopen the logs
  daemonkit stop -p /run/api.pid -t 5
`
}

/** Each command's synopsis and the flags its help lists. */
export const COMMANDS: Record<string, { usage: string; what: string; flags: string[] }> = {
  start: {
    usage: 'daemonkit start [options] -- PROGRAM [ARGS...]',
    what: 'Start PROGRAM as a daemon. Succeeds once it has said READY=1 or stayed up for --settle;\nif it exits sooner, prints its exit status and the end of its stderr and exits 1.',
    flags: ['--name', '-p', '-C', '--umask', '-o', '-e', '-l', '--forward-hup', '-E', '-u', '-g', '--chroot', '-r', '--restart-delay', '--restart-delay-max',
      '--restart-burst', '--restart-window', '--no-supervise', '--detach', '--wait-ready', '--settle', '--ready-timeout', '--stop-timeout', '--listen', '--notify', '--json', '-q'],
  },
  run: {
    usage: 'daemonkit run [options] -- PROGRAM [ARGS...]',
    what: 'Run PROGRAM under the supervisor in the foreground (for systemd, containers and other\nsupervisors): this process becomes the supervisor.',
    flags: ['-p', '-C', '--umask', '-o', '-e', '-l', '--forward-hup', '-E', '-u', '-g', '--chroot', '-r', '--restart-delay', '--restart-delay-max',
      '--restart-burst', '--restart-window', '--wait-ready', '--stop-timeout', '--listen', '--notify'],
  },
  stop: {
    usage: 'daemonkit stop NAME | -p FILE [-t TIME] [-s SIG]',
    what: 'Stop the daemon: SIG, wait up to TIME, then the kill signal.',
    flags: ['--name', '-p', '-t', '-s', '--kill-signal', '--kill-timeout', '--json', '-q'],
  },
  restart: {
    usage: 'daemonkit restart NAME | -p FILE [options] [-- PROGRAM [ARGS...]]',
    what: 'Stop the daemon if it runs, then start it: with the command line, folder, environment\nadditions and options it was started with last time, or with PROGRAM and the options given.',
    flags: ['-p', '--graceful', '-t', '-s', '--kill-signal', '--kill-timeout', '-C', '-o', '-e', '-l', '-E', '-r', '--settle', '--wait-ready', '--stop-timeout', '--json', '-q'],
  },
  status: {
    usage: 'daemonkit status NAME | -p FILE',
    what: 'Say whether the daemon runs. Exit status: 0 running, 1 dead (stale pidfile) or failed (with\nits exit status or signal, when, the restart count and the last lines of its stderr),\n3 not running, 4 unknown.',
    flags: ['-p', '--json', '-q'],
  },
  signal: {
    usage: 'daemonkit signal SIG NAME | SIG -p FILE',
    what: 'Send SIG (a name in any case, with or without SIG, or a number) if, and only if, the daemon\nholds the pidfile lock. Exit status 7 when it does not run.',
    flags: ['-p', '--json', '-q'],
  },
  reset: {
    usage: 'daemonkit reset NAME | -p FILE',
    what: 'Forget the failure status reports (as systemctl reset-failed); a new start does it too.',
    flags: ['-p', '--json', '-q'],
  },
  reload: { usage: 'daemonkit reload NAME | -p FILE', what: 'Send SIGHUP: the supervisor reopens the log files (and passes it on with --forward-hup).', flags: ['--name', '-p', '--json', '-q'] },
  list: { usage: 'daemonkit list [--json]', what: 'Every daemon of the registry, read from the pidfile locks and /proc.', flags: ['--json'] },
  logs: { usage: 'daemonkit logs NAME [-n N] [-f]', what: "The last lines of the daemon's log, and with -f the new ones as they come.", flags: ['--name', '-n', '-f'] },
  service: {
    usage: 'daemonkit service install NAME [--print] [--launchd] [options] -- PROGRAM [ARGS...]\n       daemonkit service uninstall NAME',
    what: 'Write a boot unit for PROGRAM: a systemd unit (Type=notify, ExecStart= this daemonkit\'s absolute\npath with run, ExecReload=, KillMode=mixed, WorkingDirectory=, Restart=) in /etc/systemd/system\n(as root) or ~/.config/systemd/user; on macOS (or with --launchd) a launchd plist. -r sets\nRestart= (default on-failure). Then enable it as the output says.',
    flags: ['--print', '--launchd', '-C', '-o', '-e', '-l', '-E', '-u', '-g', '-r', '--restart-delay', '--wait-ready'],
  },
  help: { usage: 'daemonkit help [COMMAND]', what: 'Show the help, or the help of COMMAND.', flags: [] },
  completion: { usage: 'daemonkit completion bash|zsh', what: 'Print a completion script: eval "$(daemonkit completion bash)"', flags: [] },
}

/** The lines of HELP's option list that describe `flag` (with their continuation lines). */
function optionLines(flag: string): string[] {
  const lines = help().split('\n')
  const at = lines.findIndex((l) => /^ {2,6}(-\w, )?--?[\w-]/.test(l) && l.trim().split(/[ ,]+/).includes(flag))
  if (at < 0) return []
  const out = [lines[at]]
  for (let i = at + 1; i < lines.length && /^ {20,}\S/.test(lines[i]); i++) out.push(lines[i])
  return out
}

/** The help of one command: its synopsis, what it does and its options' lines from HELP. */
export function commandHelp(command: string): string {
  const c = COMMANDS[command]
  const options = c.flags.flatMap(optionLines)
  return `Usage: ${c.usage}\n\n${c.what}\n${options.length ? `\nOptions:\n${options.join('\n')}\n` : ''}` +
    (c.flags.some((f) => ['-t', '--settle', '--restart-delay', '--stop-timeout'].includes(f)) ? '\nTIME: 500ms, 5s, 2m, 1h; a bare number means seconds.\n' : '')
}

