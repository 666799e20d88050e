import { UnsupportedPlatformError } from './errors'

/** The native binding's API (see crates/daemonkit-napi). */
export type Native = typeof import('../binding/index')

/**
 * What binding/index.js (the one loader) decided: this machine's platform as napi-rs names it,
 * the platform package published for it (`undefined` where none is), and the directory the
 * addon was loaded from (`undefined` when `NAPI_RS_NATIVE_LIBRARY_PATH` named it, or on failure).
 * The loader puts it on the binding, or on its error, under this symbol.
 */
export interface Loaded {
  platform: string
  platformPackage: string | undefined
  dir: string | undefined
}

const LOADER = Symbol.for('daemonkit.loader')

let cached: Native | undefined
/** What the loader said when it last failed. */
let failedLoad: Loaded | undefined

/** What the loader tried, minus "not found": the reasons an existing binary failed to load. */
function loadFailures(cause: unknown): string[] {
  const out: string[] = []
  const seen = new Set<unknown>()
  for (let e = (cause as { cause?: unknown } | undefined)?.cause; e && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e)
    const message = String((e as { message?: unknown }).message ?? e)
    if (!message.startsWith('Cannot find module')) out.push(message.split('\n')[0])
  }
  return out
}

/** The `UnsupportedPlatformError` for a binding that could not be loaded, saying what to do. */
function missingBinary(cause: unknown, pkg: string | undefined): UnsupportedPlatformError {
  const where = `${process.platform}-${process.arch}`
  const fromSource = 'or build it from source with a Rust toolchain (git clone, then npm install && npm run build; see docs/install.md).'
  if (!pkg) {
    return new UnsupportedPlatformError(
      `daemonkit has no prebuilt native binary for ${where}: binaries are published for Linux x64 and arm64 ` +
        `(glibc and musl) and macOS x64 and arm64. Build it for this platform from source with a Rust toolchain ` +
        '(git clone, then npm install && npm run build; see docs/install.md).',
      { cause },
    )
  }
  const libc = process.platform === 'linux' ? (pkg.endsWith('-musl') ? ' (musl)' : ' (glibc)') : ''
  const failures = loadFailures(cause)
  if (failures.length > 0) {
    return new UnsupportedPlatformError(
      `daemonkit's native binary for ${where}${libc} could not be loaded: ${failures[0]}. ` +
        `Reinstall daemonkit so that ${pkg} matches it (same version, installed on this machine), ${fromSource}`,
      { cause },
    )
  }
  return new UnsupportedPlatformError(
    `daemonkit has no native binary for ${where}${libc}: the optional package ${pkg} is not installed. ` +
      'Install daemonkit on this machine with its optional dependencies (not with --no-optional or ' +
      `--omit=optional, and not by copying node_modules from another platform), ${fromSource}`,
    { cause },
  )
}

/**
 * Loads the native binding, or throws `UnsupportedPlatformError` saying what to do. Only called
 * when a function needs the binding, so importing the package never throws, on any platform.
 */
export function native(): Native {
  if (cached) return cached
  if (process.platform === 'win32') {
    throw new UnsupportedPlatformError(
      'daemonkit needs a Unix system (Linux or macOS): Windows has no fork, sessions or flock. ' +
        'Run the program as a Windows service instead (for example with node-windows or NSSM).',
    )
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require('../binding/index.js') as Native
  } catch (cause) {
    // Deno refused the loader a permission (it reads the CPU list, `--allow-sys`): its own
    // error names the permission and the flag, where "no binary" would mislead.
    for (let e = cause; e; e = (e as { cause?: unknown }).cause) if ((e as Error).name === 'NotCapable') throw e
    failedLoad = (cause as { [LOADER]?: Loaded } | undefined)?.[LOADER]
    throw missingBinary(cause, failedLoad?.platformPackage)
  }
  return cached
}

/**
 * Where the loader found (or looked for) the addon, loading it first if need be; `undefined`
 * where it was never looked for (Windows).
 */
export function loaded(): Loaded | undefined {
  failedLoad = undefined
  try {
    return (native() as unknown as { [LOADER]?: Loaded })[LOADER]
  } catch (err) {
    if (err instanceof UnsupportedPlatformError) return failedLoad
    throw err
  }
}
