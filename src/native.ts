import { UnsupportedPlatformError } from './errors'

/** The native binding's API (see crates/daemonkit-napi). */
export type Native = typeof import('../binding/index')

let cached: Native | undefined

/** The platforms a prebuilt binary is published for (package.json `napi.targets`). */
const PREBUILT: Record<string, readonly string[]> = { linux: ['x64', 'arm64'], darwin: ['x64', 'arm64'] }

/** `true` when this Linux process runs on musl (no glibc version in the process report). */
function isMusl(): boolean {
  // excludeNetwork (Node >= 20.13) is missing from @types/node 20.
  const report = process.report as (NodeJS.ProcessReport & { excludeNetwork?: boolean }) | undefined
  if (!report || typeof report.getReport !== 'function') return false
  const excludeNetwork = report.excludeNetwork
  try {
    report.excludeNetwork = true // no DNS look-ups for a report we read one field of
    const header = (report.getReport() as { header?: { glibcVersionRuntime?: string } }).header
    return !header?.glibcVersionRuntime
  } catch {
    return false
  } finally {
    report.excludeNetwork = excludeNetwork
  }
}

/**
 * The name of the npm package that carries this machine's prebuilt binary, as napi-rs names
 * them (`daemonkit-linux-x64-gnu`, `daemonkit-darwin-arm64`, …), or `undefined` when none is
 * published for this platform.
 */
export function platformPackageName(): string | undefined {
  const { platform, arch } = process
  if (!PREBUILT[platform]?.includes(arch)) return undefined
  if (platform === 'linux') return `daemonkit-linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  return `daemonkit-${platform}-${arch}`
}

/** What the generated loader tried, minus "not found": the reasons an existing binary failed to load. */
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
function missingBinary(cause: unknown): UnsupportedPlatformError {
  const where = `${process.platform}-${process.arch}`
  const pkg = platformPackageName()
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
    throw missingBinary(cause)
  }
  return cached
}
