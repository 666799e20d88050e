#!/usr/bin/env node
// Puts the built binaries into the platform packages, checks them, and optionally packs them
// the way `npm publish` would. The publish job runs it for real; every pull request runs it with
// --dry-run, so a missing or misplaced binary is found before a tag.
//
//   node scripts/assemble-packages.js [--artifacts DIR] [--npm-dir DIR] [--only P1,P2]
//                                     [--release-dir DIR] [--dry-run]
//
// --artifacts: CI's downloaded artifacts, one folder per platform: bindings-<platform>/ with
//   daemonkit.<platform>.node and daemonkit-supervise (default: artifacts).
// --npm-dir: the platform packages, npm/<platform>/ (default: npm).
// --only: these platforms instead of every target in package.json "napi.targets".
// --release-dir: also copy the files for the GitHub release there, named by platform
//   (daemonkit.<platform>.node, daemonkit-supervise-<platform>).
// --dry-run: `npm publish --dry-run` each platform package and the root package (scripts
//   ignored: prepublishOnly would publish), and check what they would contain.
//
// Each binary must be an executable file of the platform's format and architecture (ELF or
// Mach-O, x86-64 or arm64); anything missing or misplaced is reported and the exit code is 1.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const ROOT = path.join(__dirname, '..')
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
const SUPERVISOR = 'daemonkit-supervise'

/** napi-rs' platform name of a Rust target triple. */
function platformOf(triple) {
  const [arch, , os, abi] = triple.split('-')
  const cpu = { x86_64: 'x64', aarch64: 'arm64' }[arch]
  if (!cpu) throw new Error(`unknown architecture in ${triple}`)
  if (os === 'darwin') return `darwin-${cpu}`
  if (os === 'linux') return `linux-${cpu}-${abi}`
  throw new Error(`unknown system in ${triple}`)
}

/** 'elf-x64', 'elf-arm64', 'macho-x64', 'macho-arm64', or a description of what the file is. */
function binaryKind(file) {
  const head = Buffer.alloc(20)
  const fd = fs.openSync(file, 'r')
  try {
    fs.readSync(fd, head, 0, 20, 0)
  } finally {
    fs.closeSync(fd)
  }
  if (head.readUInt32BE(0) === 0x7f454c46) return `elf-${{ 0x3e: 'x64', 0xb7: 'arm64' }[head.readUInt16LE(18)] ?? `machine ${head.readUInt16LE(18)}`}`
  if (head.readUInt32LE(0) === 0xfeedfacf) return `macho-${{ 0x01000007: 'x64', 0x0100000c: 'arm64' }[head.readUInt32LE(4)] ?? `cpu ${head.readUInt32LE(4)}`}`
  return 'neither ELF nor Mach-O'
}

function parseArgs(argv) {
  const opts = { artifacts: 'artifacts', npmDir: 'npm', only: undefined, releaseDir: undefined, dryRun: false }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = () => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value`)
      return v
    }
    if (flag === '--artifacts') opts.artifacts = value()
    else if (flag === '--npm-dir') opts.npmDir = value()
    else if (flag === '--only') opts.only = value().split(',').filter(Boolean)
    else if (flag === '--release-dir') opts.releaseDir = value()
    else if (flag === '--dry-run') opts.dryRun = true
    else throw new Error(`unknown option ${flag}`)
  }
  return opts
}

function npmPublishDryRun(dir) {
  const r = spawnSync('npm', ['publish', '--dry-run', '--ignore-scripts', '--json', '--access', 'public'], { cwd: dir, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`npm publish --dry-run in ${dir} failed: ${r.stderr}`)
  const report = JSON.parse(r.stdout.slice(r.stdout.indexOf('{')))
  // npm 11 keys the report by package name; older npm prints the report itself.
  return report.files ? report : Object.values(report)[0]
}

function main() {
  const opts = parseArgs(process.argv.slice(2))
  const platforms = opts.only ?? PKG.napi.targets.map(platformOf)
  const problems = []
  const assembled = []
  for (const platform of platforms) {
    const [os, cpu] = platform.split('-')
    const format = os === 'darwin' ? 'macho' : 'elf'
    const from = path.join(opts.artifacts, `bindings-${platform}`)
    const dest = path.join(opts.npmDir, platform)
    if (!fs.existsSync(path.join(dest, 'package.json'))) {
      problems.push(`${platform}: no package at ${dest}`)
      continue
    }
    const files = { [`${PKG.napi.binaryName}.${platform}.node`]: 0o644, [SUPERVISOR]: 0o755 }
    let complete = true
    for (const [name, mode] of Object.entries(files)) {
      const source = path.join(from, name)
      if (!fs.existsSync(source)) {
        problems.push(`${platform}: ${source} is missing`)
        complete = false
        continue
      }
      const kind = binaryKind(source)
      if (kind !== `${format}-${cpu}`) {
        problems.push(`${platform}: ${source} is ${kind}, not ${format}-${cpu}`)
        complete = false
        continue
      }
      fs.copyFileSync(source, path.join(dest, name))
      fs.chmodSync(path.join(dest, name), mode)
      if (opts.releaseDir) {
        fs.mkdirSync(opts.releaseDir, { recursive: true })
        fs.copyFileSync(source, path.join(opts.releaseDir, name === SUPERVISOR ? `${SUPERVISOR}-${platform}` : name))
      }
    }
    if (complete) assembled.push(platform)
  }

  if (opts.dryRun && problems.length === 0) {
    for (const platform of assembled) {
      const report = npmPublishDryRun(path.join(opts.npmDir, platform))
      const packed = new Map(report.files.map((f) => [f.path, f.mode]))
      for (const [name, exec] of [[`${PKG.napi.binaryName}.${platform}.node`, false], [SUPERVISOR, true]]) {
        if (!packed.has(name)) problems.push(`${report.name}: npm would publish it without ${name}`)
        else if (exec && (packed.get(name) & 0o111) !== 0o111) problems.push(`${report.name}: npm would publish ${name} not executable`)
      }
      if (report.version !== PKG.version) problems.push(`${report.name}: version ${report.version}, the root package is ${PKG.version}`)
      console.log(`npm publish --dry-run ${report.name}@${report.version}: ${report.files.map((f) => f.path).join(', ')} (${(report.size / 1024).toFixed(1)} KiB)`)
    }
    const root = npmPublishDryRun(ROOT)
    const rootFiles = root.files.map((f) => f.path)
    for (const needed of ['dist/index.js', 'esm/index.mjs', 'binding/index.js']) {
      if (!rootFiles.includes(needed)) problems.push(`${root.name}: npm would publish it without ${needed}`)
    }
    const strays = rootFiles.filter((f) => f.endsWith('.node') || path.basename(f) === SUPERVISOR)
    if (strays.length) problems.push(`${root.name}: npm would publish binaries in the root package: ${strays.join(', ')}`)
    console.log(`npm publish --dry-run ${root.name}@${root.version}: ${rootFiles.length} files (${(root.size / 1024).toFixed(1)} KiB)`)
  }

  for (const problem of problems) console.error(`assemble-packages: ${problem}`)
  if (problems.length) process.exit(1)
  console.log(`assembled: ${assembled.join(', ')}`)
}

try {
  main()
} catch (err) {
  console.error(`assemble-packages: ${err.message}`)
  process.exit(1)
}
