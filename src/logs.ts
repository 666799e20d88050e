import * as fs from 'node:fs'

/**
 * The last `n` lines of `file` (read from at most its last 1 MiB), and where they end, for
 * `follow()` to go on from there.
 */
export function lastLines(file: string, n: number): { text: string; end: number; ino: number } {
  const fd = fs.openSync(file, 'r')
  try {
    const st = fs.fstatSync(fd)
    const size = st.size
    const length = n <= 0 ? 0 : Math.min(size, 1 << 20)
    const buf = Buffer.alloc(length)
    fs.readSync(fd, buf, 0, length, size - length)
    const lines = buf.toString('utf8').split('\n')
    if (lines[lines.length - 1] === '') lines.pop()
    const last = n <= 0 ? [] : lines.slice(-n)
    return { text: last.length ? `${last.join('\n')}\n` : '', end: size, ino: st.ino }
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Follows `file` as `tail -F` does: new lines as they come, across a rotation (the path now
 * names another file: the old one is read to its end, then the new one from its start) and a
 * truncation (`copytruncate`). Resolves when `signal` aborts.
 */
export async function follow(
  file: string,
  write: (chunk: Buffer) => void,
  signal: AbortSignal,
  from?: { end: number; ino: number },
  interval = 200,
): Promise<void> {
  let fd: number | undefined
  let ino = -1
  let pos = 0
  const open = (fromEnd: boolean): void => {
    try {
      fd = fs.openSync(file, 'r')
      const st = fs.fstatSync(fd)
      ino = st.ino
      pos = !fromEnd ? 0 : from !== undefined && from.ino === st.ino && from.end <= st.size ? from.end : st.size
    } catch {
      fd = undefined
    }
  }
  const drain = (): void => {
    if (fd === undefined) return
    const buf = Buffer.alloc(65536)
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos)
      if (n <= 0) return
      pos += n
      write(buf.subarray(0, n))
    }
  }
  open(true)
  while (!signal.aborted) {
    await new Promise((resolve) => setTimeout(resolve, interval))
    if (fd !== undefined) {
      if (fs.fstatSync(fd).size < pos) pos = 0 // truncated in place
      drain()
    }
    let current: fs.Stats | undefined
    try {
      current = fs.statSync(file)
    } catch {
      current = undefined
    }
    if (current !== undefined && current.ino !== ino) {
      drain() // what was written to the old file meanwhile
      if (fd !== undefined) fs.closeSync(fd)
      open(false)
      drain()
    }
  }
  if (fd !== undefined) fs.closeSync(fd)
}
