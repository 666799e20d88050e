import * as fs from 'node:fs'

import { native } from './native'

/** The environment variable that tells a re-executed script it is the daemon. */
export const HANDOFF_VAR = 'DAEMONKIT_HANDOFF'

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
}

/** The daemon's state, shared by every copy of this package loaded in the process. */
interface DaemonState {
  handoff: Handoff | undefined
  ready: boolean
  /** Set once `daemonize()` has adopted the hand-off: the pidfile is ours to remove. */
  adopted: boolean
  removed: boolean
  /** The pidfile this process holds locked, once adopted (detached or in the foreground). */
  lock: { fd: number; path: string } | undefined
  /** Running in the foreground under a supervisor (systemd): readiness goes to `$NOTIFY_SOCKET`. */
  foreground: boolean
}

const STATE_KEY = Symbol.for('daemonkit.state')

/** `v1:<token>:<ready fd>:<stderr fd>:<lock fd or ->:<pidfile, URI-encoded, or empty>` */
export function formatHandoff(h: Handoff): string {
  return ['v1', h.token, h.readyFd, h.stderrFd, h.lockFd ?? '-', encodeURIComponent(h.pidFile ?? '')].join(':')
}

function parseHandoff(raw: string): Handoff | undefined {
  const parts = raw.split(':')
  if (parts.length !== 6 || parts[0] !== 'v1' || !/^[0-9a-f]{32}$/.test(parts[1])) return undefined
  const fdOf = (s: string): number | undefined => (/^[0-9]+$/.test(s) ? Number(s) : undefined)
  const readyFd = fdOf(parts[2])
  const stderrFd = fdOf(parts[3])
  if (readyFd === undefined || stderrFd === undefined) return undefined
  return {
    token: parts[1],
    readyFd,
    stderrFd,
    lockFd: fdOf(parts[4]),
    pidFile: parts[5] === '' ? undefined : decodeURIComponent(parts[5]),
  }
}

function state(): DaemonState {
  const g = globalThis as unknown as Record<symbol, DaemonState | undefined>
  let s = g[STATE_KEY]
  if (!s) {
    // Read the marker once and remove it at once, so that nothing the daemon spawns inherits it.
    const raw = process.env[HANDOFF_VAR]
    delete process.env[HANDOFF_VAR]
    s = {
      handoff: raw === undefined ? undefined : parseHandoff(raw),
      ready: false,
      adopted: false,
      removed: false,
      lock: undefined,
      foreground: false,
    }
    g[STATE_KEY] = s
    if (s.handoff) installExitReport(s)
  }
  return s
}

/** Before readiness, tell the launcher our exit code; after, remove the pidfile we hold. */
function installExitReport(s: DaemonState): void {
  process.on('exit', (code) => {
    const h = s.handoff
    if (!h) return
    if (!s.ready) {
      try {
        fs.writeSync(h.readyFd, `EXIT ${h.token} ${code}\n`)
      } catch {
        // The launcher is gone; nothing to tell.
      }
      return
    }
    removeOwnPidfile()
  })
}

/** The hand-off of this process, if it was launched as a daemon and has not adopted it yet. */
export function currentHandoff(): Handoff | undefined {
  return state().handoff
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
export function markAdopted(lock: { fd: number; path: string } | undefined, foreground: boolean): void {
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
  n.dup2(h.stderrFd, 2)
  fs.closeSync(h.stderrFd)
  s.ready = true
  try {
    fs.writeSync(h.readyFd, `READY ${h.token} ${process.pid}\n`)
  } finally {
    fs.closeSync(h.readyFd)
  }
}

/** Unlinks the pidfile while still holding its lock, if this daemon adopted it. Idempotent. */
export function removeOwnPidfile(): void {
  const s = state()
  if (!s.adopted || s.removed || s.lock === undefined) return
  s.removed = true
  try {
    native().removePidfile(s.lock.path, s.lock.fd)
  } catch {
    // Best effort at exit: a pidfile nobody locks reads as "not running" anyway.
  }
}

// Take the hand-off as soon as the package loads.
state()
