#!/usr/bin/env node
import * as fs from 'node:fs'
import * as path from 'node:path'

import { LSB } from './daemon'
import { AlreadyRunningError, DaemonkitError, LaunchError, ListenError } from './errors'
import { lockPidfile } from './launch'
import { bindListeners } from './listen'
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
  start   [options] -- PROGRAM [ARGS...]  start PROGRAM as a daemon; returns once it runs
  run     [options] -- PROGRAM [ARGS...]  run PROGRAM under the supervisor in the foreground, for
                                          systemd, containers and other supervisors (this
                                          process becomes the supervisor: execve, same pid)
  stop    -p FILE [-t MS] [-s SIG]        stop the daemon: SIG, wait, SIGKILL after MS
  restart [options] -- PROGRAM [ARGS...]  stop it if it runs, then start it
  restart --graceful -p FILE              start a new copy beside the running daemon, with the
                                          same sockets; stop the old one once the new one is
                                          ready; if the new one fails, the old one runs on
                                          (exit 1 with its message). Needs --wait-ready for a
                                          supervised PROGRAM; daemonize() apps take it as is
  status  -p FILE                         0 running, 1 dead (stale pidfile), 3 not running, 4 unknown
  signal  SIG -p FILE                     send SIG if, and only if, the daemon holds the pidfile lock

Options:
  -p, --pidfile FILE        the pidfile (locked by the daemon's supervisor for its whole life)
  -C, --cwd DIR             working directory of PROGRAM (default /)
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
      --restart-delay MS    first restart delay, doubled each time (default 100)
      --restart-delay-max MS  cap on the delay (default 30000)
      --restart-burst N     give up after N restarts within the window (default 5)
      --restart-window MS   the burst window (default 60000)
      --no-supervise        start PROGRAM itself as the daemon, without the supervisor
                            (no pidfile, no restart, no log reopening)
      --detach auto|yes|no  start: auto (default) stays in the foreground, like run, under
                            systemd ($NOTIFY_SOCKET set to a listening socket)
      --wait-ready          start returns only once PROGRAM says READY=1 on $NOTIFY_SOCKET
                            (systemd's protocol; Node programs using daemonize() do it
                            themselves); if it exits first, start prints its stderr, exits 1
      --ready-timeout MS    how long start waits for PROGRAM (default 30000)
      --listen [NAME=]ADDR  a listening socket the supervisor binds and holds, handed to
                            PROGRAM (and every restart of it) at fd 3, 4, … with LISTEN_FDS,
                            LISTEN_PID, LISTEN_FDNAMES; ADDR is IPV4:PORT, [IPV6]:PORT or
                            unix:PATH (repeatable)
      --notify auto|yes|no  tell systemd READY=1 and STOPPING=1 over $NOTIFY_SOCKET
                            (auto, the default: when it is set)
  -t, --timeout MS          stop: wait this long before SIGKILL (default 10000)
  -s, --signal SIG          stop: the first signal (default SIGTERM)
      --kill-signal SIG     stop: the escalation signal (default SIGKILL)
      --kill-timeout MS     stop: wait this long after it (default 5000)
      --json                print one JSON object instead of a line of text
  -h, --help                show this help
  -V, --version             show the version

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
  daemonkit stop -p /run/api.pid -t 5000
`

class UsageError extends Error {}

interface Parsed {
  command: string
  signalName?: string
  program?: string
  args: string[]
  opts: SpawnDaemonOptions
  json: boolean
  detach: 'auto' | boolean
  timeout?: number
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
  '--detach': 'detach', '--ready-timeout': 'readyTimeout', '-t': 'timeout', '--timeout': 'timeout',
  '-s': 'signal', '--signal': 'signal', '--kill-signal': 'killSignal', '--kill-timeout': 'killTimeout',
  '--notify': 'notify', '--listen': 'listen',
}

function integer(flag: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} needs a non-negative integer, got ${JSON.stringify(value)}`)
  return Number(value)
}

function signalName(flag: string, value: string): SignalName {
  const name = (value.startsWith('SIG') ? value : `SIG${value}`).toUpperCase()
  if (!/^SIG[A-Z0-9]+$/.test(name)) throw new UsageError(`${flag}: not a signal name: ${value}`)
  return name as SignalName
}

export function parse(argv: string[]): Parsed {
  const out: Parsed = { command: '', args: [], opts: {}, json: false, detach: 'auto' }
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
    if (arg === '-h' || arg === '--help') return { ...out, command: 'help' }
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
      case 'restartDelay': out.opts.restartDelay = integer(flag, value); break
      case 'restartDelayMax': out.opts.restartDelayMax = integer(flag, value); break
      case 'restartBurst': out.opts.restartBurst = integer(flag, value); break
      case 'restartWindow': out.opts.restartWindow = integer(flag, value); break
      case 'readyTimeout': out.opts.readyTimeout = integer(flag, value); break
      case 'detach':
        if (!['auto', 'yes', 'no'].includes(value)) throw new UsageError('--detach needs auto, yes or no')
        out.detach = value === 'auto' ? 'auto' : value === 'yes'
        break
      case 'timeout': out.timeout = integer(flag, value); break
      case 'signal': out.stopSignal = signalName(flag, value); break
      case 'killSignal': out.killSignal = signalName(flag, value); break
      case 'killTimeout': out.killTimeout = integer(flag, value); break
      case 'notify':
        if (!['auto', 'yes', 'no'].includes(value)) throw new UsageError('--notify needs auto, yes or no')
        if (value !== 'auto') out.opts.notify = value === 'yes'
        break
    }
  }
  if (Object.keys(env).length > 0) out.opts.env = env
  out.command = positional[0] ?? ''
  if (out.command === 'signal') {
    if (positional[1] === undefined) throw new UsageError('signal needs a signal name, e.g. daemonkit signal HUP -p FILE')
    out.signalName = signalName('signal', positional[1])
    positional.splice(1, 1)
  }
  if (positional.length > 1) throw new UsageError(`unexpected argument ${positional[1]} (put the program after --)`)
  return out
}

function print(json: boolean, object: unknown, line: string): void {
  process.stdout.write(json ? `${JSON.stringify(object)}\n` : `${line}\n`)
}

function needPidfile(p: Parsed): string {
  if (!p.opts.pidFile) throw new UsageError(`${p.command} needs --pidfile`)
  return p.opts.pidFile
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
  const supervisor = supervisorPath()
  const flags = [...supervisorFlags(o), '--new-session']
  const pidFile = o.base.pidFile
  const lockFd = pidFile === undefined ? undefined : lockPidfile(pidFile)
  if (lockFd !== undefined) flags.push('--lock-fd', String(lockFd), '--pidfile', pidFile as string)
  const env = envList(o.base, program)
  const n = native()
  let sockets: ReturnType<typeof bindListeners> | undefined
  try {
    sockets = bindListeners(o.base.listen)
    const fds = sockets.fds
    sockets.names.forEach((name, i) => flags.push('--listen-fd', `${fds[i]}:${name}`))
    n.execReplacing(supervisor, [supervisor, ...flags, '--', program, ...p.args], env, [...(lockFd === undefined ? [] : [lockFd]), ...fds])
  } catch (err) {
    sockets?.discard()
    const e = err as { code?: unknown; message?: unknown }
    if (lockFd !== undefined) {
      try {
        n.removePidfile(pidFile as string, lockFd)
      } catch {
        // Nobody holds its lock once we close it: it reads as "not running".
      }
      fs.closeSync(lockFd)
    }
    if (err instanceof ListenError) throw err
    const reason = typeof e.code === 'string' ? e.code : 'EUNKNOWN'
    throw new LaunchError(reason, `cannot run the supervisor: ${String(e.message)}`, supervisor, { cause: err })
  }
  return LSB.deadOrFailed // not reached: execReplacing returns only by throwing
}

async function startCommand(p: Parsed): Promise<number> {
  const program = needProgram(p)
  if (!shouldDetach(p.detach)) return runForeground(p)
  try {
    const r = await spawnDaemon(program, p.args, p.opts)
    print(p.json, { started: true, ...r }, r.pid === r.commandPid ? `started (pid ${r.pid})` : `started (pid ${r.pid}, command pid ${r.commandPid})`)
    return LSB.ok
  } catch (err) {
    if (err instanceof AlreadyRunningError) {
      print(p.json, { started: false, reason: 'already-running', pid: err.pid ?? null }, err.pid === undefined ? 'already running (starting up)' : `already running (pid ${err.pid})`)
      return LSB.ok
    }
    throw err
  }
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
  try {
    switch (p.command) {
      case 'help':
        process.stdout.write(HELP)
        return LSB.ok
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
        needProgram(p)
        await stop(file, stopOptions(p))
        return await startCommand(p)
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
          case 'dead':
            print(p.json, s, `dead: the pidfile is left behind${s.stalePid ? ` (it names pid ${s.stalePid})` : ''} and nobody holds its lock`)
            return LSB.deadOrFailed
          default:
            print(p.json, s, `unknown: ${s.reason}`)
            return LSB.unknown
        }
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
      process.stderr.write(`daemonkit: ${err.message}\nTry 'daemonkit --help'.\n`)
      return LSB.usage
    }
    const e = err as DaemonkitError & { reason?: unknown }
    if (p.json) process.stdout.write(`${JSON.stringify({ error: { code: e.code ?? null, reason: e.reason ?? null, message: e.message } })}\n`)
    process.stderr.write(`daemonkit ${p.command}: ${e.message}\n`)
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
