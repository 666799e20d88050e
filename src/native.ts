import { UnsupportedPlatformError } from './errors'

/** The native binding's API (see crates/daemonkit-napi). */
export type Native = typeof import('../binding/index')

let cached: Native | undefined

/** Loads the native binding, or throws `UnsupportedPlatformError` saying what to do. */
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
    throw new UnsupportedPlatformError(
      `daemonkit has no native binary for ${process.platform}-${process.arch}` +
        `${process.platform === 'linux' ? ' (glibc or musl)' : ''}. ` +
        'Reinstall without --no-optional / --omit=optional so that the platform package is installed, ' +
        'or build it from source with a Rust toolchain: npm run build.',
      { cause },
    )
  }
  return cached
}
