import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { readSideFile } from './sidefile'

/**
 * The registry of named daemons: plain files, nothing resident.
 * - `$DAEMONKIT_HOME/run/NAME.pid` and `$DAEMONKIT_HOME/log/NAME.log` when `DAEMONKIT_HOME` is set;
 * - else, for root, `/run/daemonkit/NAME.pid` and `/var/log/daemonkit/NAME.log`;
 * - else `$XDG_RUNTIME_DIR/daemonkit/NAME.pid` (or `~/.local/state/daemonkit/run` without it)
 *   and `$XDG_STATE_HOME/daemonkit/log/NAME.log` (`~/.local/state/daemonkit/log`).
 * Beside each pidfile: `NAME.pid.state` (how it was started, 0600) and `NAME.pid.failed`.
 */
export interface RegistryPaths {
  /** Where the pidfiles and state files are. */
  run: string
  /** Where the logs are. */
  log: string
}

/** The registry's folders for this user and environment. */
export function registryPaths(env: NodeJS.ProcessEnv = process.env): RegistryPaths {
  if (env.DAEMONKIT_HOME) {
    const home = path.resolve(env.DAEMONKIT_HOME)
    return { run: path.join(home, 'run'), log: path.join(home, 'log') }
  }
  if (process.getuid?.() === 0) return { run: '/run/daemonkit', log: '/var/log/daemonkit' }
  const state = env.XDG_STATE_HOME ? path.resolve(env.XDG_STATE_HOME) : path.join(os.homedir(), '.local', 'state')
  const run = env.XDG_RUNTIME_DIR ? path.join(path.resolve(env.XDG_RUNTIME_DIR), 'daemonkit') : path.join(state, 'daemonkit', 'run')
  return { run, log: path.join(state, 'daemonkit', 'log') }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/

/**
 * Checks a daemon name: letters, digits, `_ . @ -`, at most 64, not starting with a dot or dash.
 * `what` names it in the error: `spawnDaemon: option "name"`, `--name`.
 */
export function checkName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !NAME.test(name) || name.includes('..')) {
    throw new TypeError(`${what} must be 1 to 64 letters, digits, "_", ".", "@" or "-", starting with a letter or digit (got ${JSON.stringify(name)})`)
  }
  return name
}

/** The pidfile of the daemon called `name`. */
export function namedPidfile(name: string, env?: NodeJS.ProcessEnv): string {
  return path.join(registryPaths(env).run, `${name}.pid`)
}

/** The log file of the daemon called `name` (stdout and stderr, unless told otherwise). */
export function namedLog(name: string, env?: NodeJS.ProcessEnv): string {
  return path.join(registryPaths(env).log, `${name}.log`)
}

/** Creates the registry's folders (0755; 0700 for the per-user ones) as needed. */
export function ensureRegistry(env?: NodeJS.ProcessEnv): RegistryPaths {
  const p = registryPaths(env)
  const mode = process.getuid?.() === 0 ? 0o755 : 0o700
  for (const dir of [p.run, p.log]) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode })
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      const from = (env ?? process.env).DAEMONKIT_HOME
        ? 'it comes from DAEMONKIT_HOME'
        : process.getuid?.() === 0
          ? 'the folders of root; set DAEMONKIT_HOME to use others'
          : 'it comes from XDG_RUNTIME_DIR and XDG_STATE_HOME (or the home folder); set DAEMONKIT_HOME to use another'
      const message = `cannot create the registry folder ${dir} (${e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied' : (e.code ?? e.message)}): ${from}`
      throw Object.assign(new Error(message, { cause: err }), { code: e.code ?? 'EIO' })
    }
  }
  return p
}

/** How a daemon was started, kept beside its pidfile so `restart` needs no command line. */
export interface DaemonState {
  /** The name, when it has one. */
  name?: string
  /** The command and its arguments. */
  command: string
  args: string[]
  /** The folder it runs in. */
  cwd: string
  /** The `spawnDaemon()` options it was started with (environment additions included). */
  options: Record<string, unknown>
  /** When it was started (ISO 8601). */
  startedAt: string
}

/** `PIDFILE.state`. */
export function statePath(pidFile: string): string {
  return `${pidFile}.state`
}

/** Writes the state file (0600, replaced atomically, never through a symlink). */
export function writeState(pidFile: string, state: DaemonState): void {
  const file = statePath(pidFile)
  const tmp = `${file}.${process.pid}.tmp`
  fs.rmSync(tmp, { force: true })
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
  try {
    fs.writeFileSync(fd, `${JSON.stringify(state)}\n`)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
}

/**
 * Reads the state file, if there is a trustworthy one: a regular file owned by us or root that
 * nobody else may write (`restart` runs the command it names, so a file another user planted
 * beside a pidfile in a shared folder must not count).
 */
export function readState(pidFile: string): DaemonState | undefined {
  const text = readSideFile(statePath(pidFile))
  if (text === undefined) return undefined
  try {
    const s = JSON.parse(text) as DaemonState
    if (typeof s.command !== 'string' || !Array.isArray(s.args) || typeof s.options !== 'object' || s.options === null) return undefined
    // A state file copied or renamed from beside another pidfile would start that daemon.
    if (s.options.pidFile !== path.resolve(pidFile)) return undefined
    return s
  } catch {
    return undefined
  }
}

/** The names in the registry: every `NAME.pid`, `NAME.pid.state` or `NAME.pid.failed` there. */
export function registeredNames(env?: NodeJS.ProcessEnv): string[] {
  let entries: string[]
  try {
    entries = fs.readdirSync(registryPaths(env).run)
  } catch {
    return []
  }
  const names = new Set<string>()
  for (const e of entries) {
    const m = /^(.+)\.pid(?:\.state|\.failed)?$/.exec(e)
    if (m && NAME.test(m[1])) names.add(m[1])
  }
  return [...names].sort()
}
