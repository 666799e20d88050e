'use strict'
const test = require('ava')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const { spawn } = require('node:child_process')
const h = require('./helpers')

const HELPER = path.join(h.FIXTURES, 'helper.js')
const CALLER = path.join(h.FIXTURES, 'ensure-caller.js')

/** One ensureDaemon() call in a fresh process with DAEMONKIT_HOME under `dir`; resolves with its JSON line. */
async function ensure(t, dir, options, { cwd, env = {} } = {}) {
  const spec = { name: 'lint', script: HELPER, args: [dir], ...options }
  const r = await h.run(process.execPath, [CALLER, JSON.stringify(spec)], { cwd, env: { ...process.env, DAEMONKIT_HOME: path.join(dir, 'home'), ...env } })
  const out = JSON.parse(r.stdout.trim().split('\n').pop() || 'null')
  if (out?.ok) h.cleanupPid(t, out.ok.pid, dir)
  return out
}

/** Connects to the helper's socket and resolves with its one-line answer "<pid> <version>". */
function ask(socket) {
  return new Promise((resolve, reject) => {
    let text = ''
    net.connect(socket)
      .on('data', (d) => (text += d))
      .on('end', () => resolve(text.trim()))
      .on('error', reject)
  })
}

function starts(dir) {
  const f = path.join(dir, 'starts.log')
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').trim().split('\n') : []
}

const gone = (pid) => !h.isRunning(pid) || h.procStat(pid)?.state === 'Z'

test('the first caller starts the helper with its socket bound in a private folder; the next attaches', async (t) => {
  const dir = h.tempDir(t)
  const first = await ensure(t, dir, { version: '1' }, { env: { HELPER_VERSION: '1' } })
  t.true(first.ok.started)
  t.is(first.ok.socket, path.join(dir, 'home', 'helpers', 'lint.sock'))
  t.is(fs.statSync(path.dirname(first.ok.socket)).mode & 0o777, 0o700)
  t.true(h.isLocked(path.join(dir, 'home', 'helpers', 'lint.pid')))
  t.is(h.readPid(path.join(dir, 'home', 'helpers', 'lint.pid')), first.ok.pid)
  t.is(await ask(first.ok.socket), `${first.ok.pid} 1`)
  const second = await ensure(t, dir, { version: '1' })
  t.deepEqual(second.ok, { ...first.ok, started: false })
  t.deepEqual(starts(dir), [`start ${first.ok.pid}`])
})

test('twelve concurrent callers get one helper, started once', async (t) => {
  const dir = h.tempDir(t)
  const results = await Promise.all(Array.from({ length: 12 }, () => ensure(t, dir, { version: '1' })))
  const pids = new Set(results.map((r) => r.ok?.pid))
  t.is(pids.size, 1, JSON.stringify(results))
  t.is(results.filter((r) => r.ok.started).length, 1)
  t.is(starts(dir).length, 1)
})

test('a caller with another version replaces the helper; later callers attach to the new one', async (t) => {
  const dir = h.tempDir(t)
  const v1 = await ensure(t, dir, { version: '1' }, { env: { HELPER_VERSION: '1' } })
  const v2 = await ensure(t, dir, { version: '2' }, { env: { HELPER_VERSION: '2' } })
  t.true(v2.ok.started)
  t.not(v2.ok.pid, v1.ok.pid)
  await h.waitFor(() => gone(v1.ok.pid), { what: 'the old helper to end' })
  t.is(await ask(v2.ok.socket), `${v2.ok.pid} 2`)
  const later = await ensure(t, dir, { version: '2' })
  t.is(later.ok.pid, v2.ok.pid)
  t.false(later.ok.started)
})

test('a helper that died is detected by its lock and replaced, despite its socket and files left behind', async (t) => {
  const dir = h.tempDir(t)
  const first = await ensure(t, dir, { version: '1' })
  process.kill(first.ok.pid, 'SIGKILL')
  await h.waitFor(() => !h.isLocked(path.join(dir, 'home', 'helpers', 'lint.pid')), { what: 'the lock to be released' })
  t.true(fs.existsSync(first.ok.socket))
  const next = await ensure(t, dir, { version: '1' }, { env: { HELPER_VERSION: '1' } })
  t.true(next.ok.started)
  t.not(next.ok.pid, first.ok.pid)
  t.is(await ask(next.ok.socket), `${next.ok.pid} 1`)
})

test('scope gives one helper per folder', async (t) => {
  const dir = h.tempDir(t)
  const a = await ensure(t, dir, { scope: path.join(dir, 'a') })
  const b = await ensure(t, dir, { scope: path.join(dir, 'b') })
  const a2 = await ensure(t, dir, { scope: path.join(dir, 'a', '.') })
  t.not(a.ok.pid, b.ok.pid)
  t.not(a.ok.socket, b.ok.socket)
  t.is(a2.ok.pid, a.ok.pid)
  t.false(a2.ok.started)
})

test('exitWhenIdle ends the helper after idleTimeout with no connection open: pidfile and socket removed', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'home', 'helpers', 'lint.pid')
  // Long enough for the caller process to exit and this test to connect on a loaded machine: the
  // idle timer runs from the helper's start.
  const r = await ensure(t, dir, { idleTimeout: 5000 })
  const held = new net.Socket()
  await new Promise((resolve, reject) => held.once('error', reject).connect(r.ok.socket, resolve))
  t.teardown(() => held.destroy())
  await new Promise((resolve) => setTimeout(resolve, 6000))
  t.true(h.isLocked(pidFile), 'an open connection keeps the helper')
  held.destroy()
  await h.waitFor(() => !h.isLocked(pidFile), { what: 'the idle helper to end' })
  await h.waitFor(() => gone(r.ok.pid), { what: 'the idle helper to exit' })
  t.false(fs.existsSync(pidFile))
  t.false(fs.existsSync(r.ok.socket))
  const again = await ensure(t, dir, { idleTimeout: 60_000 })
  t.true(again.ok.started)
})

test("the helper's stderr before readiness reaches the first caller when it fails to start", async (t) => {
  const dir = h.tempDir(t)
  const r = await ensure(t, dir, { args: [dir, 'fail'] })
  t.is(r.error?.code, 'EHELPER')
  t.is(r.error.reason, 'exited')
  t.regex(r.error.helperStderr, /helper: cannot load the project config/)
  t.regex(r.error.message, /cannot load the project config/)
  t.false(h.isLocked(path.join(dir, 'home', 'helpers', 'lint.pid')))
})

test('a relative script resolves against the caller\'s cwd; callers from another cwd attach to the same helper', async (t) => {
  const dir = h.tempDir(t)
  const first = await ensure(t, dir, { script: 'fixtures/helper.js' }, { cwd: path.join(__dirname) })
  t.true(first.ok?.started, JSON.stringify(first))
  t.is(fs.readlinkSync(`/proc/${first.ok.pid}/cwd`), '/')
  const second = await ensure(t, dir, { script: './helper.js' }, { cwd: h.FIXTURES })
  t.is(second.ok.pid, first.ok.pid)
  t.false(second.ok.started)
})

test('a helper folder other users can enter is refused', async (t) => {
  const dir = h.tempDir(t)
  fs.mkdirSync(path.join(dir, 'home', 'helpers'), { recursive: true, mode: 0o755 })
  fs.chmodSync(path.join(dir, 'home', 'helpers'), 0o755)
  const r = await ensure(t, dir, {})
  t.is(r.error?.code, 'EHELPER')
  t.is(r.error.reason, 'folder')
  t.deepEqual(starts(dir), [])
})

h.needs('root')('another user cannot connect to the helper', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  fs.mkdirSync(path.join(dir, 'home'), { mode: 0o755 })
  const r = await ensure(t, dir, {})
  fs.chmodSync(r.ok.socket, 0o777) // only the folder keeps them out
  const child = spawn(process.execPath, ['-e', `require('net').connect(${JSON.stringify(r.ok.socket)}).on('connect', () => { console.log('connected'); process.exit(0) }).on('error', (e) => { console.log(e.code); process.exit(0) })`], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  await new Promise((resolve) => child.on('close', resolve))
  t.is(out.trim(), 'EACCES')
  t.is(await ask(r.ok.socket), String(r.ok.pid))
})

test('invalid options throw TypeError before anything is created', async (t) => {
  const { ensureDaemon } = require('..')
  await t.throwsAsync(ensureDaemon({ name: '../x', script: HELPER }), { instanceOf: TypeError, message: /"name"/ })
  await t.throwsAsync(ensureDaemon({ name: 'x', script: '' }), { instanceOf: TypeError, message: /"script"/ })
  await t.throwsAsync(ensureDaemon({ name: 'x', script: HELPER, idleTimeout: -1 }), { instanceOf: TypeError, message: /"idleTimeout"/ })
})
