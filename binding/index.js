'use strict'
// daemonkit's loader of its native parts: the one place that decides this machine's platform,
// and from it the addon to load and where the supervisor executable lives. Written by hand:
// `napi build --no-js` leaves it alone, and it knows only the platforms daemonkit builds for,
// under napi-rs's names (`linux-x64-gnu`, `darwin-arm64`, …).
//
// The addon comes from `NAPI_RS_NATIVE_LIBRARY_PATH` when set (and from nowhere else), else from
// `daemonkit.<platform>.node` beside this file (a build from source), else from the platform
// package `daemonkit-<platform>`. module.exports is the addon itself, as napi-rs loaders have it;
// where it came from is under the symbol `Symbol.for('daemonkit.loader')` (see src/native.ts),
// and on failure the thrown error carries the same under that symbol, with the reasons as a
// chain of `cause`s.

const { readFileSync } = require('node:fs')
const path = require('node:path')

const LOADER = Symbol.for('daemonkit.loader')

/** The platforms with a published platform package (package.json `napi.targets`). */
const PUBLISHED = ['linux-x64-gnu', 'linux-arm64-gnu', 'linux-x64-musl', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64']

// One literal require per platform, each inside a try, so that bundlers (`bun build --compile`,
// esbuild, webpack) take the addon along when it is there and do not fail when it is not.
function localAddon(platform) {
  try {
    switch (platform) {
      case 'linux-x64-gnu': return require('./daemonkit.linux-x64-gnu.node')
      case 'linux-arm64-gnu': return require('./daemonkit.linux-arm64-gnu.node')
      case 'linux-x64-musl': return require('./daemonkit.linux-x64-musl.node')
      case 'linux-arm64-musl': return require('./daemonkit.linux-arm64-musl.node')
      case 'darwin-x64': return require('./daemonkit.darwin-x64.node')
      case 'darwin-arm64': return require('./daemonkit.darwin-arm64.node')
      // A build from source for a platform without a published binary (FreeBSD, riscv64, …).
      default: return require(`./daemonkit.${platform}.node`)
    }
  } catch (e) {
    throw e
  }
}

/** The platform package's addon and version. */
function packageAddon(platform) {
  try {
    switch (platform) {
      case 'linux-x64-gnu': return [require('daemonkit-linux-x64-gnu'), require('daemonkit-linux-x64-gnu/package.json').version]
      case 'linux-arm64-gnu': return [require('daemonkit-linux-arm64-gnu'), require('daemonkit-linux-arm64-gnu/package.json').version]
      case 'linux-x64-musl': return [require('daemonkit-linux-x64-musl'), require('daemonkit-linux-x64-musl/package.json').version]
      case 'linux-arm64-musl': return [require('daemonkit-linux-arm64-musl'), require('daemonkit-linux-arm64-musl/package.json').version]
      case 'darwin-x64': return [require('daemonkit-darwin-x64'), require('daemonkit-darwin-x64/package.json').version]
      case 'darwin-arm64': return [require('daemonkit-darwin-arm64'), require('daemonkit-darwin-arm64/package.json').version]
    }
  } catch (e) {
    throw e
  }
  throw new Error(`Cannot find module 'daemonkit-${platform}'`)
}

const isMuslFile = (f) => f.includes('libc.musl-') || f.includes('ld-musl-')

/**
 * Whether this Linux process runs on musl: what /usr/bin/ldd says, else the process report
 * (left to throw: Deno without --allow-sys names that permission), else `ldd --version`.
 */
function isMusl() {
  try {
    return readFileSync('/usr/bin/ldd', 'utf-8').includes('musl')
  } catch {
    // no ldd to read: ask the process report
  }
  const report = process.report
  if (report && typeof report.getReport === 'function') {
    const excludeNetwork = report.excludeNetwork
    report.excludeNetwork = true // no DNS look-ups for a report we read two fields of
    try {
      const { header, sharedObjects } = report.getReport()
      if (header && header.glibcVersionRuntime) return false
      return Array.isArray(sharedObjects) && sharedObjects.some(isMuslFile)
    } finally {
      report.excludeNetwork = excludeNetwork
    }
  }
  try {
    return require('node:child_process').execSync('ldd --version', { encoding: 'utf8' }).includes('musl')
  } catch {
    return false
  }
}

/** This machine's platform as napi-rs names builds (`linux-x64-gnu`, `darwin-arm64`, `freebsd-x64`). */
function platformName() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const abi = isMusl() ? 'musl' : 'gnu'
    return `linux-${arch}-${arch === 'arm' ? `${abi}eabihf` : abi}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

/** The reasons of a failed load as a `cause` chain, the last one outermost. */
function causeChain(errors) {
  let chain
  for (const e of errors) {
    const link = new Error(e && typeof e.message === 'string' ? e.message : String(e))
    if (chain) link.cause = chain
    chain = link
  }
  return chain
}

/** The platform package's folder, where its supervisor is; `undefined` inside a bundle. */
function packageDir(name) {
  try {
    return path.dirname(require.resolve(`${name}/package.json`))
  } catch {
    return undefined
  }
}

function load() {
  const platform = platformName()
  const platformPackage = PUBLISHED.includes(platform) ? `daemonkit-${platform}` : undefined
  const errors = []
  const found = (binding, dir) => {
    Object.defineProperty(binding, LOADER, { value: { platform, platformPackage, dir }, configurable: true })
    return binding
  }
  const override = process.env.NAPI_RS_NATIVE_LIBRARY_PATH
  if (override) {
    try {
      return found(require(override), undefined)
    } catch (e) {
      errors.push(e)
    }
  } else {
    try {
      return found(localAddon(platform), __dirname)
    } catch (e) {
      errors.push(e)
    }
    if (platformPackage) {
      try {
        const [binding, bindingPackageVersion] = packageAddon(platform)
        if (bindingPackageVersion !== '0.1.0' && process.env.NAPI_RS_ENFORCE_VERSION_CHECK && process.env.NAPI_RS_ENFORCE_VERSION_CHECK !== '0') {
          throw new Error(`Native binding package version mismatch, expected 0.1.0 but got ${bindingPackageVersion}. You can reinstall dependencies to fix this issue.`)
        }
        return found(binding, packageDir(platformPackage))
      } catch (e) {
        errors.push(e)
      }
    }
  }
  const error = new Error(`Cannot find native binding for ${platform}`)
  error.cause = causeChain(errors)
  Object.defineProperty(error, LOADER, { value: { platform, platformPackage, dir: undefined } })
  throw error
}

module.exports = load()
