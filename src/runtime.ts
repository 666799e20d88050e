import * as fs from 'node:fs'
import * as path from 'node:path'
import { pathToFileURL } from 'node:url'

import { codeOf, LaunchError } from './errors'
import { native } from './native'

/** The JavaScript runtime this process runs on. */
export type RuntimeName = 'node' | 'bun' | 'deno'

/** Which runtime runs this process (Bun and Deno both fill in `process.versions.node`). */
export function runtimeName(): RuntimeName {
  if (process.versions.bun !== undefined) return 'bun'
  if (process.versions.deno !== undefined) return 'deno'
  return 'node'
}

/**
 * Closes a descriptor. Deno's `fs` refuses descriptors it did not open itself (the binding's
 * pipes, the pidfile, those inherited from the launcher): those are closed through the binding.
 */
export function closeFd(fd: number): void {
  if (runtimeName() !== 'deno') {
    fs.closeSync(fd)
    return
  }
  try {
    fs.closeSync(fd)
  } catch {
    native().closeFd(fd)
  }
}

/** Writes `text` to a descriptor the binding made or the launcher passed down. */
export function writeFd(fd: number, text: string): void {
  if (runtimeName() !== 'deno') {
    fs.writeSync(fd, text)
    return
  }
  const data = Buffer.from(text)
  for (let off = 0; off < data.length; ) off += native().writeFd(fd, data.subarray(off))
}

/** The kind of file open at `fd` and how it is open, or undefined when `fd` is not open. */
export function describeFd(fd: number): { stat: { isFIFO(): boolean; isDirectory(): boolean; dev: number; ino: number }; writable: boolean } | undefined {
  try {
    // Through the binding: Deno's fs.fstatSync refuses descriptors it did not open itself.
    const st = native().fdStat(fd)
    const stat = { isFIFO: () => st.fifo, isDirectory: () => st.directory, dev: st.dev, ino: st.ino }
    return { stat, writable: native().fdAccess(fd).writable }
  } catch {
    return undefined
  }
}

/** Writes all of `data` to `fd`, synchronously. */
export function writeAll(fd: number, data: Buffer): void {
  for (let off = 0; off < data.length; ) {
    try {
      off += fs.writeSync(fd, data, off)
    } catch (err) {
      if (codeOf(err) !== 'EAGAIN') throw err
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1) // fd 2 was made non-blocking
    }
  }
}

/** The runtime's own words for a Deno permission (`read`, `ffi`, …) and its flag. */
export interface MissingPermission {
  /** The permission's name, as in `Deno.permissions.query({ name })`. */
  name: string
  /** What it was needed for, as Deno says it (a path, a host, a variable), if it said. */
  target: string | undefined
  /** The command-line flag that grants it. */
  flag: string
}

/** The Deno permission that `text` (an error message or stderr output) says was missing. */
export function missingDenoPermission(text: string): MissingPermission | undefined {
  // eslint-disable-next-line no-control-regex
  const plain = text.replace(/\x1b\[[0-9;]*m/g, '')
  const m = /NotCapable: Requires (\w+) access(?: to ([^\n]*?))?, (?:run again with|specify the required permissions[^\n]*?with) the (--allow-[\w-]+) flag/.exec(plain)
  if (!m) return undefined
  return { name: m[1], target: m[2], flag: m[3] }
}

/** Deno's subcommands other than `run`: a process started by one cannot be started again as a daemon. */
const DENO_SUBCOMMANDS = new Set([
  'eval', 'serve', 'test', 'bench', 'repl', 'task', 'compile', 'install', 'uninstall', 'jupyter', 'lint', 'fmt', 'check',
  'doc', 'info', 'cache', 'coverage', 'upgrade', 'publish', 'add', 'remove', 'outdated', 'init', 'types', 'completions', 'x',
])

interface DenoGlobal {
  mainModule: string
  args: string[]
  execPath(): string
}

/**
 * The command line that starts this Deno program again, with the same subcommand, flags and
 * permissions: Deno's `process.execArgv` is empty (`deno run -A app.ts` shows no `run -A`), so
 * it is read from the process's own argv (through the binding, which needs no read permission).
 * Only `deno run [flags] <local file> [args]` and `deno [flags] <local file> [args]` are
 * supported; anything else (`deno eval`, `deno serve`, a script from stdin or a URL, a binary
 * made by `deno compile`) is refused with a `LaunchError` (`ENOREEXEC`).
 */
export function denoReexecArgs(): string[] {
  const deno = (globalThis as unknown as { Deno: DenoGlobal }).Deno
  const refuse = (why: string): never => {
    throw new LaunchError(
      'ENOREEXEC',
      `daemonize: under Deno the daemon is started as \`deno run [flags] <script file> [args]\`; ${why}. ` +
        'Run the program as `deno run -A app.ts` (or with the --allow-* flags it needs)',
    )
  }
  let argv: string[]
  try {
    argv = native().processArgv()
  } catch (err) {
    if (codeOf(err) !== 'EILSEQ') throw err
    return refuse(`an argument of this process is not UTF-8 (${(err as Error).message})`)
  }
  const args = deno.args
  const scriptAt = argv.length - args.length - 1
  if (scriptAt < 1 || !args.every((a, i) => argv[scriptAt + 1 + i] === a)) {
    return refuse('this process was not started that way (a binary made by `deno compile`?)')
  }
  const script = argv[scriptAt]
  if (!deno.mainModule.startsWith('file:') || pathToFileURL(path.resolve(script)).href !== deno.mainModule) {
    return refuse(`its main module ${deno.mainModule} is not the local file ${JSON.stringify(script)} (code from stdin, \`deno eval\`, a URL?)`)
  }
  const flags = argv.slice(1, scriptAt)
  const sub = flags.find((f) => DENO_SUBCOMMANDS.has(f))
  if (sub !== undefined) return refuse(`this process was started by \`deno ${sub}\``)
  return [deno.execPath(), ...flags, script, ...args]
}
