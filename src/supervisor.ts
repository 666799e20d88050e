import * as fs from 'node:fs'
import * as path from 'node:path'

import { UnsupportedPlatformError } from './errors'

const NAME = 'daemonkit-supervise'

let cached: string | undefined

/** The platform package's name for this machine, as napi-rs names them. */
function platformPackage(): string {
  const arch = process.arch
  if (process.platform === 'darwin') return `daemonkit-darwin-${arch}`
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
  const libc = report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'
  return `daemonkit-${process.platform}-${arch}-${libc}`
}

/**
 * The path of the supervisor executable: next to the binding in a source build, else in the
 * platform package. Throws `UnsupportedPlatformError` if neither has it.
 */
export function supervisorPath(): string {
  if (cached) return cached
  const candidates = [path.join(__dirname, '..', 'binding', NAME)]
  try {
    candidates.push(path.join(path.dirname(require.resolve(`${platformPackage()}/package.json`)), NAME))
  } catch {
    // The platform package is not installed (a source build).
  }
  for (const candidate of candidates) {
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      cached = candidate
      return candidate
    } catch {
      // try the next
    }
  }
  throw new UnsupportedPlatformError(
    `daemonkit's supervisor (${NAME}) is missing for ${process.platform}-${process.arch}; ` +
      'reinstall with optional dependencies, or build it from source: npm run build',
  )
}
