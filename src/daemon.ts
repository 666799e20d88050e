import { ensureRegistry } from './registry'
import { adopt } from './daemonize'
import { AlreadyRunningError, DaemonkitError, UnsupportedPlatformError } from './errors'
import { currentHandoff, notifySystemd } from './handoff'
import { launchSelf } from './launch'
import { alreadyRunning, failureCode, LSB, signalled, statusReport, stopped, unknownWhy } from './lsb'
import { signal, status, stop, type DaemonStatus, type SignalName, type SignalResult, type StopResult } from './manage'
import { setGracefulStopTimeout } from './takeover'
import { gracefulRestart } from './upgrade'
import { normalizeOptions, shouldDetach, type DaemonizeOptions, type NormalizedOptions } from './options'

/** What `run()` gets in the daemon. */
export interface DaemonContext {
  /** The daemon's pid. */
  readonly pid: number
  /** The pidfile's absolute path. */
  readonly pidFile: string
  /** Aborted when shutdown begins (SIGTERM / SIGINT). */
  readonly signal: AbortSignal
  /** Registers a hook run at shutdown; hooks run in reverse order of registration. */
  onShutdown(fn: () => void | Promise<void>): void
  /** Registers a hook run on SIGHUP, in order of registration. */
  onReload(fn: () => void | Promise<void>): void
}

/** Options of `Daemon`: those of `daemonize()` (with `pidFile` required) and these. */
export interface DaemonOptions extends Omit<DaemonizeOptions, 'pidFile' | 'onLaunched'> {
  /**
   * The pidfile. Required unless `name` is given (then `<run folder>/NAME.pid`): it is how
   * every other process finds the daemon.
   */
  pidFile?: string
  /** The daemon's work, if not given by overriding `run()` in a subclass. Ready once it resolves. */
  run?: (ctx: DaemonContext) => void | Promise<void>
  /** `stop()`'s first signal. Default `'SIGTERM'`. */
  stopSignal?: SignalName
  /** How long `stop()` waits before escalating, in ms. Default 10000. */
  stopTimeout?: number
  /** `stop()`'s escalation signal. Default `'SIGKILL'`. */
  killSignal?: SignalName
  /** How long the daemon's shutdown hooks may take in all, in ms. Default 10000. */
  shutdownTimeout?: number
}


const ACTIONS = ['start', 'stop', 'restart', 'status', 'reload', 'graceful-restart'] as const
/** An action `cli()` understands. */
export type DaemonAction = (typeof ACTIONS)[number]

const EXTRA_KEYS = ['run', 'stopSignal', 'stopTimeout', 'killSignal', 'shutdownTimeout'] as const

/**
 * A daemon with a lifecycle: `start()`, `stop()`, `restart()`, `status()`, `reload()`, and
 * `cli()` for init-script style command lines. Override `run()` or pass `run` in the options.
 *
 * The same script plays two roles: in the launching process `start()` launches the script
 * again as the daemon and resolves once it is ready; in the daemon, `start()` (and `restart()`)
 * take over the hand-off and call `run()`.
 */
export class Daemon {
  /** The validated options. */
  readonly options: Readonly<NormalizedOptions>
  readonly #extra: Pick<DaemonOptions, (typeof EXTRA_KEYS)[number]>

  constructor(options: string | DaemonOptions) {
    const raw = typeof options === 'string' ? { pidFile: options } : options
    if (typeof raw !== 'object' || raw === null) throw new TypeError('Daemon: options must be a pidfile path or an object')
    if (raw.pidFile === undefined && raw.name === undefined) throw new TypeError('Daemon: option "pidFile" is required (or a "name")')
    const { run, stopSignal, stopTimeout, killSignal, shutdownTimeout, ...rest } = raw as DaemonOptions
    this.options = normalizeOptions(rest)
    if (run !== undefined && typeof run !== 'function') throw new TypeError('Daemon: option "run" must be a function')
    for (const [field, value] of [['stopTimeout', stopTimeout], ['shutdownTimeout', shutdownTimeout]] as const) {
      if (value !== undefined && (typeof value !== 'number' || !(value >= 0) || value > 2 ** 31 - 1)) {
        throw new TypeError(`Daemon: option "${field}" must be a non-negative number of milliseconds`)
      }
    }
    for (const [field, value] of [['stopSignal', stopSignal], ['killSignal', killSignal]] as const) {
      if (value !== undefined && (typeof value !== 'string' || !/^SIG[A-Z0-9]+$/.test(value))) {
        throw new TypeError(`Daemon: option "${field}" must be a signal name such as 'SIGTERM'`)
      }
    }
    this.#extra = { run, stopSignal, stopTimeout, killSignal, shutdownTimeout }
  }

  /** The pidfile's absolute path. */
  get pidFile(): string {
    return this.options.pidFile as string
  }

  /** The daemon's work; resolves when it is ready. Override it, or pass `run` in the options. */
  protected run(ctx: DaemonContext): void | Promise<void> {
    if (!this.#extra.run) throw new DaemonkitError('EDAEMONNORUN', 'Daemon: no run() given: override run() or pass options.run')
    return this.#extra.run(ctx)
  }

  /**
   * Launcher: starts the daemon and resolves with its pid once it is ready (the launching
   * process keeps running). Rejects with `AlreadyRunningError` if it runs, or `ReadinessError`
   * (its `daemonStderr` holding what the daemon wrote) if it fails first. Daemon: takes over and calls `run()`.
   */
  async start(): Promise<{ pid: number }> {
    if (process.platform === 'win32') throw new UnsupportedPlatformError('Daemon needs a Unix system; run the program as a Windows service instead.')
    if (this.#isDaemonRole()) return this.#becomeDaemon()
    if (this.options.name !== undefined) ensureRegistry()
    return launchSelf({ ...this.options, ready: 'auto' })
  }

  /** Stops the daemon (see `stop()` of the package for the details). */
  stop(options: { timeout?: number } = {}): Promise<StopResult> {
    return stop(this.pidFile, {
      signal: this.#extra.stopSignal,
      timeout: options.timeout ?? this.#extra.stopTimeout,
      killSignal: this.#extra.killSignal,
    })
  }

  /**
   * Stops the daemon if it runs, then starts it. In the daemon role it means "take over".
   * With `graceful: true`, a new copy starts beside the running daemon with the same pidfile
   * lock and listening sockets, and the old one stops once the new one is ready (see
   * `gracefulRestart()`); it rejects with a `GracefulRestartError`, the old one serving on,
   * when the new one fails.
   */
  async restart(options: { graceful?: boolean } = {}): Promise<{ pid: number }> {
    if (this.#isDaemonRole()) return this.#becomeDaemon()
    if (options.graceful) return { pid: (await gracefulRestart(this.pidFile)).pid }
    await this.stop()
    return this.start()
  }

  /** The daemon's status, judged by the pidfile lock. */
  status(): Promise<DaemonStatus> {
    return status(this.pidFile)
  }

  /** Sends SIGHUP, which runs the daemon's `onReload` hooks. */
  reload(): Promise<SignalResult> {
    return signal(this.pidFile, 'SIGHUP')
  }

  /**
   * Runs one init-script action, prints one line about it, and exits with the LSB code
   * (or only resolves with it, with `{ exit: false }`). In the daemon role `start` and
   * `restart` take over and resolve once `run()` is done, without exiting.
   */
  async cli(action: string | undefined, { exit = true }: { exit?: boolean } = {}): Promise<number> {
    if (this.#isDaemonRole() && (action === 'start' || action === 'restart')) {
      await this.#becomeDaemon()
      return LSB.ok
    }
    const code = await this.#cliAction(action)
    if (exit) process.exit(code)
    return code
  }

  async #cliAction(action: string | undefined): Promise<number> {
    const say = (line: string): void => void process.stdout.write(`${line}\n`)
    const complain = (line: string): void => void process.stderr.write(`${line}\n`)
    if (!ACTIONS.includes(action as DaemonAction)) {
      complain(`usage: ${process.argv[1] ?? 'daemon'} {${ACTIONS.join('|')}}`)
      return LSB.usage
    }
    try {
      switch (action as DaemonAction) {
        case 'start': {
          try {
            const { pid } = await this.start()
            say(`started (pid ${pid})`)
          } catch (err) {
            if (!(err instanceof AlreadyRunningError)) throw err
            say(alreadyRunning(err).line)
          }
          return LSB.ok
        }
        case 'stop': {
          const report = stopped(await this.stop())
          say(report.line)
          return report.code
        }
        case 'restart': {
          const { pid } = await this.restart()
          say(`restarted (pid ${pid})`)
          return LSB.ok
        }
        case 'graceful-restart': {
          const { pid } = await this.restart({ graceful: true })
          say(`restarted gracefully (pid ${pid})`)
          return LSB.ok
        }
        case 'reload': {
          const r = await this.reload()
          const report = await signalled(r, (pid) => `reloaded (pid ${pid})`, async () => unknownWhy(await this.status()))
          say(report.line)
          // Unlike the daemonkit command, an unclear pidfile is "not running" (7) here too.
          return r.sent ? report.code : LSB.actionNotRunning
        }
        case 'status': {
          const report = statusReport(await this.status(), { pidFile: this.pidFile })
          say(report.line)
          return report.code
        }
      }
    } catch (err) {
      complain(`${action} failed: ${err instanceof Error ? err.message : String(err)}`)
      return failureCode(err)
    }
    return LSB.deadOrFailed
  }

  #daemonStarted: Promise<{ pid: number }> | undefined

  /** The re-executed daemon, or a process that runs in place (under systemd, `detach: false`). */
  #isDaemonRole(): boolean {
    return currentHandoff() !== undefined || !shouldDetach(this.options.detach)
  }

  #becomeDaemon(): Promise<{ pid: number }> {
    this.#daemonStarted ??= this.#adoptAndRun()
    return this.#daemonStarted
  }

  async #adoptAndRun(): Promise<{ pid: number }> {
    const handle = adopt({ ...this.options, ready: 'manual' })
    const controller = new AbortController()
    const shutdownHooks: Array<() => void | Promise<void>> = []
    const reloadHooks: Array<() => void | Promise<void>> = []
    const ctx: DaemonContext = {
      pid: handle.pid,
      pidFile: this.pidFile,
      signal: controller.signal,
      onShutdown: (fn) => void shutdownHooks.push(fn),
      onReload: (fn) => void reloadHooks.push(fn),
    }
    const deadline = this.#extra.shutdownTimeout ?? 10_000
    setGracefulStopTimeout(deadline)
    let shuttingDown = false
    const shutdown = async (sig: NodeJS.Signals): Promise<void> => {
      if (shuttingDown) return
      shuttingDown = true
      notifySystemd('STOPPING=1')
      controller.abort(new DaemonkitError('EDAEMONSHUTDOWN', `shutting down on ${sig}`))
      const hooks = (async () => {
        for (const hook of shutdownHooks.slice().reverse()) await hook()
      })()
      let timer: NodeJS.Timeout | undefined
      const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(() => resolve('expired'), deadline)))
      let code = 0
      try {
        if ((await Promise.race([hooks, expired])) === 'expired') {
          process.stderr.write(`daemonkit: shutdown hooks did not finish within ${deadline} ms; exiting\n`)
          code = 1
        }
      } catch (err) {
        process.stderr.write(`daemonkit: a shutdown hook failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
        code = 1
      } finally {
        clearTimeout(timer)
      }
      process.exit(code) // the exit handler unlinks the pidfile while we still hold the lock
    }
    process.on('SIGTERM', () => void shutdown('SIGTERM'))
    process.on('SIGINT', () => void shutdown('SIGINT'))
    let reloading = Promise.resolve()
    process.on('SIGHUP', () => {
      reloading = reloading.then(async () => {
        try {
          handle.reopenLogs()
        } catch (err) {
          process.stderr.write(`daemonkit: reopening the logs failed: ${err instanceof Error ? err.message : String(err)}\n`)
        }
        for (const hook of reloadHooks) {
          try {
            await hook()
          } catch (err) {
            process.stderr.write(`daemonkit: a reload hook failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
          }
        }
      })
    })
    await this.run(ctx)
    handle.ready()
    return { pid: handle.pid }
  }
}
