import * as fs from 'node:fs'

import type { PidfileLock } from '../binding/index'
import { codeOf, LaunchError, LogfileError, messageOf } from './errors'
import { lockPidfile, writePidfile } from './pidlock'
import { formatHandoff, HANDOFF_FDS, HANDOFF_VAR } from './handoff'
import type { BoundSockets } from './listen'
import type * as ListenModule from './listen'
import { native } from './native'
import type { NormalizedOptions, OutputTarget } from './options'
import type * as ReadinessModule from './readiness'
import { denoReexecArgs, runtimeName } from './runtime'

export type { PidfileLock }

// The readiness watch (and node:net under it) loads once the daemon is launched: it is ready
// long before the daemon's Node has started, and the launch itself comes sooner.
/* eslint-disable @typescript-eslint/no-require-imports */
const readiness = (): typeof ReadinessModule => require('./readiness')
const listen = (): typeof ListenModule => require('./listen')
/* eslint-enable @typescript-eslint/no-require-imports */

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

/**
 * A running daemon handing over to a new copy of itself (a graceful restart): its locked
 * pidfile and its listening sockets, which stay its own whatever happens.
 */
export interface Takeover {
  lock: PidfileLock
  sockets: { fds: number[]; names: string[] }
  /** Where the new copy is exec'd: where the first one was launched (if known). */
  cwd: string | undefined
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
  const lock = takeover ? takeover.lock : opts.pidFile === undefined ? undefined : lockPidfile(opts.pidFile)
  /** The lock when it is ours to write, release or discard (not a takeover's). */
  const ownLock = takeover ? undefined : lock
  let sockets: BoundSockets | undefined
  const toClose: number[] = []
  /** Our read ends, ours to close until awaitReadiness() owns them. */
  const readEnds: number[] = []
  let handle: ReturnType<typeof n.openProcess> | undefined
  let watch: ReturnType<typeof ReadinessModule.awaitReadiness> | undefined
  try {
    if (takeover) sockets = { ...takeover.sockets, close: () => {}, discard: () => {} }
    else if (opts.listen.length > 0) sockets = listen().bindListeners(opts.listen, { umask: opts.umask })
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
      lockFd: lock === undefined ? undefined : HANDOFF_FDS.lock,
      pidFile: opts.pidFile,
      readyTimeout: opts.readyTimeout,
      listen: sockets?.names ?? [],
      takeover: takeover !== undefined,
    })
    const env = { ...process.env, ...opts.env, [HANDOFF_VAR]: marker }
    const passFds = [readyWrite, finalStderrFd, ...(lock === undefined ? [] : [lock.fd]), ...(sockets?.fds ?? [])]
    let pid: number
    try {
      pid = n.launch({
        program: process.execPath,
        args,
        argsBytes,
        env: Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`])),
        stdout: stdoutFd,
        stderr: relayWrite,
        passFds,
        cwd: takeover?.cwd,
      }).pid
    } catch (err) {
      throw new LaunchError(codeOf(err), `daemonize: launching ${process.execPath} failed: ${messageOf(err)}`, process.execPath, { cause: err })
    }
    // Our copies of the daemon's ends must close, or we would never see EOF.
    const { awaitReadiness, closeQuietly, FAILURE_GRACE_MS, killQuietly, notReady, waitExit, withTimeout } = readiness()
    for (const fd of toClose.splice(0)) closeQuietly(fd)

    try {
      handle = n.openProcess(pid)
    } catch {
      handle = undefined // Already exited and reaped: the readiness pipe tells the rest.
    }
    if (ownLock) {
      try {
        writePidfile(ownLock, pid)
      } catch (err) {
        // A daemon whose pidfile does not name it must not run: no one could find or stop it.
        if (handle) {
          killQuietly(handle)
          await waitExit(handle, FAILURE_GRACE_MS)
        }
        throw err
      }
    }
    watch = awaitReadiness(readyRead, relayRead, token, opts.readyTimeout)
    readEnds.length = 0
    const outcome = await watch.outcome
    if (outcome.kind !== 'ready') throw await notReady(pid, outcome, handle, watch, opts.readyTimeout)
    await withTimeout(watch.relayClosed, 200)
    watch.close()
    handle?.close()
    ownLock?.release()
    sockets?.close()
    return { pid }
  } catch (err) {
    // Failure: the daemon is gone; remove the pidfile while we still hold the lock.
    for (const fd of [...toClose, ...readEnds]) readiness().closeQuietly(fd)
    sockets?.discard()
    watch?.close()
    handle?.close()
    ownLock?.discard()
    throw err
  }
}
