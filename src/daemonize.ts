import { UnsupportedPlatformError } from './errors'
import { currentHandoff, isReady, markAdopted, removeOwnPidfile, reportReady } from './handoff'
import { launchSelf } from './launch'
import { native } from './native'
import { normalizeOptions, type DaemonizeOptions, type NormalizedOptions } from './options'

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
}

let adoptedHandle: DaemonHandle | undefined

function signalCleanup(signal: NodeJS.Signals): void {
  const onSignal = (): void => {
    // Only when the app has no handler of its own: then this signal is meant to end us.
    if (process.listenerCount(signal) > 1) return
    removeOwnPidfile()
    process.removeListener(signal, onSignal)
    process.kill(process.pid, signal) // die by the signal, as the default action would
  }
  process.on(signal, onSignal)
}

/** The daemon's side: adopt the hand-off and report readiness. */
export function adopt(opts: NormalizedOptions): DaemonHandle {
  if (adoptedHandle) return adoptedHandle
  const handoff = currentHandoff()
  if (!handoff) throw new Error('daemonkit: adopt() outside a daemon')
  if (handoff.pidFile !== opts.pidFile) {
    throw new TypeError(
      `daemonize: the daemon was launched with pidFile ${JSON.stringify(handoff.pidFile)} but now ` +
        `asks for ${JSON.stringify(opts.pidFile)}; compute the options the same way in both roles`,
    )
  }
  const n = native()
  // Our children must not inherit the lock (they would keep "running" true after we die),
  // the readiness pipe or the final stderr target.
  if (handoff.lockFd !== undefined) {
    n.setCloexec(handoff.lockFd, true)
    n.writePid(handoff.lockFd, process.pid)
  }
  n.setCloexec(handoff.readyFd, true)
  n.setCloexec(handoff.stderrFd, true)
  process.chdir(opts.cwd)
  process.umask(opts.umask)
  markAdopted()
  signalCleanup('SIGTERM')
  signalCleanup('SIGINT')
  adoptedHandle = {
    pid: process.pid,
    pidFile: opts.pidFile,
    ready: () => {
      if (!isReady()) reportReady()
    },
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
 * carrying the daemon's message, and nothing is left behind.
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
  const opts = normalizeOptions(arg)
  if (currentHandoff()) return adopt(opts)
  const { pid } = await launchSelf(opts)
  if (opts.onLaunched) await opts.onLaunched({ pid })
  process.exit(0)
}
