import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { readSideFile } from './sidefile'

/**
 * How the last run of a supervised daemon failed, as its supervisor recorded it beside the
 * pidfile (`PIDFILE.failed`) when the command exited non-zero without a restart, died of a
 * signal, failed to start, or was given up after the restart burst limit.
 */
export interface DaemonFailure {
  /** The command's exit status, when it exited. */
  status: number | undefined
  /** The signal that ended it, when one did. */
  signal: NodeJS.Signals | undefined
  /** When the supervisor gave up (ISO 8601). */
  at: string
  /** How many times it had been restarted. */
  restarts: number
  /** The last lines of its stderr (empty when it had none to watch). */
  stderr: string
}

/** `PIDFILE.failed`: where the supervisor records a failure. */
export function failurePath(pidFile: string): string {
  return `${pidFile}.failed`
}

/** The recorded failure of the daemon of `pidFile`, if there is a readable one. */
export function readFailure(pidFile: string): DaemonFailure | undefined {
  let raw: { status?: unknown; signal?: unknown; at?: unknown; restarts?: unknown; stderr?: unknown }
  const text = readSideFile(failurePath(pidFile))
  if (text === undefined) return undefined
  try {
    raw = JSON.parse(text.slice(0, 65536)) as typeof raw
  } catch {
    return undefined
  }
  if (typeof raw !== 'object' || raw === null) return undefined
  const signo = typeof raw.signal === 'number' ? raw.signal : undefined
  const signal = signo === undefined ? undefined : (Object.entries(os.constants.signals).find(([, n]) => n === signo)?.[0] as NodeJS.Signals | undefined)
  return {
    status: typeof raw.status === 'number' ? raw.status : undefined,
    signal,
    at: new Date(typeof raw.at === 'number' ? raw.at : 0).toISOString(),
    restarts: typeof raw.restarts === 'number' ? raw.restarts : 0,
    stderr: typeof raw.stderr === 'string' ? raw.stderr : '',
  }
}

/**
 * Forgets the recorded failure of the daemon of `pidFile` (as `systemctl reset-failed`), so
 * `status()` says `stopped` again. A new start does it too. Returns whether there was one.
 */
export function resetFailed(pidFile: string): boolean {
  if (typeof pidFile !== 'string' || pidFile === '' || pidFile.includes('\0')) throw new TypeError('resetFailed: pidFile must be a non-empty string')
  try {
    fs.unlinkSync(failurePath(path.resolve(pidFile)))
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

/** One line about a failure: `failed: exited with status 3 at … after 4 restarts`. */
export function describeFailure(f: DaemonFailure): string {
  const how = f.signal !== undefined ? `killed by ${f.signal}` : `exited with status ${f.status ?? '?'}`
  const restarts = f.restarts > 0 ? ` after ${f.restarts} restart${f.restarts === 1 ? '' : 's'}` : ''
  return `failed: ${how} at ${f.at}${restarts}`
}

/**
 * `text` safe for a terminal: control characters other than newline and tab (escape sequences
 * included) and C1 controls are shown as `\xHH`.
 */
export function printable(text: string): string {
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}
