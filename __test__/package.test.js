'use strict'
// The package as users get it: packed with `npm pack`, installed from the tarballs into a fresh
// project with no Rust toolchain on PATH, then required, imported, type-checked and run there.
// The packing and installing is shared with the portable smoke test, scripts/install-check.js.
const test = require('ava')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { procStat } = require('./helpers')
const ic = require('../scripts/install-check')

const ROOT = ic.ROOT
const TSC = require.resolve('typescript/bin/tsc')
const NAPI = path.join(ROOT, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
const onLinux = process.platform === 'linux' ? test : test.skip

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-package-'))
const daemons = new Set()
test.after.always(() => {
  for (const pid of daemons) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true })
})

let prepared
/** Packs both packages and installs them once for every test of this file. */
function setup() {
  prepared ??= (async () => {
    const { PATH, removed } = ic.pathWithoutRust(path.join(tmp, 'bin'))
    const env = ic.userEnv(PATH)
    const packs = path.join(tmp, 'packs')
    fs.mkdirSync(packs)
    const root = await ic.packRoot(packs, env)
    const platform = await ic.packPlatform(path.join(tmp, 'platform'), packs, env)
    // What users get: both packages (npm picks the platform package from optionalDependencies).
    const project = await ic.installProject(path.join(tmp, 'project'), [root.file, platform.file], env)
    // What users get with --omit=optional, or on a platform without a binary: the root package alone.
    const bare = await ic.installProject(path.join(tmp, 'bare'), [root.file], env)
    return { env, PATH, removed, root, platform, project, scripts: ic.writeUserScripts(project), bare, bareScripts: ic.writeUserScripts(bare) }
  })()
  return prepared
}


/** Gone: no /proc entry, or a zombie (this machine's PID 1 reaps orphans late). */
const gone = (pid) => {
  const stat = procStat(pid)
  return stat === undefined || stat.state === 'Z'
}

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`

test('npm pack: the root package is JavaScript and types only, the platform package carries the binary', async (t) => {
  const { root, platform, removed } = await setup()
  const rootFiles = root.files.map((f) => f.path)
  t.true(rootFiles.includes('dist/index.js') && rootFiles.includes('dist/index.d.ts'))
  t.true(rootFiles.includes('esm/index.mjs') && rootFiles.includes('esm/index.d.mts'))
  t.true(rootFiles.includes('binding/index.js') && rootFiles.includes('binding/index.d.ts'))
  t.deepEqual(rootFiles.filter((f) => f.endsWith('.node') || f.includes('daemonkit-supervise')), [])
  t.deepEqual(rootFiles.filter((f) => /^(src|__test__|crates|bench|npm|target)\//.test(f)), [])

  const binary = `daemonkit.${platform.platform}.node`
  const platformFiles = platform.files.map((f) => f.path).sort()
  const expected = ['README.md', binary, 'package.json', ...(platform.supervisor ? ['daemonkit-supervise'] : [])].sort()
  t.deepEqual(platformFiles, expected)
  if (platform.supervisor) {
    const mode = platform.files.find((f) => f.path === 'daemonkit-supervise').mode
    t.is(mode & 0o111, 0o111, 'the supervisor is packed executable')
  }

  // Budgets well above today's sizes (about 46 KiB and 470 KiB packed), to catch a stray file
  // or an unstripped binary rather than a few lines of code.
  t.true(root.size < 100 * 1024, `root package ${kib(root.size)} packed, budget 100 KiB`)
  t.true(platform.size < 2 * 1024 * 1024, `platform package ${kib(platform.size)} packed, budget 2 MiB`)
  t.log(`${root.filename}: ${kib(root.size)} packed, ${kib(root.unpackedSize)} unpacked, ${root.entryCount} files`)
  t.log(
    `${platform.filename}: ${kib(platform.size)} packed, ${kib(platform.unpackedSize)} unpacked, ${platform.entryCount} files` +
      ` (supervisor ${platform.supervisor ? `from ${path.relative(ROOT, platform.supervisor)}` : 'not built: left out'})`,
  )
  t.log(`PATH for npm and node: without ${removed.join(', ') || '(no Rust directory was on PATH)'}`)
})

onLinux('installed from the tarballs with no cargo on PATH, the README quick start daemonizes, status() says running, stop() stops it', async (t) => {
  const { env, PATH, project, scripts, platform } = await setup()
  t.deepEqual(ic.onPath(ic.RUST_TOOLS, PATH), [])
  const pidFile = path.join(tmp, 'quick.pid')
  const portFile = path.join(tmp, 'quick.port')

  const launch = await ic.run(process.execPath, [scripts['app.mjs'], pidFile, portFile, path.join(tmp, 'quick.log')], { cwd: project, env })
  t.is(launch.code, 0, launch.stderr)
  const pid = Number(fs.readFileSync(pidFile, 'utf8'))
  daemons.add(pid)
  t.true(pid > 1)

  // The daemon runs, in a session it does not lead, with the binary from the platform package.
  const stat = procStat(pid)
  t.truthy(stat)
  t.not(stat.state, 'Z')
  t.not(stat.session, pid)
  const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8')
  t.true(maps.includes(path.join(project, 'node_modules', `daemonkit-${platform.platform}`, `daemonkit.${platform.platform}.node`)))
  t.false(maps.includes(path.join(ROOT, 'binding')), 'the daemon must not use the repository build')
  t.true(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(scripts['app.mjs']))

  t.is(await ic.httpGet(Number(fs.readFileSync(portFile, 'utf8'))), `hello from daemon ${pid}\n`)
  t.deepEqual(await ic.nodeJson(project, [scripts['manage.cjs'], 'status', pidFile], env), { state: 'running', pid })

  const stopped = await ic.nodeJson(project, [scripts['manage.cjs'], 'stop', pidFile], env)
  t.like(stopped, { stopped: true, pid, signal: 'SIGTERM', forced: false })
  t.true(await ic.waitFor(() => gone(pid)), `daemon ${pid} is still there: ${JSON.stringify(procStat(pid))}`)
  t.false(fs.existsSync(pidFile))
  t.deepEqual(await ic.nodeJson(project, [scripts['manage.cjs'], 'status', pidFile], env), { state: 'stopped' })
  daemons.delete(pid)
})

test('require and import go through the exports map to one implementation', async (t) => {
  const { env, project, scripts, platform } = await setup()
  const pidFile = path.join(tmp, 'modules.pid')
  const cjs = await ic.nodeJson(project, [scripts['check.cjs'], pidFile], env)
  const esm = await ic.nodeJson(project, [scripts['check.mjs'], pidFile], env)
  const installed = path.join(project, 'node_modules', 'daemonkit')

  t.is(cjs.resolved, path.join(installed, 'dist', 'index.js'))
  if (esm.resolved) t.is(esm.resolved, `file://${path.join(installed, 'esm', 'index.mjs')}`)
  for (const name of ['daemonize', 'Daemon', 'status', 'stop', 'signal', 'isDaemon', 'UnsupportedPlatformError']) {
    t.true(cjs.keys.includes(name), name)
  }
  t.deepEqual(esm.keys, cjs.keys, 'import sees every export of require')
  t.true(esm.named)
  t.true(esm.sameAsRequire, 'import and require give the same functions: one module state')
  t.true(esm.defaultIsRequire)
  t.deepEqual(cjs.status, { state: 'stopped' })
  t.deepEqual(esm.status, { state: 'stopped' })
  t.deepEqual(cjs.binaries, [path.join(project, 'node_modules', `daemonkit-${platform.platform}`, `daemonkit.${platform.platform}.node`)])
})

test('the daemonkit command is installed from the tarball and runs without Rust on PATH', async (t) => {
  const { env, project } = await setup()
  const r = await ic.run(path.join(project, 'node_modules', '.bin', 'daemonkit'), ['--version'], { cwd: project, env })
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout.trim(), `daemonkit ${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version}`)
})

const CONSUMER_MTS = `import daemonkit, { daemonize, Daemon, status, stop, UnsupportedPlatformError } from 'daemonkit'
import type { DaemonHandle, DaemonStatus, StopResult } from 'daemonkit'

export const handle: Promise<DaemonHandle> = daemonize({ pidFile: '/tmp/app.pid', ready: 'manual' })
export const state: Promise<DaemonStatus> = status('/tmp/app.pid')
export const stopped: Promise<StopResult> = stop('/tmp/app.pid', { timeout: 1000 })
export const service = new Daemon({ pidFile: '/tmp/app.pid', run: () => {} })
export const code: string = new UnsupportedPlatformError('no binary').code
export const same: typeof status = daemonkit.status
// @ts-expect-error pidFile is a string: proves the types are real, not any
daemonize({ pidFile: 42 })
`

const CONSUMER_CTS = `import daemonkit = require('daemonkit')

export const state: Promise<daemonkit.DaemonStatus> = daemonkit.status('/tmp/app.pid')
export const service: daemonkit.Daemon = new daemonkit.Daemon('/tmp/app.pid')
// @ts-expect-error status() needs the pidfile: proves the types are real, not any
daemonkit.status()
`

for (const resolution of ['node16', 'nodenext']) {
  test(`types: tsc (${resolution}) type-checks an ESM and a CommonJS consumer against the installed package`, async (t) => {
    const { project } = await setup()
    const dir = path.join(project, `types-${resolution}`)
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, 'consumer.mts'), CONSUMER_MTS)
    fs.writeFileSync(path.join(dir, 'consumer.cts'), CONSUMER_CTS)
    const args = [
      TSC,
      '--noEmit',
      '--strict',
      '--target', 'es2022',
      '--lib', 'es2022',
      '--module', resolution,
      '--moduleResolution', resolution,
      '--typeRoots', path.join(ROOT, 'node_modules', '@types'),
      '--types', 'node',
      '--traceResolution',
      'consumer.mts',
      'consumer.cts',
    ]
    const r = await ic.run(process.execPath, args, { cwd: dir, timeout: 60_000 })
    const errors = r.stdout.split('\n').filter((l) => /error TS\d+/.test(l))
    t.is(r.code, 0, errors.join('\n') || r.stderr)
    const resolved = new Set(
      [...r.stdout.matchAll(/Module name 'daemonkit' was successfully resolved to '([^']+)'/g)].map((m) => path.relative(project, m[1])),
    )
    t.deepEqual([...resolved].sort(), [
      path.join('node_modules', 'daemonkit', 'dist', 'index.d.ts'),
      path.join('node_modules', 'daemonkit', 'esm', 'index.d.mts'),
    ])
  })
}

test('without the platform package (--omit=optional), the package imports and calls fail with what to do', async (t) => {
  const { env, bare, bareScripts } = await setup()
  t.false(fs.existsSync(path.join(bare, 'node_modules', `daemonkit-${ic.hostPlatform()}`)))
  const pidFile = path.join(tmp, 'bare.pid')
  const cjs = await ic.nodeJson(bare, [bareScripts['check.cjs'], pidFile], env)
  const esm = await ic.nodeJson(bare, [bareScripts['check.mjs'], pidFile], env)
  t.true(esm.named && esm.sameAsRequire, 'import works without a binary')
  t.deepEqual(esm.keys, cjs.keys)

  const where = `${process.platform}-${process.arch}`
  for (const error of [cjs.error, esm.error]) {
    t.truthy(error, 'status() must fail without a binary')
    t.true(error.message.includes(`no native binary for ${where}`), error.message)
    t.true(error.message.includes(`optional package daemonkit-${ic.hostPlatform()} is not installed`), error.message)
    t.true(error.message.includes('--omit=optional') && error.message.includes('from source'), error.message)
    t.notRegex(error.message, /Cannot find module|\n\s+at /, 'a message, not a stack trace from require')
  }
  const calls = await ic.nodeJson(bare, [bareScripts['unsupported.mjs'], pidFile], env)
  t.like(calls.daemonize, { rejected: true, isUnsupported: true, code: 'EDAEMONPLATFORM', platform: where })
  t.regex(calls.daemonize.message, new RegExp(`^daemonkit has no native binary for ${where}`))
  t.true(calls.status.rejected, 'status() rejects, it does not throw')
  t.false(fs.existsSync(pidFile))
})

test('Windows (process.platform made win32 by a preload): the package imports, daemonize() rejects with UnsupportedPlatformError', async (t) => {
  const { env, project, scripts } = await setup()
  const pidFile = path.join(tmp, 'windows.pid')
  const out = await ic.nodeJson(project, ['--require', scripts['win32.cjs'], scripts['unsupported.mjs'], pidFile], env)
  t.is(out.platform, 'win32')
  t.false(out.isDaemon)
  t.like(out.daemonize, { rejected: true, isUnsupported: true, code: 'EDAEMONPLATFORM', platform: `win32-${process.arch}` })
  t.regex(out.daemonize.message, /Windows service/)
  t.true(out.status.rejected)
  const viaRequire = await ic.nodeJson(project, ['--require', scripts['win32.cjs'], scripts['check.cjs'], pidFile], env)
  t.true(viaRequire.keys.includes('daemonize'), 'require works on Windows too')
  t.false(fs.existsSync(pidFile))
})

test('status() rejects with UnsupportedPlatformError itself (EDAEMONPLATFORM) without a binary and on Windows', async (t) => {
  const { env, project, scripts, bare, bareScripts } = await setup()
  const pidFile = path.join(tmp, 'unsupported.pid')
  const missing = await ic.nodeJson(bare, [bareScripts['unsupported.mjs'], pidFile], env)
  const windows = await ic.nodeJson(project, ['--require', scripts['win32.cjs'], scripts['unsupported.mjs'], pidFile], env)
  for (const [what, result] of [
    ['status() without a binary', missing.status],
    ['status() on Windows', windows.status],
  ]) {
    t.like(result, { rejected: true, isUnsupported: true, code: 'EDAEMONPLATFORM' }, what)
  }
  t.regex(missing.status.message, new RegExp(`^daemonkit has no native binary for ${process.platform}-${process.arch}`))
})

test('napi prepublish -t npm fills optionalDependencies with the six platform packages; none are declared before', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  t.is(pkg.optionalDependencies, undefined, 'npm ci would fetch unpublished packages')
  // The GitHub release is made by the workflow once npm has every package (docs/install.md).
  t.is(pkg.scripts.prepublishOnly, 'napi prepublish -t npm --no-gh-release')

  // A release checkout: the platform packages with their files, as CI's publish job lays them out.
  const dir = path.join(tmp, 'release')
  fs.mkdirSync(dir)
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'))
  fs.cpSync(path.join(ROOT, 'npm'), path.join(dir, 'npm'), { recursive: true, filter: (f) => !f.endsWith('.node') && !f.endsWith('daemonkit-supervise') })
  const platforms = fs.readdirSync(path.join(dir, 'npm')).sort()
  for (const p of platforms) {
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'npm', p, 'package.json'), 'utf8'))
    t.is(manifest.name, `daemonkit-${p}`)
    t.is(manifest.version, pkg.version)
    t.deepEqual(manifest.files, [`daemonkit.${p}.node`, 'daemonkit-supervise'])
    t.deepEqual(manifest.os, [p.split('-')[0]])
    t.deepEqual(manifest.cpu, [p.split('-')[1]])
    if (p.startsWith('linux-')) t.deepEqual(manifest.libc, [p.endsWith('-musl') ? 'musl' : 'glibc'])
    fs.writeFileSync(path.join(dir, 'npm', p, `daemonkit.${p}.node`), 'stand-in binary\n')
    fs.writeFileSync(path.join(dir, 'npm', p, 'daemonkit-supervise'), '#!/bin/sh\n', { mode: 0o755 })
  }
  t.is(platforms.length, pkg.napi.targets.length)

  // --skip-optional-publish and --no-gh-release: everything but the publishing.
  const env = ic.userEnv(process.env.PATH)
  for (const key of Object.keys(env)) if (key.startsWith('GITHUB_')) delete env[key]
  const r = await ic.run(process.execPath, [NAPI, 'prepublish', '-t', 'npm', '--skip-optional-publish', '--no-gh-release'], { cwd: dir, env })
  t.is(r.code, 0, r.stdout + r.stderr)
  const published = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
  t.deepEqual(published.optionalDependencies, Object.fromEntries(platforms.map((p) => [`daemonkit-${p}`, pkg.version])))
})
