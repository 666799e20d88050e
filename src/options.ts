import * as fs from 'node:fs'
import * as path from 'node:path'

import type * as RegistryModule from './registry'

/**
 * Where a daemon's output goes: `'ignore'` (`/dev/null`) or a file path, opened for append.
 * (`string & {}` keeps `'ignore'` offered by editors instead of collapsing into `string`.)
 */
export type OutputTarget = 'ignore' | (string & {})

/**
 * A socket to listen on: `'IPV4:PORT'`, `'[IPV6]:PORT'` or `'unix:PATH'`, or that with a name
 * (`LISTEN_FDNAMES`, default `'unknown'` as in systemd).
 */
export type ListenAddress = string | { address: string; name?: string }

/** Options of `daemonize()`. Every field is optional; defaults are given per field. */
export interface DaemonizeOptions {
  /**
   * The pidfile, locked by the daemon for its whole life. Relative paths resolve against the
   * launching process's working directory. Default: none (no lock; several daemons may run).
   */
  pidFile?: string
  /**
   * A name in daemonkit's registry: the pidfile defaults to `<run folder>/NAME.pid` and, when
   * neither `stdout` nor `stderr` is given, the output to `<log folder>/NAME.log`, so that
   * `daemonkit status|stop|logs|list` find the daemon by name (see docs/cli.md).
   */
  name?: string
  /** The daemon's working directory, applied when it takes over. Default `'/'`. */
  cwd?: string
  /**
   * The daemon's umask. Default `0o022`: Node creates files with mode 0666, so the classic
   * `umask(0)` would make every file the daemon writes world-writable.
   */
  umask?: number
  /** The daemon's stdout: `'ignore'` (default) or a file path, appended to, created 0640. */
  stdout?: OutputTarget
  /**
   * The daemon's stderr after it is ready: `'ignore'` (default) or a file path, appended to,
   * created 0640. Until it is ready, its stderr goes to the launching terminal.
   */
  stderr?: OutputTarget
  /** Extra environment variables for the daemon (on top of the launcher's). Default `{}`. */
  env?: Record<string, string>
  /**
   * When the daemon counts as ready and the launcher exits 0. `'auto'` (default): as soon as
   * `daemonize()` resolves in the daemon. `'manual'`: when the daemon calls `handle.ready()`,
   * e.g. after its server listens.
   */
  ready?: 'auto' | 'manual'
  /** How long the launcher waits for readiness before it kills the daemon, in ms. Default 30000. */
  readyTimeout?: number
  /** Called in the launcher once the daemon is ready, just before the launcher exits. */
  onLaunched?: (info: { pid: number }) => void | Promise<void>
  /**
   * Whether to detach (fork into the background). `'auto'` (default): not when a supervisor
   * already runs us as a service (`$NOTIFY_SOCKET` names a socket that listens, as systemd
   * sets it for `Type=notify`; a value nobody listens on is reported on stderr and ignored); then the process stays in place, takes the pidfile itself, sends `READY=1` / `STOPPING=1` to
   * systemd and redirects only the stdout / stderr given as files. `true` / `false` force it.
   */
  detach?: 'auto' | boolean
  /**
   * Listening sockets that outlive the process: bound by the launcher before anything forks
   * (a bad address, a port in use, … reject with a `ListenError` and start nothing), passed to
   * the daemon, and handed to its next copy by a graceful restart. Get them with `listenFds()`.
   * Default none.
   */
  listen?: readonly ListenAddress[]
}

/** Options after validation, with defaults applied and paths made absolute. */
export interface NormalizedOptions {
  name: string | undefined
  pidFile: string | undefined
  cwd: string
  umask: number
  stdout: OutputTarget
  stderr: OutputTarget
  env: Record<string, string>
  ready: 'auto' | 'manual'
  readyTimeout: number
  onLaunched: ((info: { pid: number }) => void | Promise<void>) | undefined
  detach: 'auto' | boolean
  /** Unix socket paths made absolute. */
  listen: { address: string; name: string }[]
}

const KNOWN = new Set([
  'name', 'pidFile', 'cwd', 'umask', 'stdout', 'stderr', 'env', 'ready', 'readyTimeout', 'onLaunched', 'detach', 'listen',
])

/** Validates `listen` (its shape only: whether an address works is learnt by binding it). */
function listenOption(value: unknown): { address: string; name: string }[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) fail('listen', 'must be an array of addresses')
  return value.map((entry: unknown) => {
    const obj = typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>) : undefined
    const address = obj ? obj.address : entry
    const name = obj && obj.name !== undefined ? obj.name : 'unknown'
    if (typeof address !== 'string' || address === '' || address.includes('\0')) {
      fail('listen', 'entries must be address strings (or { address, name })')
    }
    if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,255}$/.test(name)) {
      fail('listen', `name ${JSON.stringify(name)} must be 1 to 255 letters, digits, '_', '.' or '-'`)
    }
    const abs = address.startsWith('unix:') && address.length > 5 ? `unix:${path.resolve(address.slice(5))}` : address
    return { address: abs, name }
  })
}

function fail(field: string, message: string): never {
  throw new TypeError(`daemonize: option "${field}" ${message}`)
}

function nonEmptyPath(field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') fail(field, 'must be a non-empty string')
  if (value.includes('\0')) fail(field, 'must not contain a NUL byte')
  return value
}

function output(field: string, value: unknown): OutputTarget {
  if (value === undefined || value === 'ignore') return 'ignore'
  return path.resolve(nonEmptyPath(field, value))
}

/**
 * Validates `daemonize()`'s argument and applies defaults. Throws a `TypeError` naming the
 * field; touches nothing on disk except to check that `cwd` is a directory.
 * @param extraKeys further option names a caller accepts on top of daemonize()'s own.
 */
export function normalizeOptions(input: unknown, extraKeys: readonly string[] = []): NormalizedOptions {
  const raw: Record<string, unknown> =
    typeof input === 'string'
      ? { pidFile: input }
      : input === undefined
        ? {}
        : typeof input === 'object' && input !== null && !Array.isArray(input)
          ? (input as Record<string, unknown>)
          : fail('(argument)', 'must be a pidfile path or an options object')

  for (const key of Object.keys(raw)) {
    if (!KNOWN.has(key) && !extraKeys.includes(key)) fail(key, 'is not a known option')
  }

  // The registry loads only for a named daemon: a daemon's start-up reads these options.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const registry = raw.name === undefined ? undefined : (require('./registry') as typeof RegistryModule)
  const name = registry === undefined ? undefined : registry.checkName(raw.name, 'daemonize: option "name"')
  const pidFile = raw.pidFile === undefined ? (name === undefined ? undefined : registry?.namedPidfile(name)) : path.resolve(nonEmptyPath('pidFile', raw.pidFile))
  const namedOutput = name !== undefined && raw.stdout === undefined && raw.stderr === undefined ? registry?.namedLog(name) : undefined

  const cwd = raw.cwd === undefined ? '/' : path.resolve(nonEmptyPath('cwd', raw.cwd))
  let isDir = false
  try {
    isDir = fs.statSync(cwd).isDirectory()
  } catch (err) {
    // Deno without read permission there: its error names the permission, so let it through.
    if ((err as Error | null)?.name === 'NotCapable') throw err
    isDir = false
  }
  if (!isDir) fail('cwd', `must name an existing directory (got ${JSON.stringify(cwd)})`)

  const umask = raw.umask === undefined ? 0o022 : raw.umask
  if (typeof umask !== 'number' || !Number.isInteger(umask) || umask < 0 || umask > 0o777) {
    fail('umask', 'must be an integer from 0 to 0o777')
  }

  const env: Record<string, string> = {}
  if (raw.env !== undefined) {
    if (typeof raw.env !== 'object' || raw.env === null || Array.isArray(raw.env)) fail('env', 'must be an object')
    for (const [key, value] of Object.entries(raw.env as Record<string, unknown>)) {
      if (key === '' || key.includes('=') || key.includes('\0')) fail('env', `has an invalid variable name ${JSON.stringify(key)}`)
      if (typeof value !== 'string' || value.includes('\0')) fail('env', `value of ${key} must be a string without NUL bytes`)
      env[key] = value
    }
  }

  const ready = raw.ready === undefined ? 'auto' : raw.ready
  if (ready !== 'auto' && ready !== 'manual') fail('ready', "must be 'auto' or 'manual'")

  const readyTimeout = raw.readyTimeout === undefined ? 30_000 : raw.readyTimeout
  if (typeof readyTimeout !== 'number' || !Number.isFinite(readyTimeout) || readyTimeout <= 0 || readyTimeout > 2 ** 31 - 1) {
    fail('readyTimeout', 'must be a positive number of milliseconds')
  }

  const onLaunched = raw.onLaunched
  if (onLaunched !== undefined && typeof onLaunched !== 'function') fail('onLaunched', 'must be a function')

  const detach = raw.detach === undefined ? 'auto' : raw.detach
  if (detach !== 'auto' && detach !== true && detach !== false) fail('detach', "must be 'auto', true or false")

  return {
    detach,
    name,
    pidFile,
    cwd,
    umask,
    stdout: namedOutput ?? output('stdout', raw.stdout),
    stderr: namedOutput ?? output('stderr', raw.stderr),
    env,
    ready,
    readyTimeout,
    onLaunched: onLaunched as NormalizedOptions['onLaunched'],
    listen: listenOption(raw.listen),
  }
}

/** `$NOTIFY_SOCKET` values already judged in this process: value -> reachable. */
const notifyChecked = new Map<string, boolean>()

/**
 * Whether `$NOTIFY_SOCKET` names a socket that listens, checked with a datagram `connect()`
 * (nothing is sent). When it does not (a stale value, a typo, an abstract name nobody bound),
 * this process is not a systemd service after all: that is said once on stderr.
 */
function notifySocketReachable(value: string): boolean {
  const known = notifyChecked.get(value)
  if (known !== undefined) return known
  let problem: string | null
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    problem = (require('./native') as typeof import('./native')).native().notifySocketProblem()
  } catch (err) {
    problem = (err as Error).message
  }
  const reachable = problem === null
  notifyChecked.set(value, reachable)
  if (!reachable) {
    process.stderr.write(
      `daemonkit: NOTIFY_SOCKET=${JSON.stringify(value)} is set but no socket listens there (${problem}), ` +
        'so this is not a systemd service: detaching as usual\n',
    )
  }
  return reachable
}

/**
 * Whether `detach` means "fork into the background" in this process. `'auto'` stays in place
 * under systemd (`$NOTIFY_SOCKET` naming a socket that listens) and as PID 1 (a container's
 * first process: if it forked and exited, the container would end, killing the daemon with it).
 */
export function shouldDetach(detach: 'auto' | boolean): boolean {
  if (detach !== 'auto') return detach
  if (process.pid === 1) return false
  const socket = process.env.NOTIFY_SOCKET
  return !socket || !notifySocketReachable(socket)
}
