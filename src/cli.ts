#!/usr/bin/env node
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { LSB } from './daemon'
import { AlreadyRunningError, DaemonkitError, LaunchError, ListenError, LogfileError } from './errors'
import { describeFailure, printable, resetFailed } from './failure'
import { lockPidfile } from './pidfile'
import { list, table } from './list'
import { bindListeners } from './listen'
import { follow, lastLines } from './logs'
import { checkName, ensureRegistry, namedLog, namedPidfile, readState } from './registry'
import { enableHint, launchdPlist, systemdUnit, unitPath, type ServiceSpec } from './service'
import { gracefulRestart } from './upgrade'
import { signal, status, stop, type SignalName, type StopOptions } from './manage'
import { native } from './native'
import { shouldDetach } from './options'
import { checkCwd, envList, normalizeSpawnOptions, spawnDaemon, supervisorFlags, type SpawnDaemonOptions } from './spawn'
import { supervisorPath } from './supervisor'

const HELP = `Usage: daemonkit <command> [options] [-- PROGRAM [ARGS...]]

Run any program as a correct Unix daemon: double fork, new session, no terminal, stdio on
/dev/null or log files, a locked pidfile, readiness, and safe stop.

Commands:
  start   [options] -- PROGRAM [ARGS...]  start PROGRAM as a daemon; succeeds once it has said
                                          READY=1 or stayed up for --settle (default 1s)
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
      --restart-delay TIME  first restart delay, doubled each time (default 100ms)
      --restart-delay-max TIME  cap on the delay (default 30s)
      --restart-burst N     give up after N restarts within the window (default 5)
      --restart-window TIME the burst window (default 60s)
      --no-supervise        start PROGRAM itself as the daemon, without the supervisor
                            (no pidfile, no restart, no log reopening)
      --detach auto|yes|no  start: auto (default) stays in the foreground, like run, under
                            systemd ($NOTIFY_SOCKET set to a listening socket)
      --wait-ready          start returns only once PROGRAM says READY=1 on $NOTIFY_SOCKET
                            (systemd's protocol; Node programs using daemonize() do it
                            themselves); if it exits first, start prints its stderr, exits 1
      --settle TIME         start: PROGRAM must stay up this long (or say READY=1 first);
                            if it exits sooner, start prints its status and stderr, exits 1
                            (default 1s; 0 returns as soon as it has exec'd)
      --ready-timeout TIME  how long start waits for PROGRAM (default 30s)
      --stop-timeout TIME   in a graceful restart, how long the old PROGRAM has to end after
                            SIGTERM before SIGKILL (default 10s)
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

class UsageError extends Error {}

interface Parsed {
  command: string
  signalName?: string
  program?: string
  args: string[]
  opts: SpawnDaemonOptions
  json: boolean
  quiet: boolean
  /** `completion SHELL`: the shell. */
  shell?: string
  /** `help CMD` / `CMD --help`: the command whose help to show. */
  helpFor?: string
  detach: 'auto' | boolean
  timeout?: number
  lines?: number
  follow?: boolean
  /** `service install|uninstall`. */
  serviceAction?: string
  printOnly?: boolean
  launchd?: boolean
  stopSignal?: SignalName
  killSignal?: SignalName
  killTimeout?: number
  graceful?: boolean
}

const VALUE_FLAGS: Record<string, string> = {
  '-p': 'pidfile', '--pidfile': 'pidfile', '-C': 'cwd', '--cwd': 'cwd', '--umask': 'umask',
  '-o': 'stdout', '--stdout': 'stdout', '-e': 'stderr', '--stderr': 'stderr', '-l': 'log', '--log': 'log',
  '-E': 'env', '--env': 'env', '-u': 'user', '--user': 'user', '-g': 'group', '--group': 'group',
  '--chroot': 'chroot', '-r': 'restart', '--restart': 'restart', '--restart-delay': 'restartDelay',
  '--restart-delay-max': 'restartDelayMax', '--restart-burst': 'restartBurst', '--restart-window': 'restartWindow',
  '--detach': 'detach', '--ready-timeout': 'readyTimeout', '--stop-timeout': 'stopTimeout', '-t': 'timeout', '--timeout': 'timeout',
  '-s': 'signal', '--signal': 'signal', '--kill-signal': 'killSignal', '--kill-timeout': 'killTimeout',
  '--notify': 'notify', '--listen': 'listen', '--settle': 'settle', '--name': 'name', '-n': 'lines', '--lines': 'lines',
}

/** Commands that take the daemon's NAME as an operand. */
const NAMED = ['status', 'stop', 'restart', 'reload', 'signal', 'reset', 'logs']

/** Option name of the API -> the CLI flag, for errors in CLI words. */
const FLAG_OF: Record<string, string> = {
  pidFile: '--pidfile', cwd: '--cwd', umask: '--umask', stdout: '--stdout', stderr: '--stderr', env: '--env', user: '--user',
  group: '--group', chroot: '--chroot', supervise: '--no-supervise', restart: '--restart', restartDelay: '--restart-delay',
  restartDelayMax: '--restart-delay-max', restartBurst: '--restart-burst', restartWindow: '--restart-window', notify: '--notify',
  forwardHup: '--forward-hup', waitReady: '--wait-ready', readyTimeout: '--ready-timeout', stopTimeout: '--stop-timeout', settle: '--settle', name: '--name', listen: '--listen',
  timeout: '--timeout', signal: '--signal', killSignal: '--kill-signal', killTimeout: '--kill-timeout',
}

/** Each command's synopsis and the flags its help lists. */
const COMMANDS: Record<string, { usage: string; what: string; flags: string[] }> = {
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
  const lines = HELP.split('\n')
  const at = lines.findIndex((l) => /^ {2,6}(-\w, )?--?[\w-]/.test(l) && l.trim().split(/[ ,]+/).includes(flag))
  if (at < 0) return []
  const out = [lines[at]]
  for (let i = at + 1; i < lines.length && /^ {20,}\S/.test(lines[i]); i++) out.push(lines[i])
  return out
}

function commandHelp(command: string): string {
  const c = COMMANDS[command]
  const options = c.flags.flatMap(optionLines)
  return `Usage: ${c.usage}\n\n${c.what}\n${options.length ? `\nOptions:\n${options.join('\n')}\n` : ''}` +
    (c.flags.some((f) => ['-t', '--settle', '--restart-delay', '--stop-timeout'].includes(f)) ? '\nTIME: 500ms, 5s, 2m, 1h; a bare number means seconds.\n' : '')
}

function completion(shell: string): string {
  const commands = Object.keys(COMMANDS).join(' ')
  const flags = [...new Set([...Object.keys(VALUE_FLAGS), '--json', '--quiet', '--no-supervise', '--forward-hup', '--wait-ready', '--help', '--version'])].filter((f) => f.startsWith('--')).join(' ')
  if (shell === 'bash') {
    return `# daemonkit completion for bash: eval "$(daemonkit completion bash)"
_daemonkit() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then COMPREPLY=($(compgen -W "${commands}" -- "$cur")); return; fi
  case "$cur" in
    -*) COMPREPLY=($(compgen -W "${flags}" -- "$cur")) ;;
    *) COMPREPLY=($(compgen -f -- "$cur")) ;;
  esac
}
complete -F _daemonkit daemonkit
`
  }
  if (shell === 'zsh') {
    return `#compdef daemonkit
# daemonkit completion for zsh: eval "$(daemonkit completion zsh)"
_daemonkit() {
  if (( CURRENT == 2 )); then compadd ${commands}; return; fi
  if [[ $PREFIX == -* ]]; then compadd -- ${flags}; else _files; fi
}
compdef _daemonkit daemonkit
`
  }
  throw new UsageError(`completion needs bash or zsh, got ${JSON.stringify(shell)}`)
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds (as start-stop-daemon and systemd), in ms. */
export function duration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim())
  const ms = m ? Math.round(Number(m[1]) * UNITS[m[2] ?? 's']) : NaN
  if (!Number.isSafeInteger(ms) || ms > 2 ** 31 - 1) throw new UsageError(`${flag} needs a time such as 500ms, 5s or 2m (a bare number means seconds), got ${JSON.stringify(value)}`)
  return ms
}

function integer(flag: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} needs a non-negative integer, got ${JSON.stringify(value)}`)
  return Number(value)
}

/** A signal in any case, with or without `SIG`, or its number: `hup`, `SIGUSR1`, `10`. */
export function signalName(flag: string, value: string): SignalName {
  const known = os.constants.signals as Record<string, number>
  if (/^\d+$/.test(value)) {
    const name = Object.keys(known).find((k) => known[k] === Number(value) && k !== 'SIGIOT' && k !== 'SIGPOLL')
    if (name === undefined) throw new UsageError(`${flag}: no signal has the number ${value}`)
    return name as SignalName
  }
  const upper = value.toUpperCase()
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`
  if (!(name in known)) throw new UsageError(`${flag}: unknown signal ${JSON.stringify(value)} (try TERM, HUP, USR1 or a number)`)
  return name as SignalName
}

export function parse(argv: string[]): Parsed {
  const out: Parsed = { command: '', args: [], opts: {}, json: false, quiet: false, detach: 'auto' }
  let help = false
  const env: Record<string, string> = {}
  let i = 0
  const positional: string[] = []
  while (i < argv.length) {
    const arg = argv[i++]
    if (arg === '--') {
      out.program = argv[i++]
      out.args = argv.slice(i)
      break
    }
    if (arg === '-h' || arg === '--help') {
      help = true
      continue
    }
    if (arg === '--print' || arg === '--launchd') {
      if (arg === '--print') out.printOnly = true
      else out.launchd = true
      continue
    }
    if (arg === '-f' || arg === '--follow') {
      out.follow = true
      continue
    }
    if (arg === '-q' || arg === '--quiet') {
      out.quiet = true
      continue
    }
    if (arg === '-V' || arg === '--version') return { ...out, command: 'version' }
    if (arg === '--json') {
      out.json = true
      continue
    }
    if (arg === '--no-supervise') {
      out.opts.supervise = false
      continue
    }
    if (arg === '--forward-hup') {
      out.opts.forwardHup = true
      continue
    }
    if (arg === '--graceful') {
      out.graceful = true
      continue
    }
    if (arg === '--wait-ready') {
      out.opts.waitReady = true
      continue
    }
    let flag = arg
    let inline: string | undefined
    const eq = arg.indexOf('=')
    if (arg.startsWith('--') && eq > 0) {
      flag = arg.slice(0, eq)
      inline = arg.slice(eq + 1)
    }
    const key = VALUE_FLAGS[flag]
    if (!key) {
      if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option ${arg}`)
      positional.push(arg)
      continue
    }
    // Errors name the long flag: `-t` is `--timeout`.
    if (!flag.startsWith('--')) flag = Object.keys(VALUE_FLAGS).find((f) => f.startsWith('--') && VALUE_FLAGS[f] === key) ?? flag
    const value = inline ?? argv[i++]
    if (value === undefined) throw new UsageError(`${flag} needs a value`)
    switch (key) {
      case 'pidfile': out.opts.pidFile = value; break
      case 'listen': {
        const named = /^([A-Za-z0-9_.-]{1,255})=(.+)$/.exec(value)
        const list = [...(out.opts.listen ?? [])]
        list.push(named ? { address: named[2], name: named[1] } : value)
        out.opts.listen = list
        break
      }
      case 'cwd': out.opts.cwd = value; break
      case 'umask':
        if (!/^[0-7]{1,4}$/.test(value)) throw new UsageError(`--umask needs an octal number, got ${value}`)
        out.opts.umask = parseInt(value, 8)
        break
      case 'stdout': out.opts.stdout = value; break
      case 'stderr': out.opts.stderr = value; break
      case 'log': out.opts.stdout = value; out.opts.stderr = value; break
      case 'env': {
        const at = value.indexOf('=')
        if (at <= 0) throw new UsageError(`--env needs NAME=VALUE, got ${value}`)
        env[value.slice(0, at)] = value.slice(at + 1)
        break
      }
      case 'user': out.opts.user = value; break
      case 'group': out.opts.group = value; break
      case 'chroot': out.opts.chroot = value; break
      case 'restart': out.opts.restart = value as SpawnDaemonOptions['restart']; break
      case 'restartDelay': out.opts.restartDelay = duration(flag, value); break
      case 'restartDelayMax': out.opts.restartDelayMax = duration(flag, value); break
      case 'restartBurst': out.opts.restartBurst = integer(flag, value); break
      case 'restartWindow': out.opts.restartWindow = duration(flag, value); break
      case 'readyTimeout':
        out.opts.readyTimeout = duration(flag, value)
        if (out.opts.readyTimeout === 0) throw new UsageError(`${flag} needs a time above 0`)
        break
      case 'settle': out.opts.settle = duration(flag, value); break
      case 'stopTimeout': out.opts.stopTimeout = duration(flag, value); break
      case 'name': out.opts.name = value; break
      case 'lines': out.lines = integer(flag, value); break
      case 'detach':
        if (!['auto', 'yes', 'no'].includes(value)) throw new UsageError('--detach needs auto, yes or no')
        out.detach = value === 'auto' ? 'auto' : value === 'yes'
        break
      case 'timeout': out.timeout = duration(flag, value); break
      case 'signal': out.stopSignal = signalName(flag, value); break
      case 'killSignal': out.killSignal = signalName(flag, value); break
      case 'killTimeout': out.killTimeout = duration(flag, value); break
      case 'notify':
        if (!['auto', 'yes', 'no'].includes(value)) throw new UsageError('--notify needs auto, yes or no')
        if (value !== 'auto') out.opts.notify = value === 'yes'
        break
    }
  }
  if (Object.keys(env).length > 0) out.opts.env = env
  out.command = positional[0] ?? ''
  if (out.command === 'help' || help) {
    const topic = out.command === 'help' ? positional[1] : out.command
    if (topic !== undefined && topic !== '' && !(topic in COMMANDS)) throw new UsageError(`no such command ${topic} (commands: ${Object.keys(COMMANDS).join(', ')})`)
    return { ...out, command: 'help', helpFor: topic || undefined }
  }
  if (out.command === 'service') {
    out.serviceAction = positional[1]
    if (out.serviceAction !== 'install' && out.serviceAction !== 'uninstall') throw new UsageError('service needs install or uninstall: daemonkit service install NAME -- PROGRAM')
    if (positional[2] === undefined) throw new UsageError(`service ${out.serviceAction} needs a NAME`)
    out.opts.name = positional[2]
    if (positional.length > 3) throw new UsageError(`unexpected argument ${positional[3]} (put the program after --)`)
    return out
  }
  if (out.command === 'completion') {
    out.shell = positional[1] ?? ''
    return out
  }
  if (out.command === 'signal') {
    if (positional[1] === undefined) throw new UsageError('signal needs a signal name, e.g. daemonkit signal HUP -p FILE')
    out.signalName = signalName('signal', positional[1])
    positional.splice(1, 1)
  }
  if (NAMED.includes(out.command) && positional[1] !== undefined) {
    if (out.opts.name !== undefined && out.opts.name !== positional[1]) throw new UsageError(`two names: ${positional[1]} and --name ${out.opts.name}`)
    out.opts.name = positional[1]
    positional.splice(1, 1)
  }
  if (positional.length > 1) throw new UsageError(`unexpected argument ${positional[1]} (put the program after --)`)
  return out
}

let quiet = false

/** Numbers in JSON output rounded to whole units (uptime in ms, CPU %, …). */
function rounded(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isInteger(value) ? Math.round(value) : value
}

function print(json: boolean, object: unknown, line: string): void {
  if (quiet) return
  process.stdout.write(json ? `${JSON.stringify(object, rounded)}\n` : `${line}\n`)
}

/** An option error from the API (`spawnDaemon: option "pidFile" …`) in CLI words, naming the flag. */
function cliWords(message: string): string {
  return message
    .replace(/needs the supervisor \(supervise: true\)/, 'cannot be used with --no-supervise')
    .replace(/^(?:spawnDaemon|daemonize|stop): option "(\w+)"/, (_m, key: string) => FLAG_OF[key] ?? key)
    .replace(/^spawnDaemon: /, '')
}

function needPidfile(p: Parsed): string {
  if (p.opts.pidFile) return p.opts.pidFile
  if (p.opts.name !== undefined) return namedPidfile(checkName(p.opts.name, '--name'))
  throw new UsageError(`${p.command} needs a daemon: a NAME or --pidfile FILE`)
}

function stopOptions(p: Parsed): StopOptions {
  return { timeout: p.timeout, signal: p.stopSignal, killSignal: p.killSignal, killTimeout: p.killTimeout }
}

/** Why nothing was signalled, in words, for a pidfile whose state is not clear. */
async function unknownReason(file: string): Promise<string> {
  const s = await status(file)
  return s.state === 'unknown' ? s.reason : 'the pidfile names no pid'
}

function needProgram(p: Parsed): string {
  if (!p.program) throw new UsageError(`${p.command} needs a program: daemonkit ${p.command} [options] -- PROGRAM [ARGS...]`)
  return p.program
}

/**
 * `run` (and `start` under systemd): this process becomes the supervisor by `execve`, holding
 * the pidfile's lock, so no Node process stays alive beside the command and the pid that
 * systemd or a container runtime watches is the supervisor's. The supervisor starts the command
 * in a session of its own, so a terminal's Ctrl-C reaches the command once, forwarded, and the
 * terminal's job control cannot stop it.
 * Returns only if the exec failed.
 */
function runForeground(p: Parsed): number {
  const program = needProgram(p)
  const o = normalizeSpawnOptions({ ...p.opts, supervise: true })
  checkCwd(o, program, '') // main() prefixes 'daemonkit run: '
  if (o.name !== undefined) ensureRegistry()
  const supervisor = supervisorPath()
  const flags = [...supervisorFlags(o), '--new-session']
  const pidFile = o.base.pidFile
  const lock = pidFile === undefined ? undefined : lockPidfile(pidFile)
  if (lock !== undefined) flags.push('--lock-fd', String(lock.fd), '--pidfile', lock.path)
  const env = envList(o.base, program)
  const n = native()
  let sockets: ReturnType<typeof bindListeners> | undefined
  try {
    sockets = bindListeners(o.base.listen, { user: o.user, group: o.group, umask: o.base.umask })
    const fds = sockets.fds
    sockets.names.forEach((name, i) => flags.push('--listen-fd', `${fds[i]}:${name}`))
    n.execReplacing(supervisor, [supervisor, ...flags, '--', program, ...p.args], env, [...(lock === undefined ? [] : [lock.fd]), ...fds])
  } catch (err) {
    sockets?.discard()
    const e = err as { code?: unknown; message?: unknown }
    lock?.discard()
    if (err instanceof ListenError) throw err
    const reason = typeof e.code === 'string' ? e.code : 'EUNKNOWN'
    throw new LaunchError(reason, `cannot run the supervisor: ${String(e.message)}`, supervisor, { cause: err })
  }
  return LSB.deadOrFailed // not reached: execReplacing returns only by throwing
}

/**
 * How long `start` waits by default for a command that does not say READY=1: as pm2's
 * `min_uptime`. A Node or Python program that cannot find its script or a module fails well
 * within it, even on a loaded machine; a command that stays up this long is judged started.
 */
const DEFAULT_SETTLE = 1000

async function startCommand(p: Parsed, verb = 'started'): Promise<number> {
  const program = needProgram(p)
  if (!shouldDetach(p.detach)) return runForeground(p)
  const opts = { ...p.opts }
  if (opts.supervise === false && opts.name !== undefined && opts.pidFile === undefined) {
    throw new UsageError('--name cannot be used with --no-supervise: a named daemon has a pidfile, and without the supervisor nothing would hold its lock')
  }
  if (opts.settle === undefined && opts.supervise !== false && !opts.waitReady) opts.settle = DEFAULT_SETTLE
  try {
    const r = await spawnDaemon(program, p.args, opts)
    print(p.json, { started: true, ...r }, r.pid === r.commandPid ? `${verb} (pid ${r.pid})` : `${verb} (pid ${r.pid}, command pid ${r.commandPid})`)
    return LSB.ok
  } catch (err) {
    if (err instanceof AlreadyRunningError) {
      print(p.json, { started: false, reason: 'already-running', pid: err.pid ?? null }, err.pid === undefined ? 'already running (starting up)' : `already running (pid ${err.pid})`)
      return LSB.ok
    }
    throw err
  }
}

/** Flags of `service install` that the unit expresses itself, not through `daemonkit run`. */
const UNIT_FLAGS = new Set(['--print', '--launchd', '-r', '--restart', '--restart-delay', '-C', '--cwd', '-E', '--env', '--name', '--detach', '--settle', '-q', '--quiet', '--json'])

/** The `daemonkit run` options of `service install`, as given on its command line. */
function runArgsOf(argv: string[]): string[] {
  const out: string[] = []
  const end = argv.indexOf('--')
  const words = end < 0 ? argv : argv.slice(0, end)
  for (let i = 0; i < words.length; i++) {
    const w = words[i]
    const flag = w.startsWith('--') && w.includes('=') ? w.slice(0, w.indexOf('=')) : w
    const takesValue = VALUE_FLAGS[flag] !== undefined && !w.includes('=')
    if (!flag.startsWith('-')) continue // service, install, NAME
    if (!UNIT_FLAGS.has(flag)) out.push(w, ...(takesValue ? [words[i + 1]] : []))
    if (takesValue) i++
  }
  return out
}

function serviceCommand(p: Parsed, argv: string[]): number {
  const name = checkName(p.opts.name, 'service: NAME')
  const file = unitPath(name)
  if (p.serviceAction === 'uninstall') {
    let removed = true
    try {
      fs.unlinkSync(file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      removed = false
    }
    print(p.json, { removed, file }, removed ? `removed ${file}; stop it first if it runs (systemctl stop ${path.basename(file)})` : `no unit ${file}`)
    return LSB.ok
  }
  const program = needProgram(p)
  const spec: ServiceSpec = {
    name,
    runArgs: runArgsOf(argv),
    program,
    args: p.args,
    cwd: path.resolve(p.opts.cwd ?? process.cwd()),
    env: p.opts.env ?? {},
    restart: p.opts.restart ?? 'on-failure',
    restartDelay: p.opts.restartDelay ?? 100,
    stopTimeout: p.opts.stopTimeout ?? 10_000,
  }
  const text = p.launchd || process.platform === 'darwin' ? launchdPlist(spec) : systemdUnit(spec)
  if (p.printOnly) {
    process.stdout.write(text)
    return LSB.ok
  }
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text, { mode: 0o644 })
  print(p.json, { file, enable: enableHint(name, file) }, `wrote ${file}\nenable and start it with: ${enableHint(name, file)}`)
  return LSB.ok
}

async function main(argv: string[]): Promise<number> {
  let p: Parsed
  try {
    p = parse(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`daemonkit: ${err.message}\nTry 'daemonkit --help'.\n`)
    return LSB.usage
  }
  quiet = p.quiet
  try {
    switch (p.command) {
      case 'help':
        process.stdout.write(p.helpFor === undefined ? HELP : commandHelp(p.helpFor))
        return LSB.ok
      case 'completion':
        process.stdout.write(completion(p.shell ?? ''))
        return LSB.ok
      case 'service':
        return serviceCommand(p, argv)
      case 'version': {
        const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
        process.stdout.write(`daemonkit ${pkg.version}\n`)
        return LSB.ok
      }
      case 'start':
        return await startCommand(p)
      case 'run':
        return runForeground(p)
      case 'restart': {
        const file = needPidfile(p)
        if (p.graceful) {
          const r = await gracefulRestart(file)
          print(p.json, { restarted: true, graceful: true, ...r }, `restarted gracefully (pid ${r.pid}, now serving: pid ${r.newPid})`)
          return LSB.ok
        }
        if (p.program !== undefined) {
          await stop(file, stopOptions(p))
          return await startCommand(p, 'restarted')
        }
        // As it was started last time: the state file beside the pidfile says how.
        const state = readState(file)
        if (state === undefined) {
          throw new UsageError(`no record of how ${p.opts.name ?? file} was started (${file}.state): give the command, daemonkit restart ${p.opts.name ?? `-p ${file}`} -- PROGRAM [ARGS...]`)
        }
        await stop(file, stopOptions(p))
        // Options given now win over the recorded ones (environment additions are merged); the
        // daemon's identity (name, pidfile) stays the recorded one.
        const { name: _name, pidFile: _pidFile, ...given } = p.opts
        const recordedEnv = state.options.env as Record<string, string> | undefined
        const opts = { ...state.options, ...given, ...(given.env === undefined ? {} : { env: { ...recordedEnv, ...given.env } }) } as SpawnDaemonOptions
        return await startCommand({ ...p, program: state.command, args: state.args, opts }, 'restarted')
      }
      case 'reload': {
        const file = needPidfile(p)
        const r = await signal(file, 'SIGHUP')
        print(p.json, r, r.sent ? `reloaded (pid ${r.pid})` : r.reason === 'not-running' ? 'not running' : `unknown: ${await unknownReason(file)}`)
        return r.sent ? LSB.ok : r.reason === 'not-running' ? LSB.actionNotRunning : LSB.unknown
      }
      case 'list': {
        const items = await list()
        if (p.json) print(true, items, '')
        else if (!quiet) process.stdout.write(items.length === 0 ? 'no named daemons\n' : table(items))
        return LSB.ok
      }
      case 'logs': {
        const file = needPidfile(p)
        const state = readState(file)
        const files = [...new Set([state?.options.stdout, state?.options.stderr].filter((f): f is string => typeof f === 'string'))]
        if (files.length === 0) files.push(namedLog(checkName(p.opts.name ?? path.basename(file, '.pid'), '--name')))
        const shown = new Map<string, { end: number; ino: number }>()
        for (const f of files) {
          if (files.length > 1) process.stdout.write(`==> ${f} <==\n`)
          try {
            const last = lastLines(f, p.lines ?? 20)
            process.stdout.write(last.text)
            shown.set(f, last)
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code ?? 'EIO'
            if (!p.follow) throw new LogfileError(f, code, code === 'ENOENT' ? 'it does not exist (yet)' : (err as Error).message)
          }
        }
        if (!p.follow) return LSB.ok
        const stopFollowing = new AbortController()
        for (const sig of ['SIGINT', 'SIGTERM', 'SIGPIPE'] as const) process.once(sig, () => stopFollowing.abort())
        await Promise.all(files.map((f) => follow(f, (chunk) => process.stdout.write(chunk), stopFollowing.signal, shown.get(f))))
        return LSB.ok
      }
      case 'stop': {
        const r = await stop(needPidfile(p), stopOptions(p))
        print(p.json, r, r.stopped ? `stopped (pid ${r.pid}${r.forced ? `, forced with ${r.signal}` : ''})` : 'not running')
        return LSB.ok
      }
      case 'status': {
        const s = await status(needPidfile(p))
        switch (s.state) {
          case 'running':
            print(
              p.json,
              s,
              `${s.commandPid === undefined ? `running (pid ${s.pid})` : `running (pid ${s.pid}, command pid ${s.commandPid})`}${s.unverified ? `; ${s.unverified}` : ''}`,
            )
            return LSB.ok
          case 'stopped':
            print(p.json, s, 'not running')
            return LSB.notRunning
          case 'failed': {
            const tail = printable(s.stderr.trim()).split('\n').slice(-10).filter(Boolean).map((l) => `  ${l}`).join('\n')
            print(p.json, s, `${describeFailure(s)}${tail ? `; last lines of stderr:\n${tail}` : ''}`)
            return LSB.deadOrFailed
          }
          case 'dead':
            print(p.json, s, `dead: the pidfile is left behind${s.stalePid ? ` (it names pid ${s.stalePid})` : ''} and nobody holds its lock`)
            return LSB.deadOrFailed
          default:
            print(p.json, s, `unknown: ${s.reason}`)
            return LSB.unknown
        }
      }
      case 'reset': {
        const had = resetFailed(needPidfile(p))
        print(p.json, { reset: had }, had ? 'failed state cleared' : 'not failed')
        return LSB.ok
      }
      case 'signal': {
        const r = await signal(needPidfile(p), p.signalName as SignalName)
        print(p.json, r, r.sent ? `sent ${p.signalName} to pid ${r.pid}` : r.reason === 'not-running' ? 'not running' : `unknown: ${await unknownReason(needPidfile(p))}`)
        return r.sent ? LSB.ok : r.reason === 'not-running' ? LSB.actionNotRunning : LSB.unknown
      }
      case '':
        process.stderr.write(HELP)
        return LSB.usage
      default:
        throw new UsageError(`unknown command ${p.command}`)
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof TypeError) {
      const topic = p.command in COMMANDS ? ` ${p.command}` : ''
      process.stderr.write(`daemonkit${topic}: ${cliWords(err.message)}\nTry 'daemonkit${topic} --help'.\n`)
      return LSB.usage
    }
    const e = err as DaemonkitError & { reason?: unknown }
    if (p.json) process.stdout.write(`${JSON.stringify({ error: { code: e.code ?? null, reason: e.reason ?? null, message: e.message } })}\n`)
    process.stderr.write(`daemonkit ${p.command}: ${e.message.replace(/^(?:spawnDaemon|daemonize): /, '')}\n`)
    return e.reason === 'EPERM' || e.reason === 'EACCES' ? LSB.unknown : LSB.deadOrFailed
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code
    },
    (err: unknown) => {
      process.stderr.write(`daemonkit: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
      process.exitCode = 1
    },
  )
}
