import * as fs from 'node:fs'
import type * as netTypes from 'node:net'

import { AlreadyRunningError, LaunchError, LogfileError, PidfileError, ReadinessError } from './errors'
import { formatHandoff, HANDOFF_FDS, HANDOFF_VAR } from './handoff'
import { bindListeners, type BoundSockets } from './listen'
import { native } from './native'
import type { NormalizedOptions, OutputTarget } from './options'
import { closeFd, denoReexecArgs, missingDenoPermission, runtimeName } from './runtime'

/** `node:net`, loaded on first use: the daemon role never needs it, and every ms of start-up counts. */
function net(): typeof netTypes {
  return require('node:net') as typeof netTypes
}

/** 16 random bytes as hex, read from the kernel (loading node:crypto would cost ~3 ms of launch). */
function randomToken(): string {
  const bytes = Buffer.alloc(16)
  const fd = fs.openSync('/dev/urandom', 'r')
  try {
    if (fs.readSync(fd, bytes, 0, 16, null) !== 16) throw new Error('short read from /dev/urandom')
  } finally {
    fs.closeSync(fd)
  }
  return bytes.toString('hex')
}

/** How much of the daemon's startup stderr is kept for error messages. */
const STDERR_TAIL = 8 * 1024
/** How long to wait for a failed daemon's stderr to close and for it to exit. */
const FAILURE_GRACE_MS = 2_000

interface ErrnoLike {
  code?: unknown
  message?: unknown
}

function codeOf(err: unknown): string {
  const code = (err as ErrnoLike | null)?.code
  return typeof code === 'string' ? code : 'EUNKNOWN'
}

function messageOf(err: unknown): string {
  const message = (err as ErrnoLike | null)?.message
  return typeof message === 'string' ? message : String(err)
}

/**
 * The raw bytes of this process's arguments after argv[0], from /proc/self/cmdline, when they
 * are the ones `expected` (execArgv and argv after argv[0]) was decoded from; else undefined.
 * Node decodes argv as UTF-8, replacing what is not valid UTF-8 with U+FFFD, so the strings
 * alone cannot give back such an argument.
 */
function rawArgs(expected: readonly string[]): Buffer[] | undefined {
  let cmdline: Buffer
  try {
    cmdline = fs.readFileSync('/proc/self/cmdline')
  } catch {
    return undefined
  }
  if (cmdline.length === 0 || cmdline[cmdline.length - 1] !== 0) return undefined
  const parts: Buffer[] = []
  for (let start = 0; start < cmdline.length; ) {
    const end = cmdline.indexOf(0, start)
    parts.push(cmdline.subarray(start, end))
    start = end + 1
  }
  const raw = parts.slice(1)
  if (raw.length !== expected.length) return undefined
  // Node makes the script's path absolute (process.argv[1]); the daemon starts in our cwd.
  const same = (bytes: Buffer, s: string): boolean => {
    const text = bytes.toString('utf8')
    return text === s || require('node:path').resolve(text) === s
  }
  return raw.every((bytes, i) => same(bytes, expected[i])) ? raw : undefined
}

/**
 * The raw bytes of the command line `reexecArgs()` gives, when some argument is not valid UTF-8
 * (Node shows it with U+FFFD); `undefined` when the strings are exact. Throws a `LaunchError`
 * (`EARGVENCODING`) when the bytes cannot be recovered (no /proc, or `process.title` changed).
 */
export function reexecArgBytes(args: readonly string[]): Buffer[] | undefined {
  const rest = args.slice(1)
  if (!rest.some((a) => a.includes('\uFFFD'))) return undefined
  const raw = rawArgs(rest)
  if (!raw) {
    throw new LaunchError(
      'EARGVENCODING',
      'daemonize: an argument of this process is not valid UTF-8, and its bytes cannot be recovered here ' +
        '(Node replaced them with U+FFFD); the daemon would get different arguments. Pass it encoded as UTF-8',
      process.argv[1],
    )
  }
  return [Buffer.from(args[0]), ...raw]
}

/**
 * The command line that runs this same script again: execArgv kept, `-e` code included. Under
 * Deno, whose execArgv does not show `run` and the permission flags, see `denoReexecArgs()`.
 */
export function reexecArgs(): string[] {
  if (runtimeName() === 'deno') return denoReexecArgs()
  // A binary made by `bun build --compile` shows its embedded entry point as argv[1]; it takes
  // its own arguments right after the executable.
  if (runtimeName() === 'bun' && process.argv[1]?.startsWith('/$bunfs/')) return [process.execPath, ...process.execArgv, ...process.argv.slice(2)]
  const evalFlags = new Set(['-e', '--eval', '-p', '--print'])
  const evaluates = process.execArgv.some((a) => evalFlags.has(a) || /^--(eval|print)=/.test(a))
  const script = process.argv[1]
  if (!evaluates && (script === undefined || script === '-')) {
    throw new LaunchError(
      'ENOREEXEC',
      'daemonize: this script was read from standard input, so it cannot be started again as the daemon; ' +
        'save it to a file and run that file',
    )
  }
  return [process.execPath, ...process.execArgv, ...process.argv.slice(1)]
}

/** Takes the pidfile's lock, or throws `AlreadyRunningError` / `PidfileError`. */
export function lockPidfile(pidFile: string): number {
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
  if (acquired.running || acquired.fd === undefined) throw new AlreadyRunningError(pidFile, acquired.runningPid)
  if (acquired.replacedShared) {
    process.stderr.write(`daemonkit: ${pidFile} was held with shared locks only, which no daemon holds: replaced it with a new pidfile (the old one's readers keep theirs)\n`)
  }
  return acquired.fd
}

/** Writes `pid` into the locked pidfile, or throws `PidfileError` (a full disk, a hard link, …). */
export function writePidfile(pidFile: string, fd: number, pid: number): void {
  try {
    native().writePid(fd, pid)
  } catch (err) {
    throw new PidfileError(pidFile, codeOf(err), `cannot write pid ${pid} into the pidfile: ${messageOf(err).replace(/^writing the pidfile: /, '')}`, { cause: err })
  }
}

/**
 * Opens a `stdout` / `stderr` target: `/dev/null`, or a log file for append (created 0640),
 * never through a symbolic link and, as root, never where another user could have prepared the
 * path, unless it is opened as `as.user`, the user the output comes from (see
 * crates/daemonkit-core/src/logfile.rs). Throws `LogfileError`.
 */
export function openOutput(target: OutputTarget, as: { user?: string; group?: string } = {}): number {
  if (target === 'ignore') return fs.openSync('/dev/null', 'w')
  try {
    return native().openLog(target, as.user, as.group)
  } catch (err) {
    throw new LogfileError(target, codeOf(err), messageOf(err), { cause: err })
  }
}

function closeQuietly(fd: number | undefined): void {
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

type Outcome =
  | { kind: 'ready' }
  | { kind: 'exited'; exitCode: number | undefined }
  | { kind: 'timeout'; endedItself?: true }

/** Reads the readiness pipe and relays the daemon's startup stderr until one outcome. */
function awaitReadiness(
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
        tail = (tail + chunk.toString('utf8')).slice(-STDERR_TAIL)
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

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
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
async function waitExit(handle: { hasExited(): boolean }, ms: number): Promise<boolean> {
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

/**
 * A running daemon handing over to a new copy of itself (a graceful restart): its locked
 * pidfile and its listening sockets, which stay its own whatever happens.
 */
export interface Takeover {
  lockFd: number
  sockets: { fds: number[]; names: string[] }
  /** Where the new copy is exec'd: where the first one was launched. */
  cwd: string
}

/**
 * The launcher's side of the hand-off: everything up to "ready" or a `ReadinessError`. With
 * `takeover`, the launcher is the running daemon: the lock and sockets are its own (never
 * removed nor closed here), and the new copy names itself in the pidfile when it is ready.
 */
export async function launchSelf(opts: NormalizedOptions, takeover?: Takeover): Promise<{ pid: number }> {
  const args = reexecArgs()
  const argsBytes = reexecArgBytes(args)
  const n = native()
  const lockFd = takeover ? takeover.lockFd : opts.pidFile === undefined ? undefined : lockPidfile(opts.pidFile)
  let sockets: BoundSockets | undefined
  const toClose: number[] = []
  /** Our read ends, ours to close until awaitReadiness() owns them. */
  const readEnds: number[] = []
  let launched: { pid: number } | undefined
  let handle: ReturnType<typeof n.openProcess> | undefined
  let watch: ReturnType<typeof awaitReadiness> | undefined
  try {
    if (takeover) sockets = { ...takeover.sockets, close: () => {}, discard: () => {} }
    else if (opts.listen.length > 0) sockets = bindListeners(opts.listen, { umask: opts.umask })
    const stdoutFd = opts.stdout === 'ignore' ? undefined : openOutput(opts.stdout)
    if (stdoutFd !== undefined) toClose.push(stdoutFd)
    const finalStderrFd = openOutput(opts.stderr)
    toClose.push(finalStderrFd)
    const [readyRead, readyWrite] = n.pipe()
    readEnds.push(readyRead)
    toClose.push(readyWrite)
    const [relayRead, relayWrite] = n.pipe()
    readEnds.push(relayRead)
    toClose.push(relayWrite)

    const token = randomToken()
    const marker = formatHandoff({
      token,
      readyFd: HANDOFF_FDS.ready,
      stderrFd: HANDOFF_FDS.stderr,
      lockFd: lockFd === undefined ? undefined : HANDOFF_FDS.lock,
      pidFile: opts.pidFile,
      readyTimeout: opts.readyTimeout,
      listen: sockets?.names ?? [],
      takeover: takeover !== undefined,
    })
    const env = { ...process.env, ...opts.env, [HANDOFF_VAR]: marker }
    const passFds = [readyWrite, finalStderrFd, ...(lockFd === undefined ? [] : [lockFd]), ...(sockets?.fds ?? [])]
    try {
      launched = n.launch({
        program: process.execPath,
        args,
        argsBytes,
        env: Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`])),
        stdout: stdoutFd,
        stderr: relayWrite,
        passFds,
        cwd: takeover?.cwd,
      })
    } catch (err) {
      throw new LaunchError(codeOf(err), `daemonize: launching ${process.execPath} failed: ${messageOf(err)}`, process.execPath, { cause: err })
    }
    // Our copies of the daemon's ends must close, or we would never see EOF.
    for (const fd of toClose.splice(0)) closeQuietly(fd)

    const pid = launched.pid
    try {
      handle = n.openProcess(pid)
    } catch {
      handle = undefined // Already exited and reaped: the readiness pipe tells the rest.
    }
    if (lockFd !== undefined && !takeover) {
      try {
        writePidfile(opts.pidFile as string, lockFd, pid)
      } catch (err) {
        // A daemon whose pidfile does not name it must not run: no one could find or stop it.
        if (handle) {
          try {
            handle.kill(9)
          } catch {
            // Exited meanwhile.
          }
          await waitExit(handle, FAILURE_GRACE_MS)
        }
        throw err
      }
    }
    watch = awaitReadiness(readyRead, relayRead, token, opts.readyTimeout)
    readEnds.length = 0
    const outcome = await watch.outcome
    if (outcome.kind === 'ready') {
      await withTimeout(watch.relayClosed, 200)
      watch.close()
      handle?.close()
      if (lockFd !== undefined && !takeover) closeQuietly(lockFd)
      sockets?.close()
      return { pid }
    }

    // Failure: make sure the daemon is gone, then remove the pidfile while we still hold the lock.
    if (outcome.kind === 'timeout' && handle) {
      try {
        handle.kill(9)
      } catch {
        // Exited meanwhile.
      }
    }
    if (handle && !(await waitExit(handle, FAILURE_GRACE_MS))) {
      try {
        handle.kill(9)
      } catch {
        // Exited meanwhile.
      }
      await waitExit(handle, FAILURE_GRACE_MS)
    }
    await withTimeout(watch.relayClosed, FAILURE_GRACE_MS)
    watch.close()
    handle?.close()
    const stderr = watch.stderrTail()
    if (outcome.kind === 'timeout') {
      const end = outcome.endedItself ? 'ended itself (exit code 1)' : 'was killed'
      throw new ReadinessError(pid, 'timeout', undefined, stderr, `was not ready after ${opts.readyTimeout} ms and ${end}${processLimitHint()}`, undefined, { relayed: true })
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
    throw new ReadinessError(pid, 'exited', outcome.exitCode, stderr, `${how} before it was ready${why}`, undefined, { relayed: true })
  } catch (err) {
    for (const fd of [...toClose, ...readEnds]) closeQuietly(fd)
    sockets?.discard()
    watch?.close()
    handle?.close()
    if (lockFd !== undefined && !takeover) {
      try {
        n.removePidfile(opts.pidFile as string, lockFd)
      } catch {
        // Leave it: nobody holds its lock, so it reads as "not running".
      }
      closeQuietly(lockFd)
    }
    throw err
  }
}
