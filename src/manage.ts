import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { DaemonkitError, PidfileError } from './errors'
import { native } from './native'
import { closeFd } from './runtime'

/** What a pidfile says about its daemon, judged by its lock (never by `kill(pid, 0)`). */
export type DaemonStatus =
  /**
   * The lock is held and the file names this pid. `commandPid` is the supervised command's pid
   * when the pidfile belongs to daemonkit's supervisor (Linux).
   */
  | { state: 'running'; pid: number; commandPid?: number }
  /** No pidfile: not running. */
  | { state: 'stopped' }
  /**
   * The pidfile exists but nobody holds its lock: the daemon died without cleaning up.
   * `stalePid` is what the file names (if it names a valid pid; the process of that pid, if
   * any, is someone else now). `reason` says what is wrong with the content, if anything.
   */
  | { state: 'dead'; stalePid: number | undefined; reason: string | undefined }
  /**
   * The lock is held but the file names no valid pid (a daemon that is starting, or garbage),
   * or the path is unsafe (symlink, FIFO, directory, …). Nothing is ever signalled.
   */
  | { state: 'unknown'; reason: string }

/** The name of a signal, like `'SIGTERM'`. */
export type SignalName = NodeJS.Signals

/** Signalling failed for a reason other than the daemon not running (e.g. `EPERM`). */
export class SignalError extends DaemonkitError {
  /** The daemon's pid. */
  readonly pid: number
  /** The system error code, e.g. `EPERM` when the daemon belongs to another user. */
  readonly reason: string
  /** The pidfile. */
  readonly path: string

  constructor(pidFile: string, pid: number, reason: string, message: string, options?: { cause?: unknown }) {
    super('EDAEMONSIGNAL', message, options)
    this.pid = pid
    this.reason = reason
    this.path = pidFile
  }
}

interface Coded {
  code?: unknown
  message?: unknown
}

function absolute(pidFile: string, fn: string): string {
  if (typeof pidFile !== 'string' || pidFile === '' || pidFile.includes('\0')) {
    throw new TypeError(`${fn}: pidFile must be a non-empty string`)
  }
  return path.resolve(pidFile)
}

function signalNumber(signal: SignalName | number, fn: string): number {
  const n = typeof signal === 'number' ? signal : (os.constants.signals as Record<string, number | undefined>)[signal]
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 64) throw new TypeError(`${fn}: unknown signal ${String(signal)}`)
  return n
}

/** The child of `pid` if `pid` is daemonkit's supervisor (read from /proc on Linux). */
function supervisedCommand(pid: number): number | undefined {
  if (process.platform !== 'linux') return undefined
  try {
    if (path.basename(fs.readlinkSync(`/proc/${pid}/exe`)) !== 'daemonkit-supervise') return undefined
    const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')
    const first = Number(children[0])
    return Number.isInteger(first) && first > 1 ? first : undefined
  } catch {
    return undefined
  }
}

function probe(pidFile: string): DaemonStatus {
  const n = native() // UnsupportedPlatformError passes through as it is
  let p
  try {
    p = n.probePidfile(pidFile)
  } catch (err) {
    const e = err as Coded
    throw new PidfileError(pidFile, String(e.code), String(e.message), { cause: err })
  }
  switch (p.state) {
    case 'running': {
      const commandPid = supervisedCommand(p.pid as number)
      return commandPid === undefined ? { state: 'running', pid: p.pid as number } : { state: 'running', pid: p.pid as number, commandPid }
    }
    case 'stopped':
      return p.exists ? { state: 'dead', stalePid: p.stalePid ?? undefined, reason: p.reason ?? undefined } : { state: 'stopped' }
    default:
      return { state: 'unknown', reason: p.reason ?? 'the pidfile is locked but names no pid yet' }
  }
}

/**
 * Reports whether the daemon of `pidFile` runs. Judged by the lock: a file nobody locks is
 * `dead` whatever pid it names. Throws `PidfileError` if the file cannot be read (e.g. `EACCES`),
 * never "stopped" for a file it could not check.
 */
export async function status(pidFile: string): Promise<DaemonStatus> {
  return probe(absolute(pidFile, 'status'))
}

/** The outcome of `signal()`. */
export type SignalResult = { sent: true; pid: number } | { sent: false; reason: 'not-running' | 'unknown' }

type ProcessHandle = ReturnType<ReturnType<typeof native>['openProcess']>

/**
 * Opens a handle on the daemon that holds `pidFile`'s lock, or returns why there is none. The
 * lock is checked again after the handle is open: the handle (a pidfd on Linux) then names the
 * process that held the lock, and can never reach a later process that reuses the pid.
 */
function lockHolder(pidFile: string): { handle: ProcessHandle } | { reason: 'not-running' | 'unknown' } {
  const before = probe(pidFile)
  if (before.state === 'unknown') return { reason: 'unknown' }
  if (before.state !== 'running') return { reason: 'not-running' }
  if (before.pid <= 1) return { reason: 'unknown' }
  let handle: ProcessHandle
  try {
    handle = native().openProcess(before.pid)
  } catch (err) {
    const code = String((err as Coded).code)
    if (code === 'ESRCH') return { reason: 'not-running' } // exited between the two looks
    throw new SignalError(pidFile, before.pid, code, `cannot open process ${before.pid} (${pidFile}): ${String((err as Coded).message)}`, {
      cause: err,
    })
  }
  const after = probe(pidFile)
  if (after.state !== 'running' || after.pid !== before.pid) {
    handle.close()
    return { reason: after.state === 'unknown' ? 'unknown' : 'not-running' }
  }
  return { handle }
}

/** Sends `signo`; returns false when the daemon turned out to be gone (nothing was sent). */
function send(pidFile: string, handle: ProcessHandle, signo: number, name: string): boolean {
  // Without a pidfd the pid could have been recycled since the handle was opened: only a pid
  // that holds the lock right now is signalled.
  if (!handle.raceFree) {
    const now = probe(pidFile)
    if (now.state !== 'running' || now.pid !== handle.pid) return false
  }
  try {
    handle.kill(signo)
    return true
  } catch (err) {
    const code = String((err as Coded).code)
    if (code === 'ESRCH') return false // it exited meanwhile: nothing was sent
    const message =
      code === 'EPERM'
        ? `cannot send ${name} to pid ${handle.pid} (${pidFile}): permission denied, the daemon belongs to another user`
        : `cannot send ${name} to pid ${handle.pid} (${pidFile}): ${String((err as Coded).message)}`
    throw new SignalError(pidFile, handle.pid, code, message, { cause: err })
  }
}

/**
 * Sends `sig` to the daemon of `pidFile`, only if it holds the pidfile's lock at that moment.
 * A pidfile nobody locks, or one naming 0, 1, -1 or garbage, is never acted on.
 */
export async function signal(pidFile: string, sig: SignalName | number): Promise<SignalResult> {
  const file = absolute(pidFile, 'signal')
  const signo = signalNumber(sig, 'signal')
  const holder = lockHolder(file)
  if (!('handle' in holder)) return { sent: false, reason: holder.reason }
  let sent: boolean
  try {
    sent = send(file, holder.handle, signo, String(sig))
  } finally {
    holder.handle.close()
  }
  return sent ? { sent: true, pid: holder.handle.pid } : { sent: false, reason: 'not-running' }
}

/** Options of `stop()`. */
export interface StopOptions {
  /** The first signal. Default `'SIGTERM'`. */
  signal?: SignalName
  /** How long to wait after it before escalating, in ms. Default 10000. */
  timeout?: number
  /** The escalation signal. Default `'SIGKILL'`. */
  killSignal?: SignalName
  /** How long to wait after escalating, in ms. Default 5000. */
  killTimeout?: number
}

/** The outcome of `stop()`. */
export type StopResult =
  | {
      stopped: true
      /** The daemon's pid. */
      pid: number
      /** The signal that ended it: the first one, or the escalation signal if `forced`. */
      signal: SignalName
      /** Whether it had to be escalated. */
      forced: boolean
      /** Time from the first signal to the observed exit, in ms. */
      waitedMs: number
    }
  | { stopped: false; reason: 'not-running' }

/** The daemon outlived both the stop signal and the escalation signal. */
export class StopTimeoutError extends DaemonkitError {
  /** The daemon's pid. */
  readonly pid: number
  /** The pidfile. */
  readonly path: string

  constructor(pidFile: string, pid: number, waitedMs: number) {
    super('EDAEMONSTOPTIMEOUT', `daemon (pid ${pid}, ${pidFile}) is still running after ${Math.round(waitedMs)} ms`)
    this.pid = pid
    this.path = pidFile
  }
}

function positive(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 2 ** 31 - 1) {
    throw new TypeError(`stop: option "${field}" must be a non-negative number of milliseconds`)
  }
  return value
}

/** Removes a pidfile that nobody locks (taking the lock first, so a new daemon's file is never hit). */
export function removeStalePidfile(pidFile: string): void {
  const n = native()
  let acquired
  try {
    acquired = n.acquirePidfile(pidFile)
  } catch {
    return
  }
  if (acquired.fd === undefined) return // a new daemon holds it already
  try {
    n.removePidfile(pidFile, acquired.fd)
  } finally {
    closeFd(acquired.fd)
  }
}

/**
 * Stops the daemon of `pidFile`: sends `signal`, waits for it to exit (off the main thread,
 * woken by the exit itself), escalates to `killSignal` after `timeout`, and removes the
 * pidfile if the daemon could not. Stopping a daemon that is not running is success:
 * `{ stopped: false, reason: 'not-running' }`.
 */
export async function stop(pidFile: string, options: StopOptions = {}): Promise<StopResult> {
  const file = absolute(pidFile, 'stop')
  const first = options.signal ?? 'SIGTERM'
  const kill = options.killSignal ?? 'SIGKILL'
  const firstNo = signalNumber(first, 'stop')
  const killNo = signalNumber(kill, 'stop')
  const timeout = positive(options.timeout, 'timeout', 10_000)
  const killTimeout = positive(options.killTimeout, 'killTimeout', 5_000)

  const holder = lockHolder(file)
  if (!('handle' in holder)) {
    if (holder.reason === 'unknown') {
      throw new PidfileError(file, 'EPIDFILEUNSAFE', `${probeReason(file)}; refusing to signal anything`)
    }
    removeStalePidfile(file)
    return { stopped: false, reason: 'not-running' }
  }
  const { handle } = holder
  const started = performance.now()
  let forced = false
  try {
    send(file, handle, firstNo, first)
    if (!(await handle.waitExit(Math.ceil(timeout)))) {
      forced = true
      send(file, handle, killNo, kill)
      if (!(await handle.waitExit(Math.ceil(killTimeout)))) throw new StopTimeoutError(file, handle.pid, performance.now() - started)
    }
  } finally {
    handle.close()
  }
  const waitedMs = performance.now() - started
  removeStalePidfile(file)
  return { stopped: true, pid: handle.pid, signal: forced ? kill : first, forced, waitedMs }
}

function probeReason(file: string): string {
  const s = probe(file)
  return s.state === 'unknown' ? s.reason : `the pidfile is ${s.state}`
}
