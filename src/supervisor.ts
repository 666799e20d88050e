import * as fs from 'node:fs'
import * as path from 'node:path'

import { UnsupportedPlatformError } from './errors'
import { platformPackageName } from './native'

const NAME = 'daemonkit-supervise'

let cached: string | undefined

/**
 * The path of the supervisor executable: next to the binding in a source build, else in the
 * platform package. Throws `UnsupportedPlatformError` if neither has it.
 */
export function supervisorPath(): string {
  if (cached) return cached
  const candidates = [path.join(__dirname, '..', 'binding', NAME)]
  const pkg = platformPackageName()
  try {
    if (pkg) candidates.push(path.join(path.dirname(require.resolve(`${pkg}/package.json`)), NAME))
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
