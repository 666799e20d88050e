#!/usr/bin/env node
// Does what a user does: `npm pack` the root package and this machine's platform package,
// install both tarballs into a fresh project with no Rust toolchain on PATH and no network,
// and use the package there: require and import it, run the README quick start (daemonize,
// status, stop), start and stop a command under the packaged supervisor (spawnDaemon), and
// import it on a simulated Windows. A platform package without the supervisor fails the check.
//
// __test__/package.test.js uses these functions and checks the results in detail through
// /proc. Run directly (`node scripts/install-check.js`) it is the portable smoke test that CI
// runs where the ava suite cannot (Node 18, macOS, Alpine): plain Node >= 18, no dependencies.
// Needs a build first (`npm run build`: dist/, binding/daemonkit.<platform>.node and
// binding/daemonkit-supervise). `--binary FILE` and `--supervisor FILE` take them from elsewhere
// (CI's downloaded artifacts, a cross build checked under another architecture's Node).
'use strict'
const assert = require('node:assert/strict')
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const ROOT_PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
const SUPERVISOR = 'daemonkit-supervise'
/** Where a build leaves the supervisor executable, in order of preference. */
const SUPERVISOR_BUILDS = [path.join(ROOT, 'binding', SUPERVISOR), path.join(ROOT, 'target', 'release', SUPERVISOR)]
/** Executables whose directories are taken off PATH: the installed package must not need them. */
const RUST_TOOLS = ['cargo', 'rustc', 'rustup']

/** This machine's napi-rs platform suffix (`linux-x64-gnu`, `darwin-arm64`, …). */
function hostPlatform() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`
  const header = process.report && process.report.getReport().header
  return `linux-${process.arch}-${header && header.glibcVersionRuntime ? 'gnu' : 'musl'}`
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/** Which of `tools` a PATH finds. */
function onPath(tools, PATH) {
  const dirs = PATH.split(path.delimiter).filter(Boolean)
  return tools.filter((tool) => dirs.some((dir) => isExecutable(path.join(dir, tool))))
}

/**
 * A PATH without the directories that hold cargo, rustc or rustup. If such a directory also
 * holds node or npm, links to those go into `binDir` (created on demand), first on the PATH.
 * Returns `{ PATH, removed }`.
 */
function pathWithoutRust(binDir, PATH = process.env.PATH || '') {
  const keep = []
  const removed = []
  for (const dir of PATH.split(path.delimiter).filter(Boolean)) {
    if (RUST_TOOLS.some((tool) => isExecutable(path.join(dir, tool)))) {
      if (!removed.includes(dir)) removed.push(dir)
    } else keep.push(dir)
  }
  const links = []
  for (const dir of removed) {
    for (const tool of ['node', 'npm']) {
      const file = path.join(dir, tool)
      if (isExecutable(file) && !links.includes(tool)) {
        fs.mkdirSync(binDir, { recursive: true })
        fs.symlinkSync(fs.realpathSync(file), path.join(binDir, tool))
        links.push(tool)
      }
    }
  }
  return { PATH: [...(links.length ? [binDir] : []), ...keep].join(path.delimiter), removed }
}

/**
 * The environment for the commands a user runs: this one, without what npm exports to the
 * scripts it runs (npm_*: `npm test` would hand its own prefix and config down) or napi-rs'
 * loader overrides, with `PATH` given, and npm quiet and offline-friendly.
 */
function userEnv(PATH) {
  const env = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || /^NAPI_RS_/.test(key)) continue
    env[key] = value
  }
  return { ...env, PATH, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }
}

/** Runs a command to completion; resolves with { code, signal, stdout, stderr }, never rejects but on a time-out. */
function run(command, args, { cwd, env, timeout = 60_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: env || process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${command} ${args.join(' ')} timed out after ${timeout} ms; stderr: ${stderr}`))
    }, timeout)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Like `run`, but rejects unless the command exits 0. */
async function runOk(command, args, options) {
  const r = await run(command, args, options)
  if (r.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
  }
  return r
}

/** `npm pack` of `dir` into `dest`; resolves with npm's report: { filename, size, unpackedSize, files, … }. */
async function npmPack(dir, dest, env) {
  const { stdout } = await runOk('npm', ['pack', '--json', '--pack-destination', dest], { cwd: dir, env })
  const [report] = JSON.parse(stdout.slice(stdout.indexOf('[')))
  return { ...report, file: path.join(dest, report.filename) }
}

/** Packs the root package as it is (dist/ must be built). */
async function packRoot(dest, env) {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) throw new Error('dist/ is not built: run npm run build first')
  return npmPack(ROOT, dest, env)
}

/**
 * Packs this machine's platform package from a copy of npm/<platform>/ in `work`, with the
 * built binary and, when one has been built, the supervisor executable: what CI's publish job
 * does with `napi artifacts`, without touching the repository.
 */
async function packPlatform(work, dest, env, { binary: builtBinary, supervisor: builtSupervisor } = {}) {
  const platform = hostPlatform()
  const source = path.join(ROOT, 'npm', platform)
  if (!fs.existsSync(source)) throw new Error(`no platform package for ${platform} under npm/`)
  const dir = path.join(work, platform)
  fs.cpSync(source, dir, { recursive: true })
  const binary = `${ROOT_PKG.napi.binaryName}.${platform}.node`
  const built = builtBinary ?? path.join(ROOT, 'binding', binary)
  if (!fs.existsSync(built)) throw new Error(`${path.relative(ROOT, built)} is not built: run npm run build first`)
  fs.copyFileSync(built, path.join(dir, binary))
  const supervisor = builtSupervisor ?? SUPERVISOR_BUILDS.find(isExecutable)
  if (!supervisor || !isExecutable(supervisor)) {
    throw new Error(
      `no ${SUPERVISOR} executable (${supervisor ?? SUPERVISOR_BUILDS.map((f) => path.relative(ROOT, f)).join(', ')}): ` +
        `the ${platform} package would ship without its supervisor; run npm run build first`,
    )
  }
  fs.copyFileSync(supervisor, path.join(dir, SUPERVISOR))
  fs.chmodSync(path.join(dir, SUPERVISOR), 0o755)
  const report = await npmPack(dir, dest, env)
  const packed = report.files.find((f) => f.path === SUPERVISOR)
  if (!packed || (packed.mode & 0o111) !== 0o111) throw new Error(`${report.filename} lacks an executable ${SUPERVISOR}`)
  return { ...report, platform, supervisor }
}

/** The JavaScript file behind the `npm` of PATH, if it is one (npm-cli.js). */
function npmCliOf(PATH = process.env.PATH || '') {
  for (const dir of PATH.split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, 'npm')
    if (!isExecutable(file)) continue
    const real = fs.realpathSync(file)
    return real.endsWith('.js') ? real : undefined
  }
  return undefined
}

/** A fresh project with `tarballs` installed by npm, offline, with its own empty cache. */
async function installProject(dir, tarballs, env) {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: 'daemonkit-user', version: '1.0.0', private: true }, null, 2) + '\n',
  )
  const cache = path.join(dir, '.npm-cache')
  // npm checks the platform package's os / cpu against the Node that runs npm: make that the one
  // that runs this check (an arm64 Node under emulation with the x64 npm of PATH, say).
  const npmCli = npmCliOf(env.PATH)
  const npm = npmCli ? [process.execPath, [npmCli]] : ['npm', []]
  await runOk(npm[0], [...npm[1], 'install', '--offline', '--no-audit', '--no-fund', '--cache', cache, ...tarballs], { cwd: dir, env })
  return dir
}

/**
 * Writes the user's scripts into `project`:
 * - app.mjs: the README quick start (ESM): an HTTP server that daemonizes and is ready once it listens;
 * - manage.cjs: `node manage.cjs status|stop PIDFILE` (CommonJS), prints the result as JSON;
 * - supervise.cjs: `node supervise.cjs PIDFILE LOG MARKER`: spawnDaemon() of a Node one-liner
 *   (MARKER in its command line) under the supervisor, prints { pid, commandPid } as JSON;
 * - check.cjs / check.mjs: require / import the package, print what they see as JSON;
 * - unsupported.mjs: imports the package, calls daemonize() and status(), prints how they fail
 *   (for a platform without a binary, or Windows);
 * - win32.cjs: a preload (`node --require`) that makes process.platform 'win32'.
 */
function writeUserScripts(project) {
  const files = {
    'app.mjs': `// The README quick start, as a user writes it.
import fs from 'node:fs'
import http from 'node:http'
import { daemonize } from 'daemonkit'

const [pidFile, portFile, logFile] = process.argv.slice(2)
const daemon = await daemonize({ pidFile, ready: 'manual', stdout: logFile, stderr: logFile })
const server = http.createServer((req, res) => res.end(\`hello from daemon \${daemon.pid}\\n\`))
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(portFile, String(server.address().port))
  daemon.ready() // now the launching process exits 0
})
`,
    'manage.cjs': `const { status, stop } = require('daemonkit')

const [action, pidFile] = process.argv.slice(2)
const result = action === 'stop' ? stop(pidFile, { timeout: 30000 }) : status(pidFile)
result.then(
  (r) => console.log(JSON.stringify(r)),
  (e) => {
    console.error(e.code, e.message)
    process.exit(1)
  },
)
`,
    'supervise.cjs': `// A command run as a daemon under the supervisor of the platform package.
const { spawnDaemon } = require('daemonkit')

const [pidFile, log, marker] = process.argv.slice(2)
spawnDaemon(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)', marker], { pidFile, stdout: log, stderr: log }).then(
  (r) => console.log(JSON.stringify(r)),
  (e) => {
    console.error(e.code, e.message)
    process.exit(1)
  },
)
`,
    'check.cjs': `// What require('daemonkit') gives, and where the native binary comes from once it is used.
const daemonkit = require('daemonkit')

const [pidFile] = process.argv.slice(2)
const out = { resolved: require.resolve('daemonkit'), keys: Object.keys(daemonkit).sort() }
daemonkit.status(pidFile).then(
  (s) => {
    out.status = s
    out.binaries = Object.keys(require.cache).filter((f) => f.endsWith('.node'))
    console.log(JSON.stringify(out))
  },
  (e) => {
    out.error = { name: e.name, code: e.code, platform: e.platform, message: e.message, isUnsupported: e instanceof daemonkit.UnsupportedPlatformError }
    console.log(JSON.stringify(out))
  },
)
`,
    'check.mjs': `// What import gives: the same functions as require (one module state), through the exports map.
import { createRequire } from 'node:module'
import * as ns from 'daemonkit'
import daemonkit, { daemonize, Daemon, status, stop } from 'daemonkit'

const require = createRequire(import.meta.url)
const cjs = require('daemonkit')
const [pidFile] = process.argv.slice(2)
const out = {
  resolved: import.meta.resolve ? import.meta.resolve('daemonkit') : undefined,
  keys: Object.keys(ns).filter((k) => k !== 'default' && k !== '__esModule').sort(),
  named: [daemonize, Daemon, status, stop].every((f) => typeof f === 'function'),
  sameAsRequire: daemonize === cjs.daemonize && Daemon === cjs.Daemon && status === cjs.status && stop === cjs.stop,
  defaultIsRequire: daemonkit === cjs,
}
try {
  out.status = await status(pidFile)
} catch (e) {
  out.error = { name: e.name, code: e.code, platform: e.platform, message: e.message, isUnsupported: e instanceof ns.UnsupportedPlatformError }
}
console.log(JSON.stringify(out))
`,
    'win32.cjs': `// Preload: this process believes it runs on Windows.
Object.defineProperty(process, 'platform', { value: 'win32', enumerable: true, configurable: true })
`,
    'unsupported.mjs': `import { daemonize, isDaemon, status, UnsupportedPlatformError } from 'daemonkit'

const [pidFile] = process.argv.slice(2)
const out = { platform: process.platform, isDaemon: isDaemon() }
for (const [name, call] of [['daemonize', () => daemonize(pidFile)], ['status', () => status(pidFile)]]) {
  let promise
  try {
    promise = call()
  } catch (e) {
    out[name] = { threw: true, code: e.code, message: e.message }
    continue
  }
  try {
    out[name] = { resolved: await promise }
  } catch (e) {
    out[name] = {
      rejected: true,
      code: e.code,
      platform: e.platform,
      message: e.message,
      isUnsupported: e instanceof UnsupportedPlatformError,
      causeIsUnsupported: e.cause instanceof UnsupportedPlatformError,
    }
  }
}
console.log(JSON.stringify(out))
`,
  }
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(project, name), text)
  return Object.fromEntries(Object.keys(files).map((name) => [name, path.join(project, name)]))
}

/** Runs a node script in `project` and parses the JSON it prints last. */
async function nodeJson(project, args, env) {
  const r = await runOk(process.execPath, args, { cwd: project, env })
  const lines = r.stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1])
}

/** GET http://127.0.0.1:port/ ; resolves with the body. */
function httpGet(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(body))
    })
    req.on('timeout', () => req.destroy(new Error('GET timed out')))
    req.on('error', reject)
  })
}

/** The process state letter of pid (R, S, Z, …), from /proc where there is one, else from ps; '' if gone. */
function processState(pid) {
  if (fs.existsSync('/proc/self/stat')) {
    try {
      const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
      return text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3)
    } catch {
      return ''
    }
  }
  return spawnSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).stdout.trim().slice(0, 1)
}

/** The executable that `pid` runs (under qemu-user: the emulated one), or undefined where this cannot tell. */
function executableOf(pid) {
  if (fs.existsSync('/proc/self/exe')) {
    const exe = fs.readlinkSync(`/proc/${pid}/exe`)
    if (!path.basename(exe).startsWith('qemu-')) return fs.realpathSync(exe)
    return fs.realpathSync(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1])
  }
  if (process.platform === 'darwin') {
    // macOS' ps prints the executable's path as the command name; anything else tells nothing.
    const comm = spawnSync('ps', ['-o', 'comm=', '-p', String(pid)], { encoding: 'utf8' }).stdout.trim()
    return path.isAbsolute(comm) && fs.existsSync(comm) ? fs.realpathSync(comm) : undefined
  }
  return undefined
}

/** `true` while pid names a process that has not exited (a zombie has exited). */
function isRunning(pid) {
  try {
    process.kill(pid, 0)
  } catch (e) {
    return e.code === 'EPERM'
  }
  const state = processState(pid)
  return state !== '' && state !== 'Z'
}

/** Polls `fn` until it returns true or `ms` pass. */
async function waitFor(fn, ms = 5000) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (fn()) return true
    await new Promise((r) => setTimeout(r, 25))
  }
  return fn()
}

const kb = (n) => `${(n / 1024).toFixed(1)} KiB`

/** The portable smoke test (see the top of this file). */
/** `--binary FILE`, `--supervisor FILE`. */
function parseArgs(argv) {
  const options = {}
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]]
    if ((flag !== '--binary' && flag !== '--supervisor') || !value) throw new Error(`usage: install-check.js [--binary FILE] [--supervisor FILE] (got ${argv.join(' ')})`)
    options[flag.slice(2)] = path.resolve(value)
  }
  return options
}

async function main(options = parseArgs(process.argv.slice(2))) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-install-'))
  let daemonPid
  let supervised = []
  try {
    const { PATH, removed } = pathWithoutRust(path.join(tmp, 'bin'))
    const env = userEnv(PATH)
    assert.deepEqual(onPath(RUST_TOOLS, PATH), [], 'a Rust tool is still on PATH')
    console.log(`PATH without Rust (removed: ${removed.join(', ') || 'nothing'})`)

    const packs = path.join(tmp, 'packs')
    fs.mkdirSync(packs)
    const root = await packRoot(packs, env)
    const platform = await packPlatform(path.join(tmp, 'platform'), packs, env, options)
    console.log(`packed ${root.filename}: ${kb(root.size)} (unpacked ${kb(root.unpackedSize)}, ${root.entryCount} files)`)
    console.log(
      `packed ${platform.filename}: ${kb(platform.size)} (unpacked ${kb(platform.unpackedSize)}, ${platform.entryCount} files; ` +
        `supervisor from ${platform.supervisor})`,
    )

    const project = await installProject(path.join(tmp, 'project'), [root.file, platform.file], env)
    const scripts = writeUserScripts(project)
    const pidFile = path.join(tmp, 'app.pid')

    const cjs = await nodeJson(project, [scripts['check.cjs'], pidFile], env)
    const esm = await nodeJson(project, [scripts['check.mjs'], pidFile], env)
    assert.deepEqual(cjs.status, { state: 'stopped' })
    assert.ok(cjs.binaries.some((f) => f.includes(`daemonkit-${platform.platform}`)), `binary not from the platform package: ${cjs.binaries}`)
    assert.deepEqual(esm.keys, cjs.keys)
    assert.ok(esm.named && esm.sameAsRequire && esm.defaultIsRequire)
    console.log(`require and import: ${cjs.keys.length} exports, the same functions; binary ${path.relative(project, cjs.binaries[0])}`)

    const version = await runOk(path.join(project, 'node_modules', '.bin', 'daemonkit'), ['--version'], { cwd: project, env })
    assert.equal(version.stdout.trim(), `daemonkit ${ROOT_PKG.version}`)
    console.log(`the daemonkit command runs: ${version.stdout.trim()}`)

    const portFile = path.join(tmp, 'app.port')
    const launch = await run(process.execPath, [scripts['app.mjs'], pidFile, portFile, path.join(tmp, 'app.log')], { cwd: project, env })
    assert.equal(launch.code, 0, `launch failed: ${launch.stderr}`)
    daemonPid = Number(fs.readFileSync(pidFile, 'utf8'))
    assert.ok(isRunning(daemonPid), 'the daemon is not running')
    assert.equal(await httpGet(Number(fs.readFileSync(portFile, 'utf8'))), `hello from daemon ${daemonPid}\n`)
    assert.deepEqual(await nodeJson(project, [scripts['manage.cjs'], 'status', pidFile], env), { state: 'running', pid: daemonPid })
    const stopped = await nodeJson(project, [scripts['manage.cjs'], 'stop', pidFile], env)
    assert.equal(stopped.stopped, true)
    assert.ok(await waitFor(() => !isRunning(daemonPid)), 'the daemon is still running after stop()')
    assert.deepEqual(await nodeJson(project, [scripts['manage.cjs'], 'status', pidFile], env), { state: 'stopped' })
    console.log(`quick start: daemon ${daemonPid} launched, answered, reported running, stopped`)
    daemonPid = undefined

    // A command under the supervisor that came with the platform package.
    const supPidFile = path.join(tmp, 'supervised.pid')
    const marker = `daemonkit-install-check-${process.pid}`
    const spawned = await nodeJson(project, [scripts['supervise.cjs'], supPidFile, path.join(tmp, 'supervised.log'), marker], env)
    supervised = [spawned.pid, spawned.commandPid]
    assert.notEqual(spawned.pid, spawned.commandPid, 'the command is not supervised')
    assert.equal(Number(fs.readFileSync(supPidFile, 'utf8')), spawned.pid, 'the pidfile does not name the supervisor')
    const packaged = fs.realpathSync(path.join(project, 'node_modules', `daemonkit-${platform.platform}`, SUPERVISOR))
    const exe = executableOf(spawned.pid)
    if (exe !== undefined) assert.equal(exe, packaged, `the supervisor is not the packaged one: ${exe}`)
    assert.ok(isRunning(spawned.pid) && isRunning(spawned.commandPid), 'the supervisor or its command is not running')
    assert.equal((await nodeJson(project, [scripts['manage.cjs'], 'status', supPidFile], env)).pid, spawned.pid)
    const supStopped = await nodeJson(project, [scripts['manage.cjs'], 'stop', supPidFile], env)
    assert.equal(supStopped.stopped, true)
    assert.ok(await waitFor(() => !isRunning(spawned.pid) && !isRunning(spawned.commandPid), 30_000), 'the supervisor or its command outlived stop()')
    assert.ok(!fs.existsSync(supPidFile), 'the supervised pidfile is left behind')
    console.log(
      `supervised command: ${spawned.commandPid} under ${path.relative(project, packaged)} ${spawned.pid}` +
        `${exe === undefined ? '' : ' (checked)'}, reported running, stopped`,
    )
    supervised = []

    const win = await nodeJson(project, ['--require', scripts['win32.cjs'], scripts['unsupported.mjs'], pidFile], env)
    assert.equal(win.platform, 'win32')
    assert.ok(win.daemonize.rejected && win.daemonize.isUnsupported && win.daemonize.code === 'EDAEMONPLATFORM', `daemonize() on Windows: ${JSON.stringify(win.daemonize)}`)
    // status() must reject too; it is wrapped in a PidfileError while src/manage.ts catches native()'s error with probePidfile's.
    assert.ok(win.status.rejected && (win.status.isUnsupported || win.status.causeIsUnsupported), `status() on Windows: ${JSON.stringify(win.status)}`)
    console.log(
      `Windows (simulated): imports; daemonize() rejects with UnsupportedPlatformError; status() rejects with ${win.status.code}` +
        (win.status.isUnsupported ? '' : ' (caused by UnsupportedPlatformError)'),
    )
    console.log('install check passed')
  } finally {
    for (const pid of [daemonPid, ...supervised]) {
      if (!pid) continue
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

module.exports = {
  ROOT,
  RUST_TOOLS,
  hostPlatform,
  onPath,
  pathWithoutRust,
  userEnv,
  run,
  runOk,
  packRoot,
  packPlatform,
  installProject,
  writeUserScripts,
  nodeJson,
  httpGet,
  isRunning,
  executableOf,
  waitFor,
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
