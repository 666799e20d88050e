/** Every `code` a daemonkit error can have; each error class has its own literal. */
export type DaemonkitErrorCode =
  | 'EDAEMONRUNNING'
  | 'EPIDFILE'
  | 'EDAEMONNOTREADY'
  | 'EDAEMONLAUNCH'
  | 'EDAEMONPLATFORM'
  | 'ELOGFILE'
  | 'EDAEMONSIGNAL'
  | 'EDAEMONSTOPTIMEOUT'
  | 'EDAEMONNORUN'
  | 'EDAEMONSHUTDOWN'
  | 'ELISTEN'
  | 'EGRACEFUL'
  | 'EHELPER'

/*
 * `reason`, wherever an error has one, is the system error code behind it: an errno name
 * (`EACCES`, `ENOSPC`, …) or one of daemonkit's own (`EPIDFILEUNSAFE`, `ENOREEXEC`, …). What
 * happened, where an error tells several outcomes apart, is its `kind`.
 */

/**
 * Base class of every error daemonkit throws; `code` is stable and safe to branch on. To narrow
 * on `code`, test with `isDaemonkitError(err)`, which gives the union of all daemonkit errors.
 */
export class DaemonkitError<Code extends DaemonkitErrorCode = DaemonkitErrorCode> extends Error {
  readonly code: Code

  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/**
 * Any error daemonkit throws, as a union discriminated by `code`: after
 * `if (err.code === 'EDAEMONRUNNING')` TypeScript knows `err` is an `AlreadyRunningError`.
 */
export type AnyDaemonkitError =
  | AlreadyRunningError
  | PidfileError
  | ReadinessError
  | LaunchError
  | UnsupportedPlatformError
  | LogfileError
  | SignalError
  | StopTimeoutError
  | ListenError
  | GracefulRestartError
  | HelperError
  | DaemonkitError<'EDAEMONNORUN' | 'EDAEMONSHUTDOWN'>

/** Whether `err` is an error thrown by daemonkit; narrows it to `AnyDaemonkitError`. */
export function isDaemonkitError(err: unknown): err is AnyDaemonkitError {
  return err instanceof DaemonkitError
}

/** The pidfile is locked: a daemon is running (or being launched right now). */
export class AlreadyRunningError extends DaemonkitError<'EDAEMONRUNNING'> {
  /** The running daemon's pid, when the pidfile names one. */
  readonly pid: number | undefined
  /** The pidfile. */
  readonly path: string

  constructor(path: string, pid: number | undefined) {
    super(
      'EDAEMONRUNNING',
      pid === undefined
        ? `already running: ${path} is locked by a daemon that is starting up`
        : `already running (pid ${pid}): ${path} is locked`,
    )
    this.pid = pid
    this.path = path
  }
}

/** The pidfile path is unsafe (symlink, FIFO, directory, …) or cannot be read or written. */
export class PidfileError extends DaemonkitError<'EPIDFILE'> {
  /** The pidfile. */
  readonly path: string
  /** The system error code behind it (`EACCES`, …), or `EPIDFILEUNSAFE` for an unsafe path. */
  readonly reason: string

  constructor(path: string, reason: string, message: string, options?: { cause?: unknown }) {
    super('EPIDFILE', `${path}: ${message}`, options)
    this.path = path
    this.reason = reason
  }
}

/** How a daemon failed before it said it was ready. */
export type NotReadyKind = 'exited' | 'timeout'

/** @deprecated The former name of `NotReadyKind`. */
export type NotReadyReason = NotReadyKind

/** The daemon failed, exited or timed out before it was ready. */
export class ReadinessError extends DaemonkitError<'EDAEMONNOTREADY'> {
  /** The daemon's pid. */
  readonly pid: number
  /** What happened. */
  readonly kind: NotReadyKind
  /** @deprecated The same as `kind`, its former name (kept as an own property, so it is serialised). */
  readonly reason: NotReadyKind
  /** The daemon's exit code, when it exited through Node's normal exit path. */
  readonly exitCode: number | undefined
  /**
   * What the daemon wrote to stderr before it failed (its last 8 KiB). Not enumerable when it was
   * already relayed to the launcher's stderr, so that printing the error does not repeat it.
   */
  declare readonly daemonStderr: string

  /**
   * `subject` names what failed in the message; by default the daemon and its pid. `relayed`:
   * the daemon's stderr already reached the launcher's stderr, so the message does not repeat it.
   */
  constructor(
    pid: number,
    kind: NotReadyKind,
    exitCode: number | undefined,
    daemonStderr: string,
    detail: string,
    subject = `daemon (pid ${pid})`,
    { relayed = false }: { relayed?: boolean } = {},
  ) {
    const tail = relayed ? '' : daemonStderr.trim()
    super('EDAEMONNOTREADY', `${subject} ${detail}${tail ? `:\n${tail}` : ''}`)
    this.pid = pid
    this.kind = kind
    this.reason = kind
    this.exitCode = exitCode
    Object.defineProperty(this, 'daemonStderr', { value: daemonStderr, enumerable: !relayed, writable: false, configurable: true })
  }

}

/** The daemon could not be launched (fork or exec failed, or the script cannot be re-executed). */
export class LaunchError extends DaemonkitError<'EDAEMONLAUNCH'> {
  /** The system error code (`ENOENT`, `EACCES`, …) or `ENOREEXEC`. */
  readonly reason: string
  /** The program or script concerned. */
  readonly path: string | undefined

  constructor(reason: string, message: string, path?: string, options?: { cause?: unknown }) {
    super('EDAEMONLAUNCH', message, options)
    this.reason = reason
    this.path = path
  }
}

/** Daemons are not supported here (Windows), or no native binary exists for this platform. */
export class UnsupportedPlatformError extends DaemonkitError<'EDAEMONPLATFORM'> {
  /** `process.platform`-`process.arch`. */
  readonly platform: string

  constructor(message: string, options?: { cause?: unknown }) {
    super('EDAEMONPLATFORM', message, options)
    this.platform = `${process.platform}-${process.arch}`
  }
}

/** A `stdout` / `stderr` log file that cannot be opened, or is refused as unsafe. */
export class LogfileError extends DaemonkitError<'ELOGFILE'> {
  /** The log file. */
  readonly path: string
  /**
   * The system error code behind it (`EACCES`, `ENOENT`, …), or `ELOGFILEUNSAFE` for a path that
   * is refused: a symbolic link, a hard-linked file, not a regular file or character device, or
   * (as root) a file or directory another user could have prepared.
   */
  readonly reason: string

  constructor(path: string, reason: string, message: string, options?: { cause?: unknown }) {
    super('ELOGFILE', `cannot open the log file ${path}: ${message}`, options)
    this.path = path
    this.reason = reason
  }
}

/**
 * A `listen` address cannot be listened on: it does not parse, the port is in use or needs
 * root, the folder of a unix socket is missing, a file that is not a socket is in the way.
 * Nothing was started when it is thrown, and no pidfile or socket file is left.
 */
export class ListenError extends DaemonkitError<'ELISTEN'> {
  /** The address as given. */
  readonly address: string
  /** The system error code behind it (`EADDRINUSE`, `EACCES`, `ENOENT`, …); `EINVAL` for an address that does not parse. */
  readonly reason: string

  constructor(address: string, reason: string, message: string, options?: { cause?: unknown }) {
    super('ELISTEN', `cannot listen on ${address}: ${message}`, options)
    this.address = address
    this.reason = reason
  }
}

/** Why a graceful restart did not happen. */
export type GracefulRestartKind = 'not-running' | 'unsupported' | 'busy' | 'starting' | 'stopping' | 'exited' | 'timeout' | 'spawn' | 'failed'

/** @deprecated The former name of `GracefulRestartKind`. */
export type GracefulRestartReason = GracefulRestartKind

/**
 * A graceful restart failed or was refused; the running daemon was left serving untouched.
 * When the new copy failed, `message` carries its own error output.
 */
export class GracefulRestartError extends DaemonkitError<'EGRACEFUL'> {
  /** What happened. */
  readonly kind: GracefulRestartKind
  /** @deprecated The same as `kind`, its former name (kept as an own property, so it is serialised). */
  readonly reason: GracefulRestartKind
  /** The pid of the daemon that was asked (the pidfile's), when known. */
  readonly pid: number | undefined

  constructor(kind: GracefulRestartKind, pid: number | undefined, message: string, options?: { cause?: unknown }) {
    super('EGRACEFUL', message, options)
    this.kind = kind
    this.reason = kind
    this.pid = pid
  }

}

/** Why `ensureDaemon()` failed. */
export type HelperErrorKind = 'folder' | 'exited' | 'timeout'

/** @deprecated The former name of `HelperErrorKind`. */
export type HelperErrorReason = HelperErrorKind

/**
 * `ensureDaemon()` could not give a ready helper: its per-user folder is unsafe (`folder`), the
 * helper exited before it was ready (`exited`, its stderr in `helperStderr`) or a start took too long.
 */
export class HelperError extends DaemonkitError<'EHELPER'> {
  /** What went wrong. */
  readonly kind: HelperErrorKind
  /** @deprecated The same as `kind`, its former name (kept as an own property, so it is serialised). */
  readonly reason: HelperErrorKind
  /** What the helper wrote to stderr before it failed (empty when it did not start). */
  readonly helperStderr: string
  /** The launcher's exit code, when it exited. */
  readonly exitCode: number | undefined

  constructor(kind: HelperErrorKind, message: string, helperStderr = '', exitCode?: number, options?: { cause?: unknown }) {
    super('EHELPER', message, options)
    this.kind = kind
    this.reason = kind
    this.helperStderr = helperStderr
    this.exitCode = exitCode
  }
}

/** Signalling failed for a reason other than the daemon not running (e.g. `EPERM`). */
export class SignalError extends DaemonkitError<'EDAEMONSIGNAL'> {
  /** The daemon's pid. */
  readonly pid: number
  /** The system error code, e.g. `EPERM` when the daemon belongs to another user. */
  readonly reason: string
  /** The pidfile. */
  readonly path: string

  constructor(pidFile: string, pid: number, reason: string, message: string, options?: { cause?: unknown }) {
    super('EDAEMONSIGNAL', message, options)
    this.pid = pid
    this.reason = reason
    this.path = pidFile
  }
}

/** The daemon outlived both the stop signal and the escalation signal. */
export class StopTimeoutError extends DaemonkitError<'EDAEMONSTOPTIMEOUT'> {
  /** The daemon's pid. */
  readonly pid: number
  /** The pidfile. */
  readonly path: string

  constructor(pidFile: string, pid: number, waitedMs: number) {
    super('EDAEMONSTOPTIMEOUT', `daemon (pid ${pid}, ${pidFile}) is still running after ${Math.round(waitedMs)} ms`)
    this.pid = pid
    this.path = pidFile
  }
}

/** A command line the CLI cannot run (a missing or bad flag): its message is printed with the usage hint. Internal to the CLI. */
export class UsageError extends Error {}

/** The `code` of an error the binding or Node threw (an errno name), or `EUNKNOWN`. */
export function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : 'EUNKNOWN'
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  const message = (err as { message?: unknown } | null)?.message
  return typeof message === 'string' ? message : String(err)
}
