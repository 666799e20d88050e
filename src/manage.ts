import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { PidfileError, SignalError, StopTimeoutError } from './errors'
import { supervisorDefaults } from './defaults'

import { readFailure, type DaemonFailure } from './failure'
import { statFields } from './proc'
import { readSideFile } from './sidefile'
import { PidfileState, type PidfileProbe } from '../binding/index'
import { native } from './native'

/** What a pidfile says about its daemon, judged by its lock (never by `kill(pid, 0)`). */
export type DaemonStatus =
  /**
   * The lock is held by the process the file names (proven on Linux through /proc/PID/fdinfo).
   * `commandPid` is the supervised command's pid when the pidfile belongs to daemonkit's
   * supervisor (Linux). `unverified` is set, saying why, when it could not be proven that `pid`
   * holds the lock: the daemon belongs to another user and we are not root, or the system
   * (macOS) offers no proof. `signal()` and `stop()` refuse to act on unverified evidence on
   * Linux.
   */
  | { state: 'running'; pid: number; commandPid?: number; unverified?: string }
  /** No pidfile: not running. */
  | { state: 'stopped' }
  /**
   * Not running, and the last run failed (see `DaemonFailure`), until the next start or
   * `resetFailed()`.
   */
  | ({ state: 'failed' } & DaemonFailure)
  /**
   * The pidfile exists but nobody holds its lock: the daemon died without cleaning up.
   * `stalePid` is what the file names (if it names a valid pid; the process of that pid, if
   * any, is someone else now). `reason` says what is wrong with the content, if anything.
   */
  | { state: 'dead'; stalePid: number | undefined; reason: string | undefined }
  /**
   * The lock is held but the file names no valid pid (a daemon that is starting, or garbage),
   * or the lock is held, but not by the process the file names (`namedPid`: someone else
   * locked the file), or the path is unsafe (symlink, FIFO, directory, …). Nothing is ever
   * signalled.
   */
  | { state: 'unknown'; reason: string; namedPid?: number }

/** The name of a signal, like `'SIGTERM'`. */
export type SignalName = NodeJS.Signals

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

/**
 * When `child` is a live child of `parent` that leads a process group of its own, as the
 * supervisor starts its command: its start time (clock ticks after boot); else undefined.
 */
function groupLeadingChild(child: number, parent: number): number | undefined {
  const fields = statFields(child) // undefined once it has exited
  if (fields === undefined) return undefined
  const [state, ppid, pgrp] = fields
  if (state === 'Z' || Number(ppid) !== parent || Number(pgrp) !== child) return undefined
  return Number(fields[19])
}

/** The command's pid if `pid` is daemonkit's supervisor of `pidFile` (read from /proc on Linux). */
function supervisedCommand(pid: number, pidFile: string): number | undefined {
  if (process.platform !== 'linux') return undefined
  try {
    if (path.basename(fs.readlinkSync(`/proc/${pid}/exe`)) !== supervisorDefaults().name) return undefined
    // Besides the command, the supervisor's children are, as a child subreaper, the command's
    // orphaned descendants (the guard is forked twice, so it is a child only where the
    // supervisor is PID 1 of a namespace, and it never leads a process group). An orphan that
    // left its group leads one too, and after a restart it is older than the command: the
    // supervisor names the command in PIDFILE.command, and a file that names any other process
    // counts for nothing. A name (comm) would prove nothing, any process can take any.
    const file = `${pidFile}.command`
    const published = readSideFile(file, [fs.statSync(`/proc/${pid}`).uid])
    if (published !== undefined) {
      const child = Number(published.trim())
      return child > 1 && groupLeadingChild(child, pid) !== undefined ? child : undefined
    }
    // One that cannot be read or trusted names nothing. Only a supervisor of an earlier version
    // publishes nothing at all: its oldest child leading a group.
    if (fs.lstatSync(file, { throwIfNoEntry: false }) !== undefined) return undefined
    let command: { pid: number; started: number } | undefined
    for (const entry of fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')) {
      const child = Number(entry)
      const started = Number.isInteger(child) && child > 1 ? groupLeadingChild(child, pid) : undefined
      if (started !== undefined && (command === undefined || started < command.started)) command = { pid: child, started }
    }
    return command?.pid
  } catch {
    return undefined
  }
}

type NativeProbe = PidfileProbe

function probeNative(pidFile: string): NativeProbe {
  const n = native() // UnsupportedPlatformError passes through as it is
  try {
    return n.probePidfile(pidFile)
  } catch (err) {
    const e = err as Coded
    throw new PidfileError(pidFile, String(e.code), String(e.message), { cause: err })
  }
}

function statusOf(p: NativeProbe, pidFile: string): DaemonStatus {
  switch (p.state) {
    case PidfileState.Running: {
      const pid = p.pid as number
      const commandPid = supervisedCommand(pid, pidFile)
      return {
        state: 'running',
        pid,
        ...(commandPid === undefined ? {} : { commandPid }),
        ...(p.unverified ? { unverified: p.unverified } : {}),
      }
    }
    case PidfileState.Stopped:
      return p.exists ? { state: 'dead', stalePid: p.stalePid ?? undefined, reason: p.reason ?? undefined } : { state: 'stopped' }
    case PidfileState.Foreign:
      return {
        state: 'unknown',
        reason: p.reason ?? 'the pidfile is locked by another process than the one it names',
        ...(typeof p.pid === 'number' ? { namedPid: p.pid } : {}),
      }
    default:
      return { state: 'unknown', reason: p.reason ?? 'the pidfile is locked but names no pid yet' }
  }
}

function probe(pidFile: string): DaemonStatus {
  return statusOf(probeNative(pidFile), pidFile)
}

/**
 * Whether `p` is evidence enough to signal its pid: the lock is held by that very process
 * (proven), or the platform offers no proof at all (macOS: the lock and the pid are all there
 * is). On Linux an unverifiable holder (another user's process) is never signalled.
 */
function actionable(pidFile: string, p: NativeProbe): boolean {
  if (p.state !== PidfileState.Running) return false
  if (p.unverified && p.unverifiedCode) {
    const pid = p.pid as number
    throw new SignalError(
      pidFile,
      pid,
      'EPERM',
      p.unverifiedCode === 'EACCES' || p.unverifiedCode === 'EPERM'
        ? `cannot signal pid ${pid} (${pidFile}): permission denied, the daemon belongs to another user (${p.unverified}); nothing is signalled on unverified evidence`
        : `cannot signal pid ${pid} (${pidFile}): ${p.unverified}; nothing is signalled on unverified evidence`,
    )
  }
  return true
}

/**
 * Reports whether the daemon of `pidFile` runs. Judged by the lock: a file nobody locks is
 * `dead` whatever pid it names. Throws `PidfileError` if the file cannot be read (e.g. `EACCES`),
 * never "stopped" for a file it could not check.
 */
export async function status(pidFile: string): Promise<DaemonStatus> {
  const file = absolute(pidFile, 'status')
  const s = probe(file)
  const failure = s.state === 'stopped' ? readFailure(file) : undefined
  return failure === undefined ? s : { state: 'failed', ...failure }
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
  const raw = probeNative(pidFile)
  const before = statusOf(raw, pidFile)
  if (before.state === 'unknown') return { reason: 'unknown' }
  if (before.state !== 'running' || !actionable(pidFile, raw)) return { reason: 'not-running' }
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
  // Proven again now that the handle is open: the process it names held the lock after the
  // handle existed, so a pid recycled in between can never be hit.
  let after: DaemonStatus
  let proven: boolean
  try {
    const rawAfter = probeNative(pidFile)
    after = statusOf(rawAfter, pidFile)
    proven = after.state === 'running' && after.pid === before.pid && actionable(pidFile, rawAfter)
  } catch (err) {
    handle.close()
    throw err
  }
  if (!proven) {
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
    const raw = probeNative(pidFile)
    if (raw.state !== PidfileState.Running || raw.pid !== handle.pid || !actionable(pidFile, raw)) return false
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

function positive(value: unknown, field: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 2 ** 31 - 1) {
    throw new TypeError(`stop: option "${field}" must be a non-negative number of milliseconds`)
  }
  return value
}

/**
 * Removes a pidfile nobody locks, only if it provably is one: a regular file with a single name
 * whose content reads as a pid (or is empty), never created, written or truncated, locked before
 * it is unlinked (so a new daemon's file is never hit). Anything else is left as it is.
 */
export function removeStalePidfile(pidFile: string): void {
  try {
    native().removeStalePidfile(pidFile)
  } catch {
    // Left in place: nobody holds its lock, so it reads as "not running" anyway.
  }
}

/** The stops under way in this process, by pidfile: concurrent calls share one. */
const stopsInFlight = new Map<string, Promise<StopResult>>()

/**
 * How long a process that was sent SIGKILL is given to be gone, beyond `killTimeout`: it cannot
 * refuse, but the kernel needs a moment to tear it down (more on a loaded machine).
 */
const KILL_GRACE_MS = 2_000

/**
 * Stops the daemon of `pidFile`: sends `signal` (and SIGCONT, so a stopped daemon can act on
 * it), waits for it to exit (off the main thread, woken by the exit itself), escalates to
 * `killSignal` after `timeout`, and removes the pidfile if the daemon could not. Stopping a
 * daemon that is not running is success: `{ stopped: false, reason: 'not-running' }`.
 *
 * Calls made in this process while a stop of the same pidfile is under way share that stop
 * and its result (their own options are not used).
 */
export async function stop(pidFile: string, options: StopOptions = {}): Promise<StopResult> {
  const file = absolute(pidFile, 'stop')
  const first = options.signal ?? 'SIGTERM'
  const kill = options.killSignal ?? 'SIGKILL'
  const firstNo = signalNumber(first, 'stop')
  const killNo = signalNumber(kill, 'stop')
  const timeout = positive(options.timeout, 'timeout', 10_000)
  const killTimeout = positive(options.killTimeout, 'killTimeout', 5_000)

  const running = stopsInFlight.get(file)
  if (running) return running
  const stopping = stopOnce(file, first, firstNo, kill, killNo, timeout, killTimeout)
  stopsInFlight.set(file, stopping)
  try {
    return await stopping
  } finally {
    if (stopsInFlight.get(file) === stopping) stopsInFlight.delete(file)
  }
}

/** Whether the process `pid` still holds the pidfile's lock (proven, where that is possible). */
function stillHolds(file: string, pid: number): boolean {
  try {
    const p = probeNative(file)
    return p.state === PidfileState.Running && p.pid === pid
  } catch {
    return true
  }
}

async function stopOnce(
  file: string,
  first: SignalName,
  firstNo: number,
  kill: SignalName,
  killNo: number,
  timeout: number,
  killTimeout: number,
): Promise<StopResult> {
  const holder = lockHolder(file)
  if (!('handle' in holder)) {
    if (holder.reason === 'unknown') {
      const raw = probeNative(file)
      const s = statusOf(raw, file)
      const reason = raw.state === PidfileState.Foreign ? 'EFOREIGNLOCK' : 'EPIDFILEUNSAFE'
      throw new PidfileError(file, reason, `${s.state === 'unknown' ? s.reason : `the pidfile is ${s.state}`}; refusing to signal anything`)
    }
    // Nothing was stopped: the file is left as it is (whatever it is), a stale pidfile reads
    // as "dead" and start takes it over.
    return { stopped: false, reason: 'not-running' }
  }
  const { handle } = holder
  const started = performance.now()
  let forced = false
  try {
    send(file, handle, firstNo, first)
    // A stopped (SIGSTOP, Ctrl-Z) daemon would keep a handled signal pending until continued.
    if (firstNo !== os.constants.signals.SIGKILL && firstNo !== os.constants.signals.SIGCONT) send(file, handle, os.constants.signals.SIGCONT, 'SIGCONT')
    if (!(await handle.waitExit(Math.ceil(timeout)))) {
      forced = true
      send(file, handle, killNo, kill)
      if (killNo !== os.constants.signals.SIGKILL) send(file, handle, os.constants.signals.SIGCONT, 'SIGCONT')
      if (!(await handle.waitExit(Math.ceil(killTimeout)))) {
        // SIGKILL cannot be refused, only take a moment; and a process that no longer holds
        // the lock is no longer the daemon, whatever is left of it.
        const gone =
          (killNo === os.constants.signals.SIGKILL && (await handle.waitExit(KILL_GRACE_MS))) || !stillHolds(file, handle.pid)
        if (!gone) throw new StopTimeoutError(file, handle.pid, performance.now() - started)
      }
    }
  } finally {
    handle.close()
  }
  const waitedMs = performance.now() - started
  removeStalePidfile(file)
  return { stopped: true, pid: handle.pid, signal: forced ? kill : first, forced, waitedMs }
}
