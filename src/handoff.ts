import * as fs from 'node:fs'

import { codeOf } from './errors'
import { native } from './native'
import type { PidfileLock } from './launch'
import { closeFd, describeFd, writeAll, writeFd } from './runtime'

/** The environment variable that tells a re-executed script it is the daemon. */
export const HANDOFF_VAR = 'DAEMONKIT_HANDOFF'

/** The environment variable through which `ensureDaemon()` tells a helper its socket and pidfile. */
export const HELPER_VAR = 'DAEMONKIT_HELPER'

/** Descriptor numbers at which the launcher places the hand-off in the daemon. */
export const HANDOFF_FDS = { ready: 3, stderr: 4, lock: 5 } as const

/** What the launcher hands down to the daemon. */
export interface Handoff {
  /** Random token that the daemon echoes back, so the launcher trusts only its own daemon. */
  token: string
  /** Write end of the readiness pipe. */
  readyFd: number
  /** The final stderr target, put onto fd 2 at readiness. */
  stderrFd: number
  /** The locked pidfile descriptor, if there is a pidfile. */
  lockFd: number | undefined
  /** The pidfile's absolute path, if there is one. */
  pidFile: string | undefined
  /**
   * The launcher's `readyTimeout` in ms. The daemon enforces it too (plus a grace period), so
   * that it holds when the launcher is gone.
   */
  readyTimeout: number
  /**
   * The names of the listening sockets passed on, in order; they sit right after the hand-off's
   * own descriptors (see `firstSocketFd`).
   */
  listen: string[]
  /**
   * Set when the launcher is the running daemon, handing over to a new copy of itself (a
   * graceful restart): the pidfile is written only at readiness, and never removed by this
   * process before it, since the old daemon still serves under it.
   */
  takeover: boolean
}

/**
 * Where the listening sockets start: after the readiness pipe (3), the final stderr (4) and the
 * lock (5, when there is a pidfile). The hand-off's descriptors keep their fixed numbers, so the
 * sockets cannot start at 3 as in systemd's protocol; `listenFds()` gives their numbers.
 */
export function firstSocketFd(h: { lockFd: number | undefined }): number {
  return h.lockFd === undefined ? HANDOFF_FDS.lock : HANDOFF_FDS.lock + 1
}

/** The daemon's state, shared by every copy of this package loaded in the process. */
interface DaemonState {
  handoff: Handoff | undefined
  ready: boolean
  /** Set once `daemonize()` has adopted the hand-off: the pidfile is ours to remove. */
  adopted: boolean
  removed: boolean
  /**
   * The pidfile this process holds locked: the hand-off's (made on first use, so that loading
   * the package does not load the binding), or the one it took in the foreground.
   */
  lock: PidfileLock | undefined
  /** Running in the foreground under a supervisor (systemd): readiness goes to `$NOTIFY_SOCKET`. */
  foreground: boolean
  /** Set once a write to the relay found the launcher gone: fd 2 is the final target already. */
  launcherGone: boolean
  /** The daemon's own readiness deadline and, in a takeover, the watch on the old copy. */
  timers: NodeJS.Timeout[]
  /** Puts back `process.stderr` as Node defines it (see `watchLauncher`). */
  restoreStderr: (() => void) | undefined
  /** The listening sockets handed down, proven to be ones. */
  sockets: { fd: number; name: string }[]
  /** With a hand-off, where the daemon was started (taken before `daemonize()` moves to `cwd`):
   * a graceful restart starts the next copy there, so relative paths mean the same to it. */
  launchCwd: string | undefined
}

/** How long after the launcher's `readyTimeout` the daemon ends by itself (a launcher acts first). */
const DEADLINE_GRACE_MS = 1_000

/** How often a new copy in a graceful restart checks that the old copy still waits for it. */
const ORPHAN_CHECK_MS = 200

const STATE_KEY = Symbol.for('daemonkit.state')

/**
 * `v2:<token>:<ready fd>:<stderr fd>:<lock fd or ->:<readyTimeout ms>:<pidfile, URI-encoded, or empty>:<socket names, comma-separated, or empty>:<'takeover' or empty>`
 */
export function formatHandoff(h: Omit<Handoff, 'listen' | 'takeover'> & Partial<Pick<Handoff, 'listen' | 'takeover'>>): string {
  const sockets = (h.listen ?? []).join(',')
  // A fractional readyTimeout is accepted as an option; the marker carries whole milliseconds.
  const readyTimeout = Math.ceil(h.readyTimeout)
  return ['v2', h.token, h.readyFd, h.stderrFd, h.lockFd ?? '-', readyTimeout, encodeURIComponent(h.pidFile ?? ''), sockets, h.takeover ? 'takeover' : ''].join(':')
}

/** Why a marker cannot be read, or the hand-off it describes. */
export function parseHandoff(raw: string): Handoff | string {
  const parts = raw.split(':')
  if (parts.length !== 9 || parts[0] !== 'v2' || !/^[0-9a-f]{32}$/.test(parts[1])) return 'it is not in the format this version writes'
  const numberOf = (s: string): number | undefined => (/^[0-9]{1,10}$/.test(s) ? Number(s) : undefined)
  const readyFd = numberOf(parts[2])
  const stderrFd = numberOf(parts[3])
  const lockFd = parts[4] === '-' ? undefined : numberOf(parts[4])
  const readyTimeout = numberOf(parts[5])
  let pidFile: string | undefined
  try {
    pidFile = parts[6] === '' ? undefined : decodeURIComponent(parts[6])
  } catch {
    return 'its pidfile is not URI-encoded'
  }
  if (readyFd === undefined || stderrFd === undefined || readyTimeout === undefined || (lockFd === undefined && parts[4] !== '-')) {
    return 'it is not in the format this version writes'
  }
  const listen = parts[7] === '' ? [] : parts[7].split(',')
  if (listen.length > 64 || !listen.every((name) => /^[A-Za-z0-9_.-]{1,255}$/.test(name))) return 'its socket names are not in the format this version writes'
  if (parts[8] !== '' && parts[8] !== 'takeover') return 'it is not in the format this version writes'
  return { token: parts[1], readyFd, stderrFd, lockFd, pidFile, readyTimeout, listen, takeover: parts[8] === 'takeover' }
}

/**
 * Checks that the descriptors a marker names are what a launcher makes: the readiness pipe's
 * write end at fd 3, an output open for writing at fd 4, the pidfile at fd 5 holding its
 * exclusive lock through this very descriptor (same inode as the path, not a symlink), and a
 * pipe on fd 2 (the relay), other than the readiness pipe. Returns why not, or undefined.
 * A marker forged into the environment of a script run by hand fails here, so that its
 * descriptors (a log file on stdout, say) are never written to.
 */
function handoffProblem(h: Handoff): string | undefined {
  if (h.readyFd !== HANDOFF_FDS.ready || h.stderrFd !== HANDOFF_FDS.stderr) return 'its descriptor numbers are not the launcher\'s'
  if ((h.lockFd === undefined) !== (h.pidFile === undefined)) return 'it names a pidfile without a lock descriptor, or the reverse'
  if (h.lockFd !== undefined && h.lockFd !== HANDOFF_FDS.lock) return 'its descriptor numbers are not the launcher\'s'
  const ready = describeFd(h.readyFd)
  if (!ready || !ready.stat.isFIFO() || !ready.writable) return `descriptor ${h.readyFd} is not the write end of a pipe`
  const relay = describeFd(2)
  if (!relay || !relay.stat.isFIFO() || !relay.writable) return 'descriptor 2 is not the write end of a pipe'
  if (relay.stat.ino === ready.stat.ino && relay.stat.dev === ready.stat.dev) return 'descriptors 2 and 3 are the same pipe'
  const out = describeFd(h.stderrFd)
  if (!out || out.stat.isDirectory() || !out.writable) return `descriptor ${h.stderrFd} is not open for writing`
  if (h.lockFd !== undefined && h.pidFile !== undefined) {
    const problem = native().inheritedLockProblem(h.lockFd, h.pidFile)
    if (problem) return `descriptor ${h.lockFd} is not the locked pidfile ${h.pidFile}: ${problem}`
  }
  const first = firstSocketFd(h)
  for (let i = 0; i < h.listen.length; i++) {
    let listening = false
    try {
      listening = native().isListeningSocket(first + i)
    } catch {
      listening = false
    }
    if (!listening) return `descriptor ${first + i} is not a listening socket`
  }
  return undefined
}

/** Reads the marker; a marker that fails the checks is ignored, with a line on stderr. */
function takeHandoff(raw: string): Handoff | undefined {
  let problem: string | undefined
  const parsed = parseHandoff(raw)
  if (typeof parsed === 'string') problem = parsed
  else {
    try {
      problem = handoffProblem(parsed)
    } catch (err) {
      problem = `its descriptors cannot be checked here (${(err as Error).message})`
    }
  }
  if (problem === undefined) return parsed as Handoff
  say(`ignoring ${HANDOFF_VAR} in the environment, which no daemonkit launcher made for this process (${problem}); starting as a launcher`)
  return undefined
}

function state(): DaemonState {
  const g = globalThis as unknown as Record<symbol, DaemonState | undefined>
  let s = g[STATE_KEY]
  if (!s) {
    // Read the marker once and remove it at once, so that nothing the daemon spawns inherits it.
    const raw = process.env[HANDOFF_VAR]
    delete process.env[HANDOFF_VAR]
    s = {
      handoff: raw === undefined ? undefined : takeHandoff(raw),
      ready: false,
      adopted: false,
      removed: false,
      lock: undefined,
      foreground: false,
      launcherGone: false,
      timers: [],
      restoreStderr: undefined,
      sockets: [],
      launchCwd: undefined,
    }
    if (s.handoff) {
      try {
        s.launchCwd = process.cwd()
      } catch {
        // Deno without read permission: a graceful restart's next copy starts where this one is.
      }
      const first = firstSocketFd(s.handoff)
      s.sockets = s.handoff.listen.map((name, i) => ({ fd: first + i, name }))
    }
    g[STATE_KEY] = s
    if (s.handoff) {
      installExitReport(s)
      watchLauncher(s, s.handoff)
    }
  }
  return s
}

/** The directory a launched daemon was started in (see `DaemonState.launchCwd`). */
export function launchCwd(): string | undefined {
  return state().launchCwd
}

/** Says `line` on stderr as daemonkit; nowhere to say it is fine. */
function say(line: string): void {
  try {
    fs.writeSync(2, `daemonkit: ${line}\n`)
  } catch {
    // Nowhere to say it.
  }
}

/** Before readiness, tell the launcher our exit code; after, remove the pidfile we hold. */
function installExitReport(s: DaemonState): void {
  process.on('exit', (code) => {
    const h = s.handoff
    if (!h) return
    if (!s.ready) {
      try {
        writeFd(h.readyFd, `EXIT ${h.token} ${code}\n`)
      } catch {
        // The launcher is gone, so it cannot remove the pidfile: do it while the lock is ours
        // (not in a takeover: the pidfile still names the old daemon).
        if (!h.takeover) removeHeldPidfile(s)
      }
      return
    }
    removeOwnPidfile()
  })
}

/** The relay's reader is gone: from now on fd 2 is the final stderr target. */
function launcherGone(s: DaemonState, h: Handoff): void {
  if (s.launcherGone || s.ready) return
  s.launcherGone = true
  native().dup2(h.stderrFd, 2)
  say(`daemon (pid ${process.pid}): its launching process is gone; stderr goes here from now on`)
}

/**
 * The daemon's `process.stderr` until readiness: writes to fd 2 synchronously, and a write that
 * finds the relay's reader gone switches fd 2 to the final target and is written there.
 */
function makeRelay(s: DaemonState, h: Handoff): import('node:stream').Writable {
  const { Writable } = require('node:stream') as typeof import('node:stream')
  const relay = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      try {
        try {
          writeAll(2, chunk)
        } catch (err) {
          if (codeOf(err) !== 'EPIPE' || s.ready) throw err
          launcherGone(s, h)
          writeAll(2, chunk)
        }
        callback()
      } catch (err) {
        callback(err as Error)
      }
    },
  })
  Object.defineProperty(relay, 'fd', { value: 2, enumerable: true })
  return relay
}

/**
 * Makes the daemon independent of its launcher until it is ready.
 *
 * - `process.stderr` writes to fd 2 synchronously until readiness, and a write that finds the
 *   relay's reader gone (`EPIPE`: the launcher was killed, or its own stderr closed) switches
 *   fd 2 to the final target and is written there, instead of destroying the stream and
 *   throwing into the app.
 * - The launcher's `readyTimeout` is enforced here too, a moment later: a daemon whose
 *   launcher is gone does not wait for readiness forever.
 */
function watchLauncher(s: DaemonState, h: Handoff): void {
  const original = Object.getOwnPropertyDescriptor(process, 'stderr')
  // Made on the first use of process.stderr: node:stream need not load for a daemon that says
  // nothing before it is ready.
  let relay: import('node:stream').Writable | undefined
  const relayStream = (): import('node:stream').Writable => (relay ??= makeRelay(s, h))
  Object.defineProperty(process, 'stderr', { configurable: true, enumerable: true, get: relayStream })
  try {
    // The global console may have bound process.stderr already: it writes where process.stderr
    // points now (the relay until readiness, Node's own stream after).
    Object.defineProperty(console, '_stderr', {
      configurable: true,
      enumerable: false,
      get: () => process.stderr,
      set: (value: unknown) => Object.defineProperty(console, '_stderr', { configurable: true, enumerable: false, writable: true, value }),
    })
  } catch {
    // Not a console that has one.
  }
  s.restoreStderr = () => {
    if (original) Object.defineProperty(process, 'stderr', original)
  }

  // setTimeout fires at once for anything above 2^31-1 ms: cap it (that is 24.8 days).
  const deadline = setTimeout(() => endNotReady(s, h), Math.min(h.readyTimeout + DEADLINE_GRACE_MS, 2 ** 31 - 1))
  deadline.unref()
  s.timers.push(deadline)
  if (!h.takeover) return
  // The old copy is the readiness pipe's only reader: once none is left (it was stopped, or
  // gave this copy up), this one ends now, not at its deadline or its readiness.
  const watch = setInterval(() => {
    try {
      if (native().peerClosed(h.readyFd)) endOrphanedTakeover(s, h)
    } catch {
      clearInterval(watch) // cannot be told here: the deadline and ready() still are
    }
  }, ORPHAN_CHECK_MS)
  watch.unref()
  s.timers.push(watch)
}

/**
 * The copy that started this one in a graceful restart no longer waits for it: stopped (or
 * killed) while this one started. Running on would leave a daemon that nobody can find or stop:
 * end instead. The pidfile still names the old copy: it is removed only once that copy has ended
 * (a killed one could not remove it), never while it may serve on under it.
 */
function endOrphanedTakeover(s: DaemonState, h: Handoff): never {
  launcherGone(s, h)
  say(`graceful restart: the old copy ended before this new one (pid ${process.pid}) was ready; ending too`)
  const { namedProcessEnded } = require('./proc') as typeof import('./proc')
  if (h.pidFile !== undefined && namedProcessEnded(h.pidFile)) removeHeldPidfile(s)
  process.exit(1)
}

/**
 * The daemon's own readiness deadline passed: its launcher did not end it (it is gone). Tells
 * a launcher that may still be there, says why in the final stderr target, removes the pidfile
 * (the lock is still ours) and exits 1.
 */
function endNotReady(s: DaemonState, h: Handoff): void {
  if (s.ready) return
  try {
    writeFd(h.readyFd, `TIMEOUT ${h.token} ${process.pid}\n`)
  } catch {
    // The launcher is gone.
  }
  try {
    s.launcherGone = true
    native().dup2(h.stderrFd, 2)
    fs.writeSync(
      2,
      `daemonkit: daemon (pid ${process.pid}) was not ready after ${h.readyTimeout} ms (readyTimeout) and its launcher ` +
        'did not end it; ending, and removing its pidfile\n',
    )
  } catch {
    // Nowhere to say it.
  }
  if (!h.takeover) removeHeldPidfile(s)
  process.exit(1)
}

/** The hand-off of this process, if it was launched as a daemon and has not adopted it yet. */
export function currentHandoff(): Handoff | undefined {
  return state().handoff
}

/** The listening sockets a launcher handed to this process (proven), as `{ fd, name }`. */
export function inheritedSockets(): { fd: number; name: string }[] {
  return state().sockets.map((l) => ({ ...l }))
}

/** True in the daemon role: from package load on when detached, after `daemonize()` in the foreground. */
export function isDaemon(): boolean {
  const s = state()
  return s.handoff !== undefined || s.foreground
}

/**
 * Marks the process adopted: from now on it removes the pidfile it holds (`lock`) when it
 * ends. `foreground` is set when there was no hand-off (running under systemd or in place).
 */
export function markAdopted(lock: PidfileLock | undefined, foreground: boolean): void {
  const s = state()
  s.adopted = true
  s.lock = lock
  if (foreground) {
    s.foreground = true
    process.on('exit', () => {
      notifySystemd('STOPPING=1')
      removeOwnPidfile()
    })
  }
}

/** Sends a state line to systemd, if it asked for notifications. */
export function notifySystemd(line: string): void {
  if (!process.env.NOTIFY_SOCKET) return
  try {
    native().sdNotify(line)
  } catch {
    // systemd went away; nothing to tell.
  }
}

/** Whether readiness has been reported. */
export function isReady(): boolean {
  return state().ready
}

/**
 * Reports readiness: switches fd 2 to the final stderr target, then tells the launcher. The
 * order matters: the launcher exits on READY, and must see EOF on the relay pipe by then.
 */
export function reportReady(): void {
  const s = state()
  const h = s.handoff
  if (s.ready) return
  if (!h) {
    s.ready = true
    if (s.foreground) notifySystemd(`READY=1\nMAINPID=${process.pid}`)
    return
  }
  const n = native()
  for (const timer of s.timers) clearTimeout(timer)
  // A takeover names itself in the pidfile only now, once it can serve.
  if (h.takeover) handoffLock()?.replacePid(process.pid)
  n.dup2(h.stderrFd, 2)
  closeFd(h.stderrFd)
  s.ready = true
  s.restoreStderr?.()
  try {
    writeFd(h.readyFd, `READY ${h.token} ${process.pid}\n`)
  } catch (err) {
    if (codeOf(err) !== 'EPIPE') throw err
    if (h.takeover) endOrphanedTakeover(s, h)
    // The launcher is gone (killed while it waited): nobody to tell, and the daemon runs on.
    say(`daemon (pid ${process.pid}) is ready; its launching process is gone, so nobody was told`)
  } finally {
    closeFd(h.readyFd)
  }
}

/**
 * This daemon handed its pidfile to a new copy of itself (a graceful restart): from now on it
 * leaves the pidfile alone when it ends.
 */
export function releasePidfile(): void {
  const s = state()
  s.removed = true
}

/** Unlinks the pidfile while still holding its lock, if this daemon adopted it. Idempotent. */
export function removeOwnPidfile(): void {
  const s = state()
  if (s.adopted) removeHeldPidfile(s)
}

/**
 * The hand-off's pidfile lock as a handle, made on first use; `undefined` without a hand-off
 * or a pidfile.
 */
export function handoffLock(): PidfileLock | undefined {
  const s = state()
  const h = s.handoff
  if (s.lock === undefined && h?.lockFd !== undefined && h.pidFile !== undefined) s.lock = native().PidfileLock.inherited(h.lockFd, h.pidFile)
  return s.lock
}

/** Unlinks the pidfile this process holds locked, once; the lock stays held until exit. */
function removeHeldPidfile(s: DaemonState): void {
  const lock = handoffLock()
  if (s.removed || lock === undefined) return
  s.removed = true
  try {
    lock.remove()
  } catch {
    // A pidfile nobody locks reads as "not running" anyway.
  }
}

// Take the hand-off as soon as the package loads.
state()
