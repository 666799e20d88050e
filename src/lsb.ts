import type { AlreadyRunningError } from './errors'
import { describeFailure, printable } from './failure'
import type { DaemonStatus, SignalResult, StopResult } from './manage'

/*
 * What an init-script action prints and the LSB exit code it ends with, for the `daemonkit`
 * command and for `Daemon#cli()`.
 */

/** LSB init-script exit codes, as returned by `cli()`. */
export const LSB = {
  ok: 0,
  /** status: dead, pidfile left behind; actions: generic failure. */
  deadOrFailed: 1,
  usage: 2,
  /** status: not running. */
  notRunning: 3,
  /** status: unknown; actions: insufficient privilege. */
  unknown: 4,
  /** actions that need a running daemon (reload) when it is not. */
  actionNotRunning: 7,
} as const

/** An LSB exit code. */
export type LsbCode = (typeof LSB)[keyof typeof LSB]

/** A line to print and the exit code that goes with it. */
export interface Report {
  line: string
  code: LsbCode
}

/** `start` found the daemon running already (which is success, as LSB wants). */
export function alreadyRunning(err: AlreadyRunningError): Report {
  return { line: err.pid === undefined ? 'already running (starting up)' : `already running (pid ${err.pid})`, code: LSB.ok }
}

/** `stop`: stopped, or not running (success either way). */
export function stopped(r: StopResult): Report {
  return { line: r.stopped ? `stopped (pid ${r.pid}${r.forced ? `, forced with ${r.signal}` : ''})` : 'not running', code: LSB.ok }
}

/**
 * A signal sent for an action (`reload`, `signal`): `sent` says it in words; `unknown()` why
 * nothing was signalled when the pidfile's state is not clear.
 */
export async function signalled(r: SignalResult, sent: (pid: number) => string, unknown: () => Promise<string>): Promise<Report> {
  if (r.sent) return { line: sent(r.pid), code: LSB.ok }
  if (r.reason === 'not-running') return { line: 'not running', code: LSB.actionNotRunning }
  return { line: `unknown: ${await unknown()}`, code: LSB.unknown }
}

/** Why nothing was signalled, in words, from the pidfile's status. */
export function unknownWhy(s: DaemonStatus): string {
  return s.state === 'unknown' ? s.reason : 'the pidfile names no pid'
}

/**
 * `status`. `pidFile` names the file in the "dead" line (else "the pidfile"); `stderrTail`
 * adds the last lines a failed command wrote.
 */
export function statusReport(s: DaemonStatus, { pidFile, stderrTail = false }: { pidFile?: string; stderrTail?: boolean } = {}): Report {
  switch (s.state) {
    case 'running': {
      const pids = s.commandPid === undefined ? `running (pid ${s.pid})` : `running (pid ${s.pid}, command pid ${s.commandPid})`
      return { line: `${pids}${s.unverified ? `; ${s.unverified}` : ''}`, code: LSB.ok }
    }
    case 'stopped':
      return { line: 'not running', code: LSB.notRunning }
    case 'failed': {
      const tail = stderrTail ? printable(s.stderr.trim()).split('\n').slice(-10).filter(Boolean).map((l) => `  ${l}`).join('\n') : ''
      return { line: `${describeFailure(s)}${tail ? `; last lines of stderr:\n${tail}` : ''}`, code: LSB.deadOrFailed }
    }
    case 'dead':
      return {
        line: `dead: ${pidFile ?? 'the pidfile'} is left behind${s.stalePid ? ` (it names pid ${s.stalePid})` : ''} and nobody holds its lock`,
        code: LSB.deadOrFailed,
      }
    default:
      return { line: `unknown: ${s.reason}`, code: LSB.unknown }
  }
}

/** The exit code of an action that failed with `err`: insufficient privilege, or a generic failure. */
export function failureCode(err: unknown): LsbCode {
  const reason = (err as { reason?: unknown } | null)?.reason
  return reason === 'EPERM' || reason === 'EACCES' ? LSB.unknown : LSB.deadOrFailed
}
