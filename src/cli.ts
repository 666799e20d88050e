#!/usr/bin/env node
import * as fs from 'node:fs'
import * as path from 'node:path'

import { completion, FLAG_OF, parse, VALUE_FLAGS, type Parsed } from './cli-args'
import { COMMANDS, commandHelp, help } from './cli-help'
import { supervisorDefaults } from './defaults'
import { AlreadyRunningError, DaemonkitError, LaunchError, ListenError, LogfileError, UsageError } from './errors'
import { resetFailed } from './failure'
import { alreadyRunning, failureCode, LSB, signalled, statusReport, stopped, unknownWhy } from './lsb'
import { lockPidfile } from './pidlock'
import { list, table } from './list'
import { bindListeners } from './listen'
import { follow, lastLines } from './logs'
import { checkName, ensureRegistry, namedLog, namedPidfile, readState } from './registry'
import { enableHint, launchdPlist, systemdUnit, unitPath, type ServiceSpec } from './service'
import { gracefulRestart } from './upgrade'
import { signal, status, stop, type SignalName, type StopOptions } from './manage'
import { native } from './native'
import { shouldDetach } from './options'
import { checkCwd, envList, normalizeSpawnOptions, spawnDaemon, supervisorArgs, type SpawnDaemonOptions } from './spawn'
import { supervisorPath } from './supervisor'

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
  return unknownWhy(await status(file))
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
  const pidFile = o.base.pidFile
  const lock = pidFile === undefined ? undefined : lockPidfile(pidFile)
  const env = envList(o.base, program)
  const n = native()
  let sockets: ReturnType<typeof bindListeners> | undefined
  try {
    sockets = bindListeners(o.base.listen, { user: o.user, group: o.group, umask: o.base.umask })
    const fds = sockets.fds
    const argv = supervisorArgs(o, program, p.args, {
      newSession: true,
      ...(lock === undefined ? {} : { lockFd: lock.fd, pidFile: lock.path }),
      listen: sockets.names.map((name, i) => ({ fd: fds[i], name })),
    })
    n.execReplacing(supervisor, [supervisor, ...argv], env, [...(lock === undefined ? [] : [lock.fd]), ...fds])
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

async function startCommand(p: Parsed, verb = 'started'): Promise<number> {
  const program = needProgram(p)
  if (!shouldDetach(p.detach)) return runForeground(p)
  const opts = { ...p.opts }
  if (opts.supervise === false && opts.name !== undefined && opts.pidFile === undefined) {
    throw new UsageError('--name cannot be used with --no-supervise: a named daemon has a pidfile, and without the supervisor nothing would hold its lock')
  }
  // The settle window is the supervisor's: a start without it (no pidfile, no restart, no
  // sockets, or --no-supervise) succeeds at exec, as before there was a settle window.
  if (opts.settle === undefined && !opts.waitReady && normalizeSpawnOptions(opts).supervise) opts.settle = supervisorDefaults().startSettle
  try {
    const r = await spawnDaemon(program, p.args, opts)
    print(p.json, { started: true, ...r }, r.pid === r.commandPid ? `${verb} (pid ${r.pid})` : `${verb} (pid ${r.pid}, command pid ${r.commandPid})`)
    return LSB.ok
  } catch (err) {
    if (err instanceof AlreadyRunningError) {
      const report = alreadyRunning(err)
      print(p.json, { started: false, reason: 'already-running', pid: err.pid ?? null }, report.line)
      return report.code
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
    restartDelay: p.opts.restartDelay ?? supervisorDefaults().restartDelay,
    stopTimeout: p.opts.stopTimeout ?? supervisorDefaults().stopTimeout,
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
        process.stdout.write(p.helpFor === undefined ? help() : commandHelp(p.helpFor))
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
        const report = await signalled(r, (pid) => `reloaded (pid ${pid})`, () => unknownReason(file))
        print(p.json, r, report.line)
        return report.code
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
        const report = stopped(r)
        print(p.json, r, report.line)
        return report.code
      }
      case 'status': {
        const s = await status(needPidfile(p))
        const report = statusReport(s, { stderrTail: true })
        print(p.json, s, report.line)
        return report.code
      }
      case 'reset': {
        const had = resetFailed(needPidfile(p))
        print(p.json, { reset: had }, had ? 'failed state cleared' : 'not failed')
        return LSB.ok
      }
      case 'signal': {
        const r = await signal(needPidfile(p), p.signalName as SignalName)
        const report = await signalled(r, (pid) => `sent ${p.signalName} to pid ${pid}`, () => unknownReason(needPidfile(p)))
        print(p.json, r, report.line)
        return report.code
      }
      case '':
        process.stderr.write(help())
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
    // The JSON's `reason` is the error's `reason` (an error with a `kind` keeps it as an alias).
    const e = err as DaemonkitError & { reason?: unknown }
    if (p.json) process.stdout.write(`${JSON.stringify({ error: { code: e.code ?? null, reason: e.reason ?? null, message: e.message } })}\n`)
    process.stderr.write(`daemonkit ${p.command}: ${e.message.replace(/^(?:spawnDaemon|daemonize): /, '')}\n`)
    return failureCode(err)
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
