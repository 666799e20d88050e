import type * as childProcessTypes from 'node:child_process'
import type * as cryptoTypes from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type * as netTypes from 'node:net'

import { HelperError } from './errors'
import { HELPER_VAR } from './handoff'
import { supervisorDefaults } from './defaults'
import type * as ManageModule from './manage'
import { native } from './native'
import type { PidfileLock } from './launch'

// Loaded on first use: a helper daemon loads this module before it is ready, and needs none of it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const manage = (): typeof ManageModule => require('./manage')

/** Options of `ensureDaemon()`. */
export interface EnsureDaemonOptions {
  /** The helper's name: letters, digits, `.`, `_`, `-` (at most 64). */
  name: string
  /** The helper's script (a `daemonize()` script); a relative path resolves against the caller's cwd. */
  script: string
  /** Arguments for the script. */
  args?: readonly string[]
  /** The helper's version: a running helper of another version is stopped and a new one started. Default `''`. */
  version?: string
  /** The helper ends after this many ms with no connection open (`exitWhenIdle()`). Default: never. */
  idleTimeout?: number
  /** A folder (e.g. a workspace root): one helper per name and scope. */
  scope?: string
  /** Environment for the helper, on top of the caller's. */
  env?: Readonly<Record<string, string | undefined>>
  /** How long a start may take, in ms. Default 30000. */
  startTimeout?: number
}

/** A ready helper. */
export interface EnsuredDaemon {
  /** The helper's pid. */
  pid: number
  /** Its unix socket's path. */
  socket: string
  /** `true` when this call started it, `false` when it attached to a running one. */
  started: boolean
  /** Its version. */
  version: string
}

/** What a helper learns from `ensureDaemon()` through its environment. */
interface HelperConfig {
  pidFile: string
  socket: string
  lock: string
  idleTimeout?: number
}

const NAME = /^[A-Za-z0-9._-]{1,64}$/

function fail(field: string, message: string): never {
  throw new TypeError(`ensureDaemon: option "${field}" ${message}`)
}

/**
 * The per-user folder of helpers: `$DAEMONKIT_HOME/helpers`, else `$XDG_RUNTIME_DIR/daemonkit/helpers`,
 * else `<tmpdir>/daemonkit-<uid>/helpers`. Created with mode 0700; refused unless it is a real
 * directory owned by this user that nobody else can enter.
 */
export function helperFolder(): string {
  const uid = process.getuid?.() ?? 0
  const base = process.env.DAEMONKIT_HOME
    ? process.env.DAEMONKIT_HOME
    : process.env.XDG_RUNTIME_DIR
      ? path.join(process.env.XDG_RUNTIME_DIR, 'daemonkit')
      : path.join(os.tmpdir(), `daemonkit-${uid}`)
  const dir = path.join(path.resolve(base), 'helpers')
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new HelperError('folder', `ensureDaemon: cannot create the helper folder ${dir}: ${(err as Error).message}`, '', undefined, { cause: err })
  }
  for (const d of [dir, path.dirname(dir)]) {
    const st = fs.lstatSync(d)
    // The folder itself must be private; its parent (ours when we made it) must not let others replace it.
    const unsafe = !st.isDirectory() ? 'is not a directory' : st.uid !== uid ? `is owned by uid ${st.uid}, not ${uid}` : (st.mode & (d === dir ? 0o077 : 0o022)) !== 0 ? `has mode ${(st.mode & 0o777).toString(8)}` : undefined
    if (unsafe && (d === dir || st.uid === uid)) {
      throw new HelperError('folder', `ensureDaemon: refusing the helper folder ${d}: it ${unsafe}; it must be a directory of uid ${uid} that no other user can ${d === dir ? 'enter' : 'write'}`)
    }
  }
  return dir
}

/** Takes the exclusive start lock of one helper, waiting while another caller holds it. */
async function lockStart(file: string, deadline: number): Promise<PidfileLock> {
  const n = native()
  for (let delay = 2; ; delay = Math.min(delay * 2, 25)) {
    const got = n.acquirePidfile(file)
    if (got.lock !== undefined && !got.running && !got.foreign) {
      got.lock.writePid(process.pid)
      return got.lock
    }
    if (Date.now() > deadline) throw new HelperError('timeout', `ensureDaemon: another caller held ${file} for too long`)
    await new Promise((r) => setTimeout(r, delay))
  }
}

function readVersion(file: string): { version: string; pid: number } | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: unknown; pid?: unknown }
    return typeof v.version === 'string' && typeof v.pid === 'number' ? { version: v.version, pid: v.pid } : undefined
  } catch {
    return undefined
  }
}

/** Runs the helper's script; its launcher exits 0 once the helper is ready, else with its stderr. */
function startHelper(script: string, args: readonly string[], env: NodeJS.ProcessEnv, timeout: number): Promise<void> {
  return new Promise((resolve, reject) => {
    // Loaded here, not with the package: node:child_process alone costs a few ms of every require.
    const { spawn } = require('node:child_process') as typeof childProcessTypes
    const child = spawn(process.execPath, [script, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (d: string) => {
      stderr = (stderr + d).slice(-supervisorDefaults().tailLimit)
    })
    const timer = setTimeout(() => child.kill('SIGTERM'), timeout)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(new HelperError('exited', `ensureDaemon: cannot run ${script}: ${err.message}`, '', undefined, { cause: err }))
    })
    child.on('close', (code, sig) => {
      clearTimeout(timer)
      if (code === 0) return resolve()
      const what = sig ? `was killed by ${sig}` : `exited with status ${code}`
      const reason = sig === 'SIGTERM' ? 'timeout' : 'exited'
      reject(new HelperError(reason, `ensureDaemon: the helper ${script} ${what} before it was ready${stderr ? `:\n${stderr.trimEnd()}` : ''}`, stderr, code ?? undefined))
    })
  })
}

/**
 * Gives a ready background helper: attaches to the one of this `name` (and `scope`) when it
 * runs with the same `version`, else (none running, a dead one, another version) starts one
 * and waits until it is ready. Concurrent callers get exactly one helper: starts are serialized
 * by a lock in the per-user helper folder, and whether a helper runs is judged by its pidfile
 * lock, never by a leftover file. The helper gets its unix socket already bound (`listenFds()`).
 */
export async function ensureDaemon(options: EnsureDaemonOptions): Promise<EnsuredDaemon> {
  if (typeof options !== 'object' || options === null) throw new TypeError('ensureDaemon: options must be an object')
  const { name, script, args = [], version = '', idleTimeout, scope, env = {}, startTimeout = 30_000 } = options
  if (typeof name !== 'string' || !NAME.test(name)) fail('name', 'must be 1 to 64 letters, digits, ".", "_" or "-"')
  if (typeof script !== 'string' || script === '' || script.includes('\0')) fail('script', 'must be a path')
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string' && !a.includes('\0'))) fail('args', 'must be an array of strings')
  if (typeof version !== 'string' || version.includes('\0')) fail('version', 'must be a string')
  if (idleTimeout !== undefined && (typeof idleTimeout !== 'number' || !Number.isInteger(idleTimeout) || idleTimeout <= 0 || idleTimeout > 2 ** 31 - 1)) fail('idleTimeout', 'must be a positive integer of ms')
  if (scope !== undefined && (typeof scope !== 'string' || scope === '' || scope.includes('\0'))) fail('scope', 'must be a folder path')
  if (typeof env !== 'object' || env === null) fail('env', 'must be an object')
  if (typeof startTimeout !== 'number' || !(startTimeout > 0)) fail('startTimeout', 'must be a positive number of ms')

  const dir = helperFolder()
  const { createHash } = require('node:crypto') as typeof cryptoTypes
  const key = scope === undefined ? name : `${name}-${createHash('sha256').update(path.resolve(scope)).digest('hex').slice(0, 16)}`
  const pidFile = path.join(dir, `${key}.pid`)
  const socket = path.join(dir, `${key}.sock`)
  const versionFile = path.join(dir, `${key}.version`)
  const lockFile = path.join(dir, `${key}.lock`)

  const attach = async (): Promise<EnsuredDaemon | undefined> => {
    const s = await manage().status(pidFile)
    if (s.state !== 'running') return undefined
    const v = readVersion(versionFile)
    return v && v.pid === s.pid && v.version === version ? { pid: s.pid, socket, started: false, version } : undefined
  }
  // The common case, without the lock: a running helper of this version.
  const running = await attach()
  if (running) return running

  const deadline = Date.now() + startTimeout
  const lock = await lockStart(lockFile, deadline)
  try {
    const again = await attach() // another caller may have started it while we waited
    if (again) return again
    const s = await manage().status(pidFile)
    if (s.state === 'running') await manage().stop(pidFile)
    try {
      fs.unlinkSync(versionFile)
    } catch {
      // none
    }
    const config: HelperConfig = { pidFile, socket, lock: lockFile, idleTimeout }
    await startHelper(path.resolve(script), args, { ...process.env, ...env, [HELPER_VAR]: JSON.stringify(config) }, Math.max(1, deadline - Date.now()))
    const after = await manage().status(pidFile)
    if (after.state !== 'running') throw new HelperError('exited', `ensureDaemon: the helper ${script} said it was ready but does not hold ${pidFile}`)
    fs.writeFileSync(versionFile, JSON.stringify({ version, pid: after.pid }), { mode: 0o600 })
    return { pid: after.pid, socket, started: true, version }
  } finally {
    lock.release()
  }
}

let config: HelperConfig | undefined

/**
 * In a script run by `ensureDaemon()`: `daemonize()`'s options with the helper's pidfile and
 * socket filled in when not given. The daemon forgets the variable, so its children do not
 * think they are helpers.
 */
export function withHelperDefaults(arg: unknown, daemonRole: () => boolean): unknown {
  const raw = process.env[HELPER_VAR]
  if (raw === undefined) return arg
  try {
    config = JSON.parse(raw) as HelperConfig
  } catch {
    return arg
  }
  if (daemonRole()) delete process.env[HELPER_VAR]
  if (arg !== undefined && (typeof arg !== 'object' || arg === null)) return arg
  const given = (arg ?? {}) as Record<string, unknown>
  return { ...given, pidFile: given.pidFile ?? config.pidFile, listen: given.listen ?? [`unix:${config.socket}`] }
}

/**
 * Ends the process once `server` has had no connection open for `timeout` ms (default: the
 * `idleTimeout` given to `ensureDaemon()`; without either, nothing happens). Before it ends it
 * takes the helper's start lock, so that it never ends under a caller that is attaching right now.
 */
export function exitWhenIdle(server: netTypes.Server, timeout?: number): void {
  const ms = timeout ?? config?.idleTimeout
  if (ms === undefined) return
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms <= 0 || ms > 2 ** 31 - 1) throw new TypeError('exitWhenIdle: timeout must be a positive integer of ms')
  let open = 0
  let timer: NodeJS.Timeout | undefined
  const arm = (): void => {
    clearTimeout(timer)
    timer = setTimeout(idle, ms)
  }
  const idle = (): void => {
    if (open > 0) return
    if (config) {
      const got = native().acquirePidfile(config.lock)
      if (got.lock === undefined || got.running || got.foreign) return arm() // a caller is attaching: later
      // Kept until exit: no caller starts or attaches meanwhile.
    }
    server.close()
    if (config) {
      try {
        fs.unlinkSync(config.socket)
      } catch {
        // gone
      }
    }
    process.exit(0) // the exit handler removes the pidfile while the lock is still held
  }
  server.on('connection', (c: netTypes.Socket) => {
    open++
    clearTimeout(timer)
    c.once('close', () => {
      if (--open === 0) arm()
    })
  })
  arm()
}
