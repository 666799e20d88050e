/*
 * The pidfile lock as the launchers take it: the lock, the pid written under it, and the one
 * clean-up of a failed start (`PidfileLock#discard`). Small on purpose: the daemon loads it
 * before it is ready.
 */
import type { PidfileLock } from '../binding/index'
import { AlreadyRunningError, codeOf, messageOf, PidfileError } from './errors'
import { native } from './native'

export type { PidfileLock }

/**
 * Takes the pidfile's lock, or throws `AlreadyRunningError` / `PidfileError`. The lock is the
 * caller's until it calls `release()` (started) or `discard()` (failed: the pidfile goes too).
 */
export function lockPidfile(pidFile: string): PidfileLock {
  let acquired
  try {
    acquired = native().acquirePidfile(pidFile)
  } catch (err) {
    throw new PidfileError(pidFile, codeOf(err), messageOf(err), { cause: err })
  }
  if (acquired.foreign) {
    const named = acquired.foreignNamedPid
    throw new PidfileError(
      pidFile,
      'EFOREIGNLOCK',
      `${named === undefined || named === null ? 'the pidfile is locked with shared locks only, which no daemon holds' : `the pidfile is locked, but not by pid ${named} that it names`}: ` +
        'another process holds its lock, so whether a daemon runs cannot be told; refusing to start (find the holder with fuser -v or lsof)',
    )
  }
  if (acquired.running || acquired.lock === undefined) throw new AlreadyRunningError(pidFile, acquired.runningPid)
  if (acquired.replacedShared) {
    process.stderr.write(`daemonkit: ${pidFile} was held with shared locks only, which no daemon holds: replaced it with a new pidfile (the old one's readers keep theirs)\n`)
  }
  return acquired.lock
}

/** Writes `pid` into the locked pidfile, or throws `PidfileError` (a full disk, a hard link, …). */
export function writePidfile(lock: PidfileLock, pid: number): void {
  try {
    lock.writePid(pid)
  } catch (err) {
    throw new PidfileError(lock.path, codeOf(err), `cannot write pid ${pid} into the pidfile: ${messageOf(err).replace(/^writing the pidfile: /, '')}`, { cause: err })
  }
}

/** Takes the pidfile's lock and writes `pid` into it; on failure nothing is left behind. */
export function lockPidfileFor(pidFile: string, pid: number): PidfileLock {
  const lock = lockPidfile(pidFile)
  try {
    writePidfile(lock, pid)
  } catch (err) {
    lock.discard()
    throw err
  }
  return lock
}
