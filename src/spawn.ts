import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { supervisorDefaults } from './defaults'
import { LaunchError, PidfileError, ReadinessError } from './errors'
import { openOutput } from './launch'
import { readPipe } from './readiness'
import { lockPidfile } from './pidlock'
import { native } from './native'
import { closeFd } from './runtime'
import { normalizeOptions, type DaemonizeOptions, type NormalizedOptions, type OutputTarget } from './options'
import { bindListeners, type BoundSockets } from './listen'
import { checkName, ensureRegistry, namedLog, namedPidfile, writeState } from './registry'
import { supervisorPath } from './supervisor'

/** When the supervisor restarts the command. */
export type RestartPolicy = 'never' | 'on-failure' | 'always'

/** Options of `spawnDaemon()`. */
export interface SpawnDaemonOptions extends Pick<DaemonizeOptions, 'pidFile' | 'umask' | 'stdout' | 'stderr' | 'env' | 'readyTimeout' | 'listen'> {
  /**
   * The command's working directory. Default: the caller's (`process.cwd()`), as with a shell
   * or `child_process.spawn()`, so relative paths in the command line work; `'/'` inside a
   * `chroot`. (`daemonize()` keeps the classic `'/'`.)
   */
  cwd?: string
  /** Run as this user (name or uid); supplementary groups from the group database. Needs root. */
  user?: string | number
  /** Run with this primary group (name or gid). Default: the user's. Needs root. */
  group?: string | number
  /** `chroot` into this directory before exec (`cwd` is then inside it). Needs root. */
  chroot?: string
  /**
   * Run the command under daemonkit's supervisor, which holds the pidfile lock for the
   * command's whole life, forwards signals, writes and reopens the log files and can restart
   * the command. Default: `true` when there is a `pidFile` or a `restart` policy.
   */
  supervise?: boolean
  /** Restart policy (supervised only). Default `'never'`. */
  restart?: RestartPolicy
  /** First restart delay in ms, doubled on each restart. Default 100. */
  restartDelay?: number
  /** Cap on the restart delay in ms. Default 30000. */
  restartDelayMax?: number
  /** At most this many restarts within `restartWindow`; then the supervisor gives up. Default 5. */
  restartBurst?: number
  /** The burst window in ms. Default 60000. */
  restartWindow?: number
  /** Tell systemd READY=1 / STOPPING=1 over `$NOTIFY_SOCKET` (supervised only). Default: when set. */
  notify?: boolean
  /**
   * With log files, SIGHUP makes the supervisor reopen them and is not passed on (most programs
   * die of SIGHUP). `true` passes it on as well, for programs that reload on it. Without log
   * files SIGHUP is always passed on. Default `false`.
   */
  forwardHup?: boolean
  /**
   * Resolve only once the command says it is ready, by sending `READY=1` to the
   * `$NOTIFY_SOCKET` the supervisor gives it (systemd's protocol: a Node program that calls
   * daemonkit's `daemonize()` does it by itself when it is ready; others can use `systemd-notify`
   * or a few lines of code). If the command exits first, `spawnDaemon()` rejects with a
   * `ReadinessError` carrying its exit status and its last stderr output. Supervised only.
   * Default `false`: resolve once the command has exec'd.
   */
  waitReady?: boolean
  /**
   * Resolve only once the command has stayed up this many ms (or said `READY=1` before, as with
   * `waitReady`); if it exits within the window, `spawnDaemon()` rejects with a `ReadinessError`
   * carrying its exit status and its last stderr output, as pm2 judges a start by its
   * `min_uptime`. Supervised only; ignored with `waitReady`. Default 0: resolve at exec (the
   * CLI's `start` uses 1000).
   */
  settle?: number
  /**
   * In a graceful restart, how long the old command has to end after SIGTERM once the new one
   * is ready, before SIGKILL, in ms. Supervised only. Default 10000.
   */
  stopTimeout?: number
  /**
   * A name for the daemon in daemonkit's registry (see the README): its pidfile defaults to
   * `<run folder>/NAME.pid` and, when neither `stdout` nor `stderr` is given, its output to
   * `<log folder>/NAME.log`, so `daemonkit status|stop|restart|logs NAME` find it. Letters,
   * digits, `_ . @ -`; at most 64.
   */
  name?: string
}

/** A launched command. */
export interface SpawnedDaemon {
  /** The daemon's pid: the supervisor's when supervised (the pidfile names it), else the command's. */
  pid: number
  /** The command's own pid. */
  commandPid: number
}

const SPAWN_KEYS = ['user', 'group', 'chroot', 'supervise', 'restart', 'restartDelay', 'restartDelayMax', 'restartBurst', 'restartWindow', 'notify', 'forwardHup', 'waitReady', 'settle', 'stopTimeout', 'name']

function fail(field: string, message: string): never {
  throw new TypeError(`spawnDaemon: option "${field}" ${message}`)
}

function idOrName(field: string, value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return String(value)
  if (typeof value === 'string' && value !== '' && !value.includes('\0') && !value.includes(':')) return value
  fail(field, 'must be a name or a non-negative integer id')
}

/** A duration option in ms; `undefined` when not given (the supervisor's default applies). */
function millis(field: string, value: unknown): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 2 ** 31 - 1) fail(field, 'must be a non-negative integer')
  return value
}

/** `spawnDaemon()`'s options after validation. */
export interface NormalizedSpawnOptions {
  base: NormalizedOptions
  user: string | undefined
  group: string | undefined
  chroot: string | undefined
  supervise: boolean
  restart: RestartPolicy
  restartDelay: number
  restartDelayMax: number
  restartBurst: number
  restartWindow: number
  notify: boolean
  forwardHup: boolean
  waitReady: boolean
  settle: number
  stopTimeout: number
  name: string | undefined
}

/** Validates `spawnDaemon()`'s options (a `TypeError` naming the field) and applies defaults. */
export function normalizeSpawnOptions(options: SpawnDaemonOptions): NormalizedSpawnOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('spawnDaemon: options must be an object')
  const raw = options as Record<string, unknown>
  const chroot = raw.chroot === undefined ? undefined : path.resolve(String(raw.chroot))
  if (raw.chroot !== undefined && (typeof raw.chroot !== 'string' || raw.chroot === '')) fail('chroot', 'must be a directory path')
  const baseInput: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(raw)) if (!SPAWN_KEYS.includes(k)) baseInput[k] = v
  const name = raw.name === undefined ? undefined : checkName(raw.name, 'spawnDaemon: option "name"')
  if (name !== undefined) {
    if (baseInput.pidFile === undefined) baseInput.pidFile = namedPidfile(name)
    if (baseInput.stdout === undefined && baseInput.stderr === undefined) baseInput.stdout = baseInput.stderr = namedLog(name)
  }
  // The command's cwd is checked by the kernel, in the daemon, like the executable: a missing
  // directory is a launch failure with its errno (ENOENT, EACCES…), not an invalid option. With
  // chroot it lives inside the new root.
  const cwd = typeof raw.cwd === 'string' && raw.cwd !== '' && !raw.cwd.includes('\0') ? raw.cwd : undefined
  if (cwd !== undefined) delete baseInput.cwd
  const base = normalizeOptions(baseInput)
  if (cwd !== undefined) base.cwd = chroot !== undefined ? path.posix.resolve('/', cwd) : path.resolve(cwd)
  // Like a shell or child_process.spawn(), the command runs where it was started from, so
  // relative paths in its arguments work; in a chroot, at the new root.
  else if (chroot === undefined) base.cwd = process.cwd()
  const restart = raw.restart === undefined ? 'never' : raw.restart
  if (restart !== 'never' && restart !== 'on-failure' && restart !== 'always') fail('restart', "must be 'never', 'on-failure' or 'always'")
  const supervise = raw.supervise === undefined ? base.pidFile !== undefined || restart !== 'never' || raw.waitReady === true || base.listen.length > 0 : raw.supervise
  if (typeof supervise !== 'boolean') fail('supervise', 'must be a boolean')
  if (!supervise && base.listen.length > 0) fail('listen', 'needs the supervisor (supervise: true): it holds the sockets')
  if (!supervise && restart !== 'never') fail('restart', 'needs the supervisor (supervise: true)')
  const notify = raw.notify === undefined ? Boolean(process.env.NOTIFY_SOCKET) : raw.notify
  if (typeof notify !== 'boolean') fail('notify', 'must be a boolean')
  if (!supervise && base.pidFile !== undefined) fail('pidFile', 'needs the supervisor (supervise: true): without it nothing would hold the lock')
  const forwardHup = raw.forwardHup === undefined ? false : raw.forwardHup
  if (typeof forwardHup !== 'boolean') fail('forwardHup', 'must be a boolean')
  const waitReady = raw.waitReady === undefined ? false : raw.waitReady
  if (typeof waitReady !== 'boolean') fail('waitReady', 'must be a boolean')
  if (waitReady && !supervise) fail('waitReady', 'needs the supervisor (supervise: true)')
  const settle = millis('settle', raw.settle)
  if (settle !== undefined && settle > 0 && !supervise) fail('settle', 'needs the supervisor (supervise: true)')
  const stopTimeout = millis('stopTimeout', raw.stopTimeout)
  if (raw.stopTimeout !== undefined && !supervise) fail('stopTimeout', 'needs the supervisor (supervise: true)')
  const user = idOrName('user', raw.user)
  const group = idOrName('group', raw.group)
  const restartDelay = millis('restartDelay', raw.restartDelay)
  const restartDelayMax = millis('restartDelayMax', raw.restartDelayMax)
  const restartBurst = millis('restartBurst', raw.restartBurst)
  const restartWindow = millis('restartWindow', raw.restartWindow)
  // Defaults only once every option is valid: an invalid one is a TypeError even where the
  // binding (which holds the defaults) cannot load.
  const d = supervisorDefaults()
  return {
    base,
    user,
    group,
    chroot,
    supervise,
    restart,
    restartDelay: restartDelay ?? d.restartDelay,
    restartDelayMax: restartDelayMax ?? d.restartDelayMax,
    restartBurst: restartBurst ?? d.restartBurst,
    restartWindow: restartWindow ?? d.restartWindow,
    notify,
    forwardHup,
    waitReady,
    settle: settle ?? d.settle,
    stopTimeout: stopTimeout ?? d.stopTimeout,
    name,
  }
}

/** The environment for `command` as `NAME=value` entries: ours, the options', and Electron's switch. */
export function envList(base: NormalizedOptions, command: string): string[] {
  const env: Record<string, string | undefined> = { ...process.env, ...base.env }
  // A Node script run with Electron's binary needs it to behave as Node.
  if (process.versions.electron && command === process.execPath) env.ELECTRON_RUN_AS_NODE = '1'
  return Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]))
}

/** A log file for the command (see `openOutput` in launch.ts), opened as the user it runs as where that matters. */
function openLog(target: OutputTarget, o: NormalizedSpawnOptions): number | undefined {
  return target === 'ignore' ? undefined : openOutput(target, { user: o.user, group: o.group })
}

/**
 * Checks, before anything is opened or created, that the command's cwd is a directory the
 * launcher can see, so a typo does not leave empty log files behind. The kernel checks again
 * in the daemon (after a user drop, or inside a chroot, which is not checked here).
 */
export function checkCwd(o: NormalizedSpawnOptions, command: string, caller = 'spawnDaemon'): void {
  if (o.chroot !== undefined) return
  let code: string | undefined
  try {
    if (!fs.statSync(o.base.cwd).isDirectory()) code = 'ENOTDIR'
  } catch (err) {
    code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN'
  }
  if (code !== undefined) {
    // The same words as the kernel's failure in the daemon: "<strerror> (<errno>)".
    const number = (os.constants.errno as Record<string, number | undefined>)[code]
    const text = number === undefined ? code : `${native().errnoMessage(number)} (${number})`
    throw launchError(code, `chdir failed: ${text}`, command, o.base.cwd, caller)
  }
}

/** The `reason` of a failure with error number `errno`: its name, `errno N` where the system has none. */
function errnoReason(errno: number): string {
  return native().errnoName(errno) ?? `errno ${errno}`
}

/**
 * A failed start of `command`, whoever saw it (this process, the binding or the supervisor):
 * `reason` is the errno name, `detail` the failure's words, which name the directory when the
 * daemon could not enter it.
 */
function launchError(reason: string, detail: string, command: string, cwd: string, caller = 'spawnDaemon', cause?: unknown): LaunchError {
  const words = detail.replace(/^chdir failed/, `chdir to ${cwd} failed`)
  const message = `${caller ? `${caller}: ` : ''}cannot start ${command}: ${words}`
  return cause === undefined ? new LaunchError(reason, message, command) : new LaunchError(reason, message, command, { cause })
}

/** What the launcher hands over to the supervisor, descriptors numbered as the supervisor sees them. */
export interface SupervisorHandoff {
  /** Where the supervisor reports how the start went. */
  readyFd?: number
  /** The pidfile's locked descriptor, and the pidfile. */
  lockFd?: number
  pidFile?: string
  /** Listening sockets, with their names. */
  listen?: ReadonlyArray<{ fd: number; name: string }>
  /** Start the command in a session of its own (`daemonkit run`). */
  newSession?: boolean
}

/**
 * The supervisor's arguments (after `argv[0]`) that make it run `command args` with `o`, ending
 * with `--`, the command and its arguments; the supervisor's protocol builds them.
 */
export function supervisorArgs(o: NormalizedSpawnOptions, command: string, args: readonly string[], handoff: SupervisorHandoff = {}): string[] {
  return native().supervisorArgv({
    program: command,
    args: [...args],
    readyFd: handoff.readyFd,
    lockFd: handoff.lockFd,
    pidfile: handoff.pidFile,
    stdout: o.base.stdout === 'ignore' ? undefined : o.base.stdout,
    stderr: o.base.stderr === 'ignore' ? undefined : o.base.stderr,
    restart: o.restart,
    restartDelay: o.restartDelay,
    restartDelayMax: o.restartDelayMax,
    restartBurst: o.restartBurst,
    restartWindow: o.restartWindow,
    user: o.user,
    group: o.group,
    chroot: o.chroot,
    cwd: o.base.cwd,
    umask: o.base.umask,
    notify: o.notify,
    forwardHup: o.forwardHup,
    newSession: handoff.newSession,
    waitReady: o.waitReady,
    listen: handoff.listen?.map((l) => ({ fd: l.fd, name: l.name })),
    stopTimeout: o.stopTimeout,
    // A graceful restart waits for readiness as long as a start; the settle window is for
    // commands that do not say READY=1.
    upgradeTimeout: o.waitReady ? o.base.readyTimeout : undefined,
    settle: o.waitReady ? undefined : o.settle,
  })
}

/** Reads the supervisor's one-line report (see `decodeSupervisorReport`), without its newline. */
function readReport(fd: number, timeoutMs: number): Promise<{ line: string | undefined; timedOut: boolean }> {
  return new Promise((resolve) => {
    let bytes = Buffer.alloc(0)
    let finished = false
    const done = (line: string | undefined, timedOut = false): void => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      reader.destroy()
      resolve({ line, timedOut })
    }
    const timer = setTimeout(() => done(undefined, true), timeoutMs)
    const reader = readPipe(
      fd,
      (d) => {
        bytes = Buffer.concat([bytes, d])
        const nl = bytes.indexOf(10)
        if (nl >= 0) done(bytes.subarray(0, nl).toString('utf8'))
      },
      () => done(bytes.length === 0 ? undefined : bytes.toString('utf8')),
    )
  })
}

/**
 * Keeps how the daemon was started beside its pidfile, so `daemonkit restart` needs no command
 * line. Best effort: a start does not fail for want of it (restart then asks for the command).
 */
function recordState(o: NormalizedSpawnOptions, command: string, args: readonly string[], options: SpawnDaemonOptions): void {
  const pidFile = o.base.pidFile as string
  const kept: Record<string, unknown> = { ...options, pidFile, cwd: o.base.cwd }
  for (const key of ['stdout', 'stderr'] as const) if (o.base[key] !== 'ignore') kept[key] = o.base[key]
  // Resolved paths: a restart from another folder must bind and chroot to the same places.
  if (o.base.listen.length > 0) kept.listen = o.base.listen.map((l) => ({ ...l }))
  if (o.chroot !== undefined) kept.chroot = o.chroot
  if (o.supervise) kept.stopTimeout = o.stopTimeout
  try {
    writeState(pidFile, { ...(o.name === undefined ? {} : { name: o.name }), command, args: [...args], cwd: o.base.cwd, options: kept, startedAt: new Date().toISOString() })
  } catch {
    // an unwritable folder: the pidfile itself was written by the supervisor, which may be root
  }
}

/**
 * Launches any executable as a daemon (double fork, new session, no terminal, stdio on
 * `/dev/null` or log files, no inherited descriptors) and resolves once it has exec'd.
 *
 * With a `pidFile` (or a restart policy) it runs under daemonkit's small native supervisor,
 * which holds the pidfile lock for the command's whole life; the pidfile then names the
 * supervisor. An exec failure (missing binary, not executable, bad cwd) rejects with a
 * `LaunchError` whose `reason` is the errno name and `path` the command.
 */
export async function spawnDaemon(command: string, args: readonly string[] = [], options: SpawnDaemonOptions = {}): Promise<SpawnedDaemon> {
  if (typeof command !== 'string' || command === '' || command.includes('\0')) throw new TypeError('spawnDaemon: command must be a non-empty string')
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string' && !a.includes('\0'))) {
    throw new TypeError('spawnDaemon: args must be an array of strings')
  }
  const o = normalizeSpawnOptions(options)
  const n = native()
  checkCwd(o, command)
  if (o.name !== undefined) ensureRegistry()
  const env = envList(o.base, command)

  if (!o.supervise) {
    const stdout = openLog(o.base.stdout, o)
    const stderr = o.base.stderr === o.base.stdout ? stdout : openLog(o.base.stderr, o)
    try {
      const { pid } = n.launch({
        program: command,
        args: [command, ...args],
        env,
        stdout,
        stderr,
        passFds: [],
        cwd: o.base.cwd,
        umask: o.base.umask,
        user: o.user,
        group: o.group,
        chroot: o.chroot,
      })
      return { pid, commandPid: pid }
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown }
      throw launchError(typeof e.code === 'string' ? e.code : 'EUNKNOWN', String(e.message), command, o.base.cwd, 'spawnDaemon', err)
    } finally {
      for (const fd of new Set([stdout, stderr])) if (fd !== undefined) closeFd(fd)
    }
  }

  const supervisor = supervisorPath()
  const lock = o.base.pidFile === undefined ? undefined : lockPidfile(o.base.pidFile)
  let reportRead: number | undefined
  let handle: ReturnType<typeof n.openProcess> | undefined
  let sockets: BoundSockets | undefined
  try {
    // Bound here, as the caller (root binds a privileged port for a command run as a user).
    // A unix socket's file is the command's: its user and group, and a mode by its umask.
    if (o.base.listen.length > 0) sockets = bindListeners(o.base.listen, { user: o.user, group: o.group, umask: o.base.umask })
    const [r, w] = n.pipe()
    reportRead = r
    // The passed descriptors become 3, 4, … in the supervisor, in this order.
    const firstSocket = lock === undefined ? 4 : 5
    const argv = supervisorArgs(o, command, args, {
      readyFd: 3,
      ...(lock === undefined ? {} : { lockFd: 4, pidFile: lock.path }),
      listen: sockets?.names.map((name, i) => ({ fd: firstSocket + i, name })),
    })
    let pid: number
    try {
      pid = n.launch({
        program: supervisor,
        args: [supervisor, ...argv],
        env,
        passFds: [w, ...(lock === undefined ? [] : [lock.fd]), ...(sockets?.fds ?? [])],
        cwd: '/',
      }).pid
    } finally {
      closeFd(w)
    }
    // Opened now, while the supervisor cannot have been reaped: any later signal reaches it or nobody.
    try {
      handle = n.openProcess(pid)
    } catch {
      handle = undefined
    }
    const report = await readReport(r, o.base.readyTimeout + (o.waitReady ? 0 : o.settle))
    reportRead = undefined
    const decoded = report.line === undefined ? null : n.decodeSupervisorReport(report.line)
    if (decoded?.kind === 'ready') {
      lock?.release()
      sockets?.close()
      if (o.base.pidFile !== undefined) recordState(o, command, args, options)
      return { pid, commandPid: decoded.pid }
    }
    if (decoded?.kind === 'notReady') {
      await handle?.waitExit(2_000)
      const { status, stderr } = decoded
      const when = o.waitReady ? 'before it was ready' : `within ${o.settle} ms of its start, so it did not start`
      throw new ReadinessError(pid, 'exited', status, stderr, `exited with status ${status} ${when}`, `${command} (supervisor pid ${pid})`)
    }
    if (decoded?.kind === 'fail') {
      await handle?.waitExit(2_000)
      const reason = errnoReason(decoded.errno)
      if (decoded.stage === 'pidfile') throw new PidfileError(o.base.pidFile as string, reason, decoded.message.trim())
      throw launchError(reason, decoded.message, command, o.base.cwd)
    }
    if (report.timedOut && handle) {
      // SIGTERM first: the supervisor passes it on and, once the command has exited, ends what
      // it left (SIGKILL after 3 s, reaped within 2 s more), so give it that long; SIGKILL if it
      // does not end (then its guard ends the command's process group and cgroup).
      for (const [signo, wait] of [[15, 8_000], [9, 2_000]]) {
        try {
          handle.kill(signo)
        } catch {
          break // exited meanwhile
        }
        if (await handle.waitExit(wait)) break
      }
    }
    await handle?.waitExit(2_000)
    throw report.timedOut
      ? new ReadinessError(pid, 'timeout', undefined, '', `did not report within ${o.base.readyTimeout} ms and was killed`, `the supervisor (pid ${pid}) of ${command}`)
      : new ReadinessError(pid, 'exited', undefined, report.line ?? '', 'exited without reporting', `the supervisor (pid ${pid}) of ${command}`)
  } catch (err) {
    sockets?.discard()
    if (reportRead !== undefined) closeFd(reportRead)
    lock?.discard()
    throw err
  } finally {
    handle?.close()
  }
}
