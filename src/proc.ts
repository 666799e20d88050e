import * as fs from 'node:fs'

import { codeOf } from './errors'
import { readSideFile } from './sidefile'

/** The fields of /proc/PID/stat after the command name, the state first (Linux); throws when unreadable. */
function readStatFields(pid: number): string[] {
  const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  return text.slice(text.lastIndexOf(')') + 2).split(' ')
}

/** The fields of /proc/PID/stat after the command name (state, ppid, pgrp, …), or undefined. */
export function statFields(pid: number): string[] | undefined {
  try {
    return readStatFields(pid)
  } catch {
    return undefined
  }
}

/**
 * Whether the process that `pidFile` names has ended (gone, or a zombie not yet reaped), judged
 * by /proc; false when that cannot be told (no trustworthy file, no pid in it, no /proc, no
 * permission). The pidfile is read as a file beside it would be: not through a symlink, and a
 * FIFO planted there does not block.
 */
export function namedProcessEnded(pidFile: string): boolean {
  const pid = Number(readSideFile(pidFile)?.trim())
  if (!Number.isSafeInteger(pid) || pid < 2) return false
  try {
    return /^[ZX]$/.test(readStatFields(pid)[0])
  } catch (err) {
    return codeOf(err) === 'ENOENT'
  }
}
