import * as fs from 'node:fs'
import * as path from 'node:path'

import { supervisorDefaults } from './defaults'
import { UnsupportedPlatformError } from './errors'
import { loaded } from './native'

let cached: string | undefined

/**
 * The path of the supervisor executable: `$DAEMONKIT_SUPERVISOR_PATH` when set (as
 * `NAPI_RS_NATIVE_LIBRARY_PATH` is for the addon), else beside the addon the loader chose, else
 * beside the loader (a source build), else in the platform package. Throws
 * `UnsupportedPlatformError` if none has it; a variable that names no executable is an error,
 * never silently passed over.
 */
export function supervisorPath(): string {
  const NAME = supervisorDefaults().name
  const override = process.env.DAEMONKIT_SUPERVISOR_PATH
  if (override) {
    const file = path.resolve(override)
    try {
      fs.accessSync(file, fs.constants.X_OK)
      if (!fs.statSync(file).isFile()) throw new Error('not a regular file')
    } catch (err) {
      throw new UnsupportedPlatformError(
        `DAEMONKIT_SUPERVISOR_PATH=${JSON.stringify(override)} does not name an executable file ` +
          `(${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); unset it to use the bundled ${NAME}`,
        { cause: err },
      )
    }
    return file
  }
  if (cached) return cached
  const where = loaded()
  const candidates = [path.join(__dirname, '..', 'binding', NAME)]
  if (where?.dir !== undefined) candidates.unshift(path.join(where.dir, NAME))
  try {
    if (where?.platformPackage) candidates.push(path.join(path.dirname(require.resolve(`${where.platformPackage}/package.json`)), NAME))
  } catch {
    // The platform package is not installed (a source build).
  }
  for (const candidate of new Set(candidates)) {
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
