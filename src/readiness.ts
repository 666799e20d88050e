import * as fs from 'node:fs'
import type * as netTypes from 'node:net'

import { ReadinessError } from './errors'
import { supervisorDefaults } from './defaults'
import { native } from './native'
import { closeFd, missingDenoPermission, runtimeName } from './runtime'

/*
 * The launcher's wait for its daemon: the readiness pipe, the relay of the daemon's startup
 * stderr, and what a daemon that failed before it was ready ends as.
 */

/** `node:net`, loaded on first use: the daemon role never needs it, and every ms of start-up counts. */
function net(): typeof netTypes {
  return require('node:net') as typeof netTypes
}

/** How long to wait for a failed daemon's stderr to close and for it to exit. */
export const FAILURE_GRACE_MS = 2_000

/** Closes `fd` if there is one, ignoring that it may be closed already. */
export function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return
  try {
    closeFd(fd)
  } catch {
    // Already closed.
  }
}

/** How often Bun and Deno look at the hand-off pipes. */
const POLL_MS = 5

/**
 * Reads the pipe at `fd` (ours to close) until end of file: `onData` per chunk, then `onEnd`
 * once (also on an error). Under Node a `net.Socket` does it; Bun's never reports data from a
 * pipe descriptor and Deno's `fs` refuses descriptors it did not open, so there the binding
 * reads what is available every few milliseconds.
 */
export function readPipe(fd: number, onData: (chunk: Buffer) => void, onEnd: () => void): { destroy: () => void } {
  if (runtimeName() === 'node') {
    const socket = new (net().Socket)({ fd, readable: true, writable: false })
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('close', onEnd)
    socket.on('error', () => onEnd())
    return { destroy: () => socket.destroy() }
  }
  const n = native()
  let timer: NodeJS.Timeout | undefined
  let open = true
  const close = (): void => {
    if (!open) return
    open = false
    clearTimeout(timer)
    closeQuietly(fd)
  }
  const tick = (): void => {
    try {
      while (open) {
        const chunk = n.readAvailable(fd)
        if (chunk === null) break
        if (chunk.length === 0) throw new Error('end of file')
        onData(chunk)
      }
    } catch {
      close()
      onEnd()
      return
    }
    if (open) timer = setTimeout(tick, POLL_MS)
  }
  // The first look is a turn later too: callbacks never run before the caller has our handle.
  timer = setTimeout(tick, 0)
  return { destroy: close }
}

/** How the wait for readiness ended. */
export type Outcome =
  | { kind: 'ready' }
  | { kind: 'exited'; exitCode: number | undefined }
  | { kind: 'timeout'; endedItself?: true }

/** Reads the readiness pipe and relays the daemon's startup stderr until one outcome. */
export function awaitReadiness(
  readyFd: number,
  relayFd: number,
  token: string,
  timeoutMs: number,
): { outcome: Promise<Outcome>; stderrTail: () => string; relayClosed: Promise<void>; close: () => void } {
  let tail = ''
  // Our own stderr may have no reader any more (`node app.js 2>&1 | head -2`): the relay then
  // stops copying, and the wait goes on.
  let relaying = true
  const stopRelaying = (): void => {
    relaying = false
  }
  process.stderr.on('error', stopRelaying)
  let relay: { destroy: () => void } | undefined
  const relayClosed = new Promise<void>((resolve) => {
    relay = readPipe(
      relayFd,
      (chunk) => {
        if (relaying && !process.stderr.destroyed) process.stderr.write(chunk)
        tail = (tail + chunk.toString('utf8')).slice(-supervisorDefaults().tailLimit)
      },
      resolve,
    )
  })
  let readyPipe: { destroy: () => void } | undefined
  const outcome = new Promise<Outcome>((resolve) => {
    let buffered = ''
    let exitCode: number | undefined
    const timer = setTimeout(() => resolve({ kind: 'timeout' }), timeoutMs)
    const settle = (o: Outcome): void => {
      clearTimeout(timer)
      resolve(o)
    }
    readyPipe = readPipe(
      readyFd,
      (chunk) => {
        buffered += chunk.toString('latin1')
        let nl
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const [word, from, value] = buffered.slice(0, nl).split(' ')
          buffered = buffered.slice(nl + 1)
          if (from !== token) continue
          if (word === 'READY') settle({ kind: 'ready' })
          else if (word === 'EXIT') exitCode = Number(value)
          else if (word === 'TIMEOUT') settle({ kind: 'timeout', endedItself: true }) // the daemon's own deadline passed first
        }
      },
      () => settle({ kind: 'exited', exitCode }),
    )
  })
  return {
    outcome,
    stderrTail: () => tail,
    relayClosed,
    close: () => {
      readyPipe?.destroy()
      relay?.destroy()
      process.stderr.removeListener('error', stopRelaying)
    },
  }
}

/** `promise`'s value, or `undefined` once `ms` have passed first (or it rejected). */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms)
    promise.then(
      (v) => {
        clearTimeout(timer)
        resolve(v)
      },
      () => {
        clearTimeout(timer)
        resolve(undefined)
      },
    )
  })
}

/**
 * Resolves whether `handle`'s process exited within `ms`. Asks every 10 ms on the main thread:
 * waiting on a worker thread needs libuv's thread pool, and where `RLIMIT_NPROC` leaves no
 * room for its threads libuv aborts the whole process.
 */
export async function waitExit(handle: { hasExited(): boolean }, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      if (handle.hasExited()) return true
    } catch {
      return true
    }
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * A hint for a daemon that never got ready under a small process limit: Node starts about seven
 * threads, each counted against `ulimit -u`, and hangs when it cannot create them.
 */
function processLimitHint(): string {
  let limits: string
  try {
    limits = fs.readFileSync('/proc/self/limits', 'utf8')
  } catch {
    return ''
  }
  const soft = /^Max processes\s+(\d+)/m.exec(limits)
  if (!soft || Number(soft[1]) > 256) return ''
  return ` (the process limit is ${soft[1]} (ulimit -u, RLIMIT_NPROC), counting every thread of this user; ` +
    'a Node process starts about seven, and hangs when it cannot create them)'
}

/** Sends SIGKILL through `handle`, if the process is still there. */
export function killQuietly(handle: { kill(signal: number): void } | undefined): void {
  try {
    handle?.kill(9)
  } catch {
    // Exited meanwhile.
  }
}

/**
 * The daemon `pid` failed before it was ready (`outcome`): makes sure it is gone, waits for the
 * rest of its stderr and returns the `ReadinessError` that says what happened.
 */
export async function notReady(
  pid: number,
  outcome: Exclude<Outcome, { kind: 'ready' }>,
  handle: { kill(signal: number): void; hasExited(): boolean } | undefined,
  watch: ReturnType<typeof awaitReadiness>,
  readyTimeout: number,
): Promise<ReadinessError> {
  if (outcome.kind === 'timeout') killQuietly(handle)
  if (handle && !(await waitExit(handle, FAILURE_GRACE_MS))) {
    killQuietly(handle)
    await waitExit(handle, FAILURE_GRACE_MS)
  }
  await withTimeout(watch.relayClosed, FAILURE_GRACE_MS)
  watch.close()
  const stderr = watch.stderrTail()
  if (outcome.kind === 'timeout') {
    const end = outcome.endedItself ? 'ended itself (exit code 1)' : 'was killed'
    return new ReadinessError(pid, 'timeout', undefined, stderr, `was not ready after ${readyTimeout} ms and ${end}${processLimitHint()}`, undefined, { relayed: true })
  }
  // The daemon is not our child: without its EXIT line, how it ended cannot be seen from here
  // (and Deno runs no 'exit' listener after an uncaught error).
  const unknown =
    runtimeName() === 'deno'
      ? 'exited without reporting how (an uncaught error, a signal, or an exit that skipped its exit handlers)'
      : 'exited without reporting how (a signal, or an exit that skipped its exit handlers)'
  const how = outcome.exitCode === undefined ? unknown : `exited with code ${outcome.exitCode}`
  const permission = runtimeName() === 'deno' ? missingDenoPermission(stderr) : undefined
  const why = permission
    ? `: it lacks Deno's ${permission.name} permission${permission.target ? ` (for ${permission.target})` : ''}. The daemon ` +
      `gets the launcher's command-line flags, not what was granted at a prompt: start it with ${permission.flag}`
    : ''
  return new ReadinessError(pid, 'exited', outcome.exitCode, stderr, `${how} before it was ready${why}`, undefined, { relayed: true })
}
