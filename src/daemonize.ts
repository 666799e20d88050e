import { ReadinessError, UnsupportedPlatformError } from './errors'
import { currentHandoff, handoffLock, HELPER_VAR, inheritedSockets, isReady, markAdopted, notifySystemd, removeOwnPidfile, reportReady } from './handoff'
import type * as EnsureModule from './ensure'
import type * as LaunchModule from './launch'
import type * as ListenModule from './listen'
import type * as RegistryModule from './registry'
import type * as TakeoverModule from './takeover'
import { lockPidfileFor, writePidfile, type PidfileLock } from './pidlock'
import { native } from './native'
import { normalizeOptions, shouldDetach, type DaemonizeOptions, type NormalizedOptions, type OutputTarget } from './options'
import { closeFd } from './runtime'

// Loaded where they are used, so that a daemon loads only what it needs to become ready: the
// launcher's side, the helpers' defaults, binding in place, the registry, and the graceful
// restart's server (its socket is bound before readiness; node:net loads a turn after it).
/* eslint-disable @typescript-eslint/no-require-imports */
const launcher = (): typeof LaunchModule => require('./launch')
const ensure = (): typeof EnsureModule => require('./ensure')
const listen = (): typeof ListenModule => require('./listen')
const registry = (): typeof RegistryModule => require('./registry')
const takeover = (): typeof TakeoverModule => require('./takeover')
/* eslint-enable @typescript-eslint/no-require-imports */

/** What the daemon gets back from `daemonize()`. */
export interface DaemonHandle {
  /** The daemon's pid (`process.pid`). */
  readonly pid: number
  /** The pidfile's absolute path, if there is one. */
  readonly pidFile: string | undefined
  /**
   * Tells the launcher the daemon is ready, so that it exits 0 (needed with `ready: 'manual'`;
   * a no-op afterwards). From here on stderr goes to its final target.
   */
  ready(): void
  /**
   * Reopens the `stdout` / `stderr` log files at their paths and points fds 1 and 2 at them,
   * e.g. after `logrotate` moved them away (call it from a SIGHUP or SIGUSR1 handler).
   */
  reopenLogs(): void
  /**
   * Ends the daemon once `server` has had no connection open for `timeout` ms (default: the
   * `idleTimeout` given to `ensureDaemon()`); its pidfile is removed and, for a helper, its socket.
   */
  exitWhenIdle(server: import('node:net').Server, timeout?: number): void
}

let adoptedHandle: DaemonHandle | undefined

function signalCleanup(signal: NodeJS.Signals): void {
  const onSignal = (): void => {
    // Only when the app has no handler of its own: then this signal is meant to end us.
    if (process.listenerCount(signal) > 1) return
    notifySystemd('STOPPING=1')
    removeOwnPidfile()
    process.removeListener(signal, onSignal)
    process.kill(process.pid, signal) // die by the signal, as the default action would
    // Still here only as PID 1 (a container's first process), which the kernel shields from
    // its own signals' default action: end as if killed.
    process.exit(128 + (require('node:os') as typeof import('node:os')).constants.signals[signal])
  }
  process.on(signal, onSignal)
}

/** Points `fd` (1 or 2) at `target`, opened for append; `'ignore'` leaves it alone. */
function redirect(target: OutputTarget, fd: number): void {
  if (target === 'ignore') return
  const file = launcher().openOutput(target)
  try {
    native().dup2(file, fd)
  } finally {
    closeFd(file)
  }
}

/**
 * Becomes the daemon in place, without forking: under systemd (or another supervisor) the
 * process already is the service. Takes the pidfile lock itself.
 */
function adoptInPlace(opts: NormalizedOptions): PidfileLock | undefined {
  return opts.pidFile === undefined ? undefined : lockPidfileFor(opts.pidFile, process.pid)
}

/** The daemon's side: adopt the hand-off (or become the daemon in place) and report readiness. */
export function adopt(opts: NormalizedOptions): DaemonHandle {
  if (adoptedHandle) return adoptedHandle
  const handoff = currentHandoff()
  if (!handoff) {
    // Sockets from systemd (a socket unit) are used as they are; else the daemon binds its own.
    if (opts.listen.length > 0) listen().bindInPlace(opts.listen)
    return finishAdoption(opts, adoptInPlace(opts), true)
  }
  if (handoff.pidFile !== opts.pidFile) {
    throw new TypeError(
      `daemonize: the daemon was launched with pidFile ${JSON.stringify(handoff.pidFile)} but now ` +
        `asks for ${JSON.stringify(opts.pidFile)}; compute the options the same way in both roles`,
    )
  }
  const n = native()
  // Our children must not inherit the lock (they would keep "running" true after we die),
  // the readiness pipe or the final stderr target.
  const lock = handoffLock()
  if (lock !== undefined) {
    n.setCloexec(lock.fd, true)
    if (!handoff.takeover) writePidfile(lock, process.pid)
  }
  n.setCloexec(handoff.readyFd, true)
  n.setCloexec(handoff.stderrFd, true)
  for (const { fd } of inheritedSockets()) n.setCloexec(fd, true)
  return finishAdoption(opts, lock, false)
}

function finishAdoption(opts: NormalizedOptions, lock: PidfileLock | undefined, inPlace: boolean): DaemonHandle {
  // Adopted first: if anything below throws, the exit handler still removes the pidfile.
  markAdopted(lock, inPlace)
  if (inPlace) {
    redirect(opts.stdout, 1)
    redirect(opts.stderr, 2)
  }
  process.chdir(opts.cwd)
  process.umask(opts.umask)
  signalCleanup('SIGTERM')
  signalCleanup('SIGINT')
  adoptedHandle = {
    pid: process.pid,
    pidFile: opts.pidFile,
    ready: () => {
      if (!isReady()) reportReady()
    },
    reopenLogs: () => {
      redirect(opts.stdout, 1)
      if (isReady() || inPlace) redirect(opts.stderr, 2)
    },
    exitWhenIdle: (server, timeout) => ensure().exitWhenIdle(server, timeout),
  }
  if (!inPlace && lock) takeover().enableGracefulRestart(opts, lock)
  if (opts.stdout !== 'ignore' || opts.stderr !== 'ignore') {
    // With log files, SIGHUP reopens them, as logrotate's postrotate expects of every daemon,
    // instead of ending the program (Node's default). A program with a SIGHUP listener of its
    // own decides for itself (the Daemon class reopens them there too).
    process.on('SIGHUP', function reopenOnHup() {
      if (process.listeners('SIGHUP').some((l) => l !== reopenOnHup)) return
      try {
        adoptedHandle?.reopenLogs()
      } catch (err) {
        process.stderr.write(`daemonkit: reopening the logs failed: ${err instanceof Error ? err.message : String(err)}\n`)
      }
    })
  }
  if (opts.ready === 'auto') adoptedHandle.ready()
  return adoptedHandle
}

/**
 * Turns the running script into a daemon.
 *
 * In the launching process it takes the pidfile's lock, starts this same script again as a
 * daemon (double fork + execve), relays the daemon's stderr until the daemon is ready, and then
 * exits 0. If the daemon fails first, the returned promise rejects with a `ReadinessError`
 * (what the daemon wrote is in its `daemonStderr`, and was relayed to stderr as it happened), and
 * nothing is left behind. Left uncaught, it ends the launcher with one line saying what happened.
 *
 * In the daemon (the re-executed script), it adopts the hand-off (writes its pid into the locked
 * pidfile, applies `cwd` and `umask`) and resolves with a `DaemonHandle`.
 */
export async function daemonize(pidFile: string): Promise<DaemonHandle>
export async function daemonize(options?: DaemonizeOptions): Promise<DaemonHandle>
export async function daemonize(arg?: string | DaemonizeOptions): Promise<DaemonHandle> {
  if (process.platform === 'win32') {
    throw new UnsupportedPlatformError(
      'daemonize() needs a Unix system: Windows has no fork or sessions. Run the program as a Windows service instead.',
    )
  }
  const helperArg =
    process.env[HELPER_VAR] === undefined
      ? arg
      : ensure().withHelperDefaults(arg, () => currentHandoff() !== undefined || !shouldDetach((typeof arg === 'object' ? arg.detach : undefined) ?? 'auto'))
  const opts = normalizeOptions(helperArg)
  if (opts.name !== undefined) registry().ensureRegistry()
  if (currentHandoff() || !shouldDetach(opts.detach)) return adopt(opts)
  let pid: number
  try {
    ;({ pid } = await launcher().launchSelf(opts))
  } catch (err) {
    if (err instanceof ReadinessError) concludeIfUnhandled(err)
    throw err
  }
  if (opts.onLaunched) await opts.onLaunched({ pid })
  process.exit(0)
}

/**
 * The daemon's own words already reached the terminal through the relay. If the launcher does not
 * handle the rejection, say in one line what daemonkit concluded and exit 1, instead of Node's
 * dump of the error object with a launcher-side stack. Listens for one turn of the event loop only
 * (unhandled rejections and a rejected top-level await are reported before `setImmediate` runs).
 */
function concludeIfUnhandled(err: ReadinessError): void {
  const conclude = (reason: unknown): void => {
    if (reason !== err) throw reason
    process.stderr.write(`daemonkit: ${err.message}\n`)
    process.exit(1)
  }
  process.once('unhandledRejection', conclude)
  process.once('uncaughtException', conclude)
  setImmediate(() => {
    process.off('unhandledRejection', conclude)
    process.off('uncaughtException', conclude)
  })
}
