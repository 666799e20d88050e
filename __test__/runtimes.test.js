'use strict'
// daemonize(), the Daemon class, status/signal/stop and spawnDaemon() run under Bun and Deno,
// installed as pinned packages by `npm ci --prefix scripts/runtimes-bun-deno`.
const fs = require('node:fs')
const path = require('node:path')
const test = require('ava')
const h = require('./helpers')
const { stop } = require('..')

const MODULES = path.join(__dirname, '..', 'scripts', 'runtimes-bun-deno', 'node_modules')
const BUN = path.join(MODULES, '@oven', 'bun-linux-x64', 'bin', 'bun')
const DENO = path.join(MODULES, '@deno', 'linux-x64-glibc', 'deno')
const ROOT = path.join(__dirname, '..')
const APP = path.join(h.FIXTURES, 'runtime-daemon.cjs')
const MANAGE = path.join(h.FIXTURES, 'runtime-manage.cjs')
const SERVICE = path.join(h.FIXTURES, 'service.js')

const RUNTIMES = { bun: BUN, deno: DENO }
const installed = {}
for (const [name, bin] of Object.entries(RUNTIMES)) {
  installed[name] = process.platform === 'linux' && process.arch === 'x64' && fs.existsSync(bin)
  if (!installed[name]) {
    console.log(`runtimes.test.js: ${name} is not installed (npm ci --prefix scripts/runtimes-bun-deno, Linux x64): its tests are skipped`)
  }
}

/** `test` for a runtime that is installed, else `test.skip`. */
const on = (runtime) => (installed[runtime] ? test : test.skip)

/** The environment for a runtime: no colours in Deno's messages. */
const ENV = { ...process.env, NO_COLOR: '1' }

/** The command line that runs `script` under `runtime`: Deno with everything allowed unless `flags` are given. */
function command(runtime, script, args, flags) {
  if (runtime === 'bun') return [BUN, [...(flags ?? []), script, ...args]]
  return [DENO, ['run', ...(flags ?? ['-A']), script, ...args]]
}

function runIn(runtime, script, args, flags) {
  const [bin, argv] = command(runtime, script, args, flags)
  return h.run(bin, argv, { env: ENV, timeout: 60_000 })
}

/** The argv of process `pid`. */
function cmdline(pid) {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1)
}

/** Stops, at teardown, whatever daemon holds `pidFile`. */
function stopAtTeardown(t, pidFile) {
  t.teardown(() => stop(pidFile, { timeout: 10_000 }).catch(() => {}))
}

/** Deno flags that give the fixtures no more than they need, the lists naming `dir`. */
function narrowDenoFlags(dir, extra = []) {
  return [`--allow-read=${ROOT},${dir},/dev/urandom`, `--allow-write=${dir},/dev/null`, '--allow-env', '--allow-ffi', '--allow-sys', '--allow-run=/usr/bin/env', ...extra]
}

for (const runtime of ['bun', 'deno']) {
  on(runtime)(`${runtime}: daemonize() starts the daemon with the same runtime and flags; the launcher exits 0 once it is ready`, async (t) => {
    const dir = h.tempDir(t)
    const pidFile = path.join(dir, 'app.pid')
    const log = path.join(dir, 'err.log')
    const report = path.join(dir, 'report.json')
    stopAtTeardown(t, pidFile)
    const spec = { options: { pidFile, stderr: log, cwd: dir }, report, childEnv: true, say: 'before ready (plugh)', after: 'after ready (xyzzy)' }
    // Bun: a runtime flag (--smol) must reach the daemon. Deno: `run` and permission lists must.
    const flags = runtime === 'bun' ? ['--smol'] : narrowDenoFlags(dir)
    const r = await runIn(runtime, APP, [JSON.stringify(spec)], flags)
    t.is(r.code, 0, r.stderr)
    const pid = h.readPid(pidFile)
    h.cleanupPid(t, pid, dir)
    t.true(h.isLocked(pidFile), 'the daemon holds the pidfile lock')
    const st = h.procStat(pid)
    t.not(st.session, pid, 'not a session leader')
    t.is(st.ttyNr, 0, 'no controlling terminal')
    t.is(fs.realpathSync(`/proc/${pid}/exe`), fs.realpathSync(RUNTIMES[runtime]))
    const argv = cmdline(pid)
    const [, expected] = command(runtime, APP, [JSON.stringify(spec)], flags)
    t.deepEqual(argv.slice(1), expected, 'the daemon runs the launcher\'s command line')
    const seen = await h.waitFor(() => fs.existsSync(report) && JSON.parse(fs.readFileSync(report, 'utf8')), { what: 'the report' })
    t.is(seen.runtime, runtime)
    t.is(seen.pid, pid)
    t.true(seen.isDaemon)
    t.is(seen.cwd, dir)
    t.false(seen.markerInEnv, 'the hand-off marker is gone from the daemon\'s env')
    t.false(seen.markerInChildEnv, 'and never reaches its children')
    t.regex(r.stderr, /before ready \(plugh\)/, 'startup stderr is relayed to the launcher')
    t.notRegex(r.stderr, /xyzzy/)
    await h.waitFor(() => fs.readFileSync(log, 'utf8').includes('after ready (xyzzy)'), { what: 'the stderr line in the log' })
  })

  on(runtime)(`${runtime}: a daemon that throws before it is ready: the launcher exits non-zero with its message, nothing left behind`, async (t) => {
    const dir = h.tempDir(t)
    const pidFile = path.join(dir, 'app.pid')
    stopAtTeardown(t, pidFile)
    const r = await runIn(runtime, APP, [JSON.stringify({ options: { pidFile, cwd: dir }, fail: 'the daemon failed (quux)' })])
    t.not(r.code, 0)
    t.regex(r.stderr, /before it was ready/)
    t.regex(r.stderr, /the daemon failed \(quux\)/)
    t.false(fs.existsSync(pidFile), 'no pidfile left')
  })

  on(runtime)(`${runtime}: the Daemon class starts, reports, reloads and stops its daemon`, async (t) => {
    const dir = h.tempDir(t)
    const pidFile = path.join(dir, 'svc.pid')
    const events = path.join(dir, 'events')
    stopAtTeardown(t, pidFile)
    const spec = JSON.stringify({ pidFile, log: path.join(dir, 'svc.log'), events })
    // service.js is CommonJS in a .js file: Deno needs --unstable-detect-cjs, in both roles.
    const flags = runtime === 'deno' ? ['-A', '--unstable-detect-cjs'] : undefined
    const started = await runIn(runtime, SERVICE, ['start', spec], flags)
    t.is(started.code, 0, started.stderr)
    const pid = h.readPid(pidFile)
    h.cleanupPid(t, pid, dir)
    t.regex(started.stdout, new RegExp(`started \\(pid ${pid}\\)`))
    if (runtime === 'deno') t.true(cmdline(pid).includes('--unstable-detect-cjs'))
    const status = await runIn(runtime, SERVICE, ['status', spec], flags)
    t.is(status.code, 0)
    t.regex(status.stdout, new RegExp(`running \\(pid ${pid}\\)`))
    await h.waitFor(() => fs.readFileSync(events, 'utf8').includes(`ready ${pid}`), { what: 'run() to start' })
    t.is((await runIn(runtime, SERVICE, ['reload', spec], flags)).code, 0)
    await h.waitFor(() => fs.readFileSync(events, 'utf8').includes('reload'), { what: 'the reload hook' })
    const stopped = await runIn(runtime, SERVICE, ['stop', spec], flags)
    t.is(stopped.code, 0, stopped.stderr)
    t.false(h.isLocked(pidFile))
    t.false(fs.existsSync(pidFile))
    await h.waitFor(() => !h.isRunning(pid), { what: 'the daemon to exit' })
    t.regex(fs.readFileSync(events, 'utf8'), /shutdown-registered-first/)
    t.is((await runIn(runtime, SERVICE, ['status', spec], flags)).code, 3)
  })

  on(runtime)(`${runtime}: status(), signal() and stop() manage a daemon; spawnDaemon() starts a supervised command`, async (t) => {
    const dir = h.tempDir(t)
    const pidFile = path.join(dir, 'app.pid')
    const spawned = path.join(dir, 'sleep.pid')
    stopAtTeardown(t, pidFile)
    stopAtTeardown(t, spawned)
    const manage = async (...args) => {
      const r = await runIn(runtime, MANAGE, args)
      t.is(r.stderr, '', `${args[0]}: nothing on stderr`)
      try {
        return JSON.parse(r.stdout)
      } catch {
        throw new Error(`${args[0]}: no result (exit code ${r.code}): ${r.stderr}`)
      }
    }
    t.is((await runIn(runtime, APP, [JSON.stringify({ options: { pidFile, cwd: dir } })])).code, 0)
    const pid = h.readPid(pidFile)
    h.cleanupPid(t, pid, dir)
    t.deepEqual(await manage('status', pidFile), { ok: true, result: { state: 'running', pid } })
    t.deepEqual(await manage('signal', pidFile, '"SIGCONT"'), { ok: true, result: { sent: true, pid } })
    const stopped = await manage('stop', pidFile)
    t.true(stopped.ok, JSON.stringify(stopped))
    t.is(stopped.result.pid, pid)
    t.true(stopped.result.stopped)
    t.false(fs.existsSync(pidFile))
    t.deepEqual(await manage('status', pidFile), { ok: true, result: { state: 'stopped' } })

    const started = await manage('spawn', spawned, JSON.stringify(['/bin/sleep', ['1000'], { cwd: dir }]))
    t.true(started.ok, JSON.stringify(started))
    t.is(h.readPid(spawned), started.result.pid)
    t.true(h.isLocked(spawned))
    t.true(h.isRunning(started.result.commandPid))
    t.deepEqual(cmdline(started.result.commandPid), ['/bin/sleep', '1000'])
    const missing = await manage('spawn', path.join(dir, 'missing.pid'), JSON.stringify([path.join(dir, 'no-such-command'), [], {}]))
    t.like(missing, { ok: false, name: 'LaunchError', code: 'EDAEMONLAUNCH' })
    t.regex(missing.message, /No such file or directory/)
    t.true((await manage('stop', spawned)).result.stopped)
    await h.waitFor(() => !h.isRunning(started.result.commandPid), { what: 'the spawned command to exit' })
  })

  on(runtime)(`${runtime}: an ES module importing the installed package daemonizes`, async (t) => {
    const dir = h.tempDir(t)
    // Installed as an app would have it: node_modules/daemonkit, with a package.json of its own.
    const pkg = path.join(dir, 'node_modules', 'daemonkit')
    for (const entry of ['package.json', 'dist', 'esm', 'binding']) fs.cpSync(path.join(ROOT, entry), path.join(pkg, entry), { recursive: true })
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'app', type: 'module', dependencies: { daemonkit: '*' } }))
    const app = path.join(dir, 'app.mjs')
    fs.writeFileSync(app, [
      "import { daemonize, isDaemon } from 'daemonkit'",
      'const handle = await daemonize({ pidFile: process.argv[2], stdout: process.argv[3] })',
      'console.log(`esm daemon ${handle.pid} ${isDaemon()}`)',
      'setInterval(() => {}, 1 << 30)',
    ].join('\n'))
    const pidFile = path.join(dir, 'app.pid')
    const out = path.join(dir, 'out.log')
    stopAtTeardown(t, pidFile)
    const [bin, argv] = command(runtime, app, [pidFile, out])
    const r = await h.run(bin, argv, { env: ENV, cwd: dir, timeout: 60_000 })
    t.is(r.code, 0, r.stderr)
    const pid = h.readPid(pidFile)
    h.cleanupPid(t, pid, dir)
    await h.waitFor(() => fs.readFileSync(out, 'utf8').includes(`esm daemon ${pid} true`), { what: 'the daemon\'s line' })
  })
}

on('deno')('deno: a permission the daemon lacks is named in the launcher\'s error', async (t) => {
  const dir = h.tempDir(t)
  const other = h.tempDir(t)
  const secret = path.join(other, 'secret')
  fs.writeFileSync(secret, 'x')
  const pidFile = path.join(dir, 'app.pid')
  stopAtTeardown(t, pidFile)
  // Only the daemon reads `secret`: the launcher runs fine with these lists.
  const r = await runIn('deno', APP, [JSON.stringify({ options: { pidFile, cwd: dir }, read: secret })], narrowDenoFlags(dir))
  t.not(r.code, 0)
  t.regex(r.stderr, /daemon \(pid \d+\) .*before it was ready: it lacks Deno's read permission \(for "[^"]*secret"\)/)
  t.regex(r.stderr, /start it with --allow-read/)
  t.false(fs.existsSync(pidFile))

  // Without --allow-sys the binding cannot be loaded: Deno's own error says so, not "no binary".
  const flags = narrowDenoFlags(dir).filter((f) => f !== '--allow-sys')
  const noSys = await runIn('deno', APP, [JSON.stringify({ options: { pidFile, cwd: dir } })], flags)
  t.not(noSys.code, 0)
  t.regex(noSys.stderr, /NotCapable: Requires sys access.*--allow-sys/)
  t.notRegex(noSys.stderr, /no native binary/)
  t.false(fs.existsSync(pidFile))
})

on('deno')('deno: a program that cannot be started again the same way is refused before anything starts', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'app.pid')
  stopAtTeardown(t, pidFile)
  const code = `const { daemonize } = (await import('node:module')).createRequire(${JSON.stringify(`${ROOT}/`)})(${JSON.stringify(ROOT)}); ` +
    `await daemonize({ pidFile: ${JSON.stringify(pidFile)} }).catch((e) => { console.log(JSON.stringify({ name: e.name, reason: e.reason, message: e.message })); Deno.exit(7) })`
  const r = await h.run(DENO, ['eval', code], { env: ENV, cwd: dir, timeout: 60_000 })
  t.is(r.code, 7, r.stderr)
  const err = JSON.parse(r.stdout)
  t.like(err, { name: 'LaunchError', reason: 'ENOREEXEC' })
  t.regex(err.message, /deno run/)
  t.false(fs.existsSync(pidFile), 'refused before the pidfile was made')
})

on('bun')('bun: a binary made by `bun build --compile` starts itself again as the daemon, with its own arguments', async (t) => {
  const dir = h.tempDir(t)
  const binary = path.join(dir, 'app')
  const built = await h.run(BUN, ['build', '--compile', APP, '--outfile', binary], { env: ENV, cwd: dir, timeout: 120_000 })
  t.is(built.code, 0, built.stderr)
  const pidFile = path.join(dir, 'app.pid')
  const report = path.join(dir, 'report.json')
  stopAtTeardown(t, pidFile)
  const spec = JSON.stringify({ options: { pidFile, cwd: dir }, report })
  const r = await h.run(binary, [spec], { env: ENV, timeout: 60_000 })
  t.is(r.code, 0, r.stderr)
  const pid = h.readPid(pidFile)
  h.cleanupPid(t, pid, dir)
  t.deepEqual(cmdline(pid), [binary, spec])
  const seen = await h.waitFor(() => fs.existsSync(report) && JSON.parse(fs.readFileSync(report, 'utf8')), { what: 'the report' })
  t.deepEqual(seen.argv, [spec])
  t.true(seen.isDaemon)
})

on('deno')('deno: `deno serve` is refused; a `deno task` daemonizes (its own `deno run` is what runs)', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'app.pid')
  stopAtTeardown(t, pidFile)
  const server = path.join(dir, 'server.cjs')
  fs.writeFileSync(server, [
    `const { daemonize } = require(${JSON.stringify(ROOT)})`,
    `daemonize({ pidFile: ${JSON.stringify(pidFile)} }).catch((e) => { console.log(JSON.stringify({ reason: e.reason, message: e.message })); process.exit(5) })`,
    "module.exports = { fetch: () => new Response('hello') }",
  ].join('\n'))
  const served = await h.run(DENO, ['serve', '-A', '--port', '0', server], { env: ENV, cwd: dir, timeout: 60_000 })
  t.is(served.code, 5, served.stderr)
  t.like(JSON.parse(served.stdout.split('\n').find((l) => l.startsWith('{'))), { reason: 'ENOREEXEC' })
  t.false(fs.existsSync(pidFile))

  const spec = JSON.stringify({ options: { pidFile, cwd: dir } })
  fs.writeFileSync(path.join(dir, 'deno.json'), JSON.stringify({ tasks: { start: `deno run -A ${APP} '${spec}'` } }))
  const env = { ...ENV, PATH: `${path.dirname(DENO)}:${process.env.PATH}` }
  const task = await h.run(DENO, ['task', 'start'], { env, cwd: dir, timeout: 60_000 })
  t.is(task.code, 0, task.stderr)
  const pid = h.readPid(pidFile)
  h.cleanupPid(t, pid, dir)
  t.true(h.isLocked(pidFile))
  t.deepEqual(cmdline(pid).slice(1), ['run', '-A', APP, spec])
})
