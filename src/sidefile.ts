import * as fs from 'node:fs'

/**
 * Reads a file kept beside a pidfile (`PIDFILE.state`, `.failed`, `.restarts`, `.command`) if it
 * can be trusted: a regular file owned by this user, root or one of `owners`, that nobody else
 * may write. A file another user planted beside a pidfile in a shared folder does not count, a
 * symlink is not followed and a FIFO does not block. Returns undefined for anything else.
 */
export function readSideFile(file: string, owners: readonly number[] = []): string | undefined {
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
    try {
      const st = fs.fstatSync(fd)
      const trusted = st.uid === 0 || st.uid === process.getuid?.() || owners.includes(st.uid)
      if (!st.isFile() || !trusted || (st.mode & 0o022) !== 0) return undefined
      return fs.readFileSync(fd, 'utf8')
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return undefined
  }
}
