'use strict'
const test = require('ava')
const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const h = require('./helpers')
const daemonkit = require('..')

const SERVICE = path.join(h.FIXTURES, 'service.js')

function service(action, spec, options) {
  return h.run(process.execPath, [SERVICE, action, JSON.stringify(spec)], options)
}

async function startService(t, dir, spec) {
  const r = await service('start', spec)
  t.is(r.code, 0, r.stderr)
  const pid = Number(r.stdout.match(/started \(pid (\d+)\)/)[1])
  h.cleanupPid(t, pid, dir)
  return pid
}

function events(file) {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n') : []
}

test('cli: start, status, start again, reload, stop, status, stop again, reload — with LSB codes', async (t) => {
  const dir = h.tempDir(t)
  const spec = { pidFile: path.join(dir, 's.pid'), events: path.join(dir, 'events'), log: path.join(dir, 'log') }
  const pid = await startService(t, dir, spec)
  t.true(h.isRunning(pid))
  t.true(h.isLocked(spec.pidFile))
  t.deepEqual(events(spec.events), [`ready ${pid} ${spec.pidFile}`], 'run() completed before start returned; ctx has the pid and the pidfile')

  let r = await service('status', spec)
  t.is(r.code, 0)
  t.is(r.stdout, `running (pid ${pid})\n`)

  r = await service('start', spec)
  t.is(r.code, 0)
  t.is(r.stdout, `already running (pid ${pid})\n`)

  r = await service('reload', spec)
  t.is(r.code, 0)
  t.is(r.stdout, `reloaded (pid ${pid})\n`)
  await h.waitFor(() => events(spec.events).includes('reload'), { what: 'the reload hook' })
  t.true(h.isRunning(pid), 'SIGHUP does not kill a Daemon')

  r = await service('stop', spec)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, `stopped (pid ${pid})\n`)
  t.false(h.isRunning(pid))
  t.false(fs.existsSync(spec.pidFile))
  t.deepEqual(events(spec.events).slice(-3), ['aborted', 'shutdown-registered-second', 'shutdown-registered-first'])

  r = await service('status', spec)
  t.is(r.code, 3)
  t.is(r.stdout, 'not running\n')
  r = await service('stop', spec)
  t.is(r.code, 0)
  t.is(r.stdout, 'not running\n')
  r = await service('reload', spec)
  t.is(r.code, 7)
})

test('reload (SIGHUP) reopens the log files first, so a rotated log gets no new lines', async (t) => {
  const dir = h.tempDir(t)
  const log = path.join(dir, 'log')
  const spec = { pidFile: path.join(dir, 's.pid'), events: path.join(dir, 'events'), log }
  const pid = await startService(t, dir, spec)
  fs.renameSync(log, `${log}.1`)
  const r = await service('reload', spec)
  t.is(r.code, 0)
  await h.waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes(`reloaded ${pid}`), { what: 'the line in the new file' })
  t.false(fs.readFileSync(`${log}.1`, 'utf8').includes('reloaded'))
  t.is(fs.statSync(log).mode & 0o777, 0o640)
})

test('cli: an unknown action prints usage and exits 2', async (t) => {
  const dir = h.tempDir(t)
  const r = await service('frobnicate', { pidFile: path.join(dir, 's.pid') })
  t.is(r.code, 2)
  t.regex(r.stderr, /usage: .*\{start\|stop\|restart\|status\|reload\|graceful-restart\}/)
  t.false(fs.existsSync(path.join(dir, 's.pid')))
})

test('restart: a new daemon replaces the old one, which the relaunch does not stop again', async (t) => {
  const dir = h.tempDir(t)
  const spec = { pidFile: path.join(dir, 's.pid'), events: path.join(dir, 'events') }
  const first = await startService(t, dir, spec)
  const r = await service('restart', spec)
  t.is(r.code, 0, r.stderr)
  const second = Number(r.stdout.match(/restarted \(pid (\d+)\)/)[1])
  h.cleanupPid(t, second, dir)
  t.not(second, first)
  t.false(h.isRunning(first))
  t.true(h.isRunning(second))
  t.is(h.readPid(spec.pidFile), second)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.true(h.isRunning(second), 'the restarted daemon keeps running')
})

test('status: a daemon killed with SIGKILL is "dead" (exit 1); stop leaves the stale file, start takes it over', async (t) => {
  const dir = h.tempDir(t)
  const spec = { pidFile: path.join(dir, 's.pid') }
  const pid = await startService(t, dir, spec)
  process.kill(pid, 'SIGKILL')
  await h.waitFor(() => !h.isLocked(spec.pidFile), { what: 'the lock to be released' })
  let r = await service('status', spec)
  t.is(r.code, 1)
  t.regex(r.stdout, new RegExp(`dead: .* names pid ${pid}`))
  t.deepEqual(await daemonkit.status(spec.pidFile), { state: 'dead', stalePid: pid, reason: undefined })
  r = await service('stop', spec)
  t.is(r.code, 0)
  t.is(r.stdout, 'not running\n')
  t.is(fs.readFileSync(spec.pidFile, 'utf8'), `${pid}\n`, 'nothing was stopped, so nothing was removed')
  const again = await startService(t, dir, spec)
  t.is(h.readPid(spec.pidFile), again)
})

test('an error in run() fails start in the launcher with its message; nothing is left', async (t) => {
  const dir = h.tempDir(t)
  const spec = { pidFile: path.join(dir, 's.pid'), failInRun: 'no such database (quux)' }
  const r = await service('start', spec)
  t.is(r.code, 1)
  t.regex(r.stderr, /no such database \(quux\)/)
  t.false(fs.existsSync(spec.pidFile))
  t.deepEqual(h.processesMentioning(dir), [])
})

test('stop escalates to SIGKILL after stopTimeout when shutdown hangs', async (t) => {
  const dir = h.tempDir(t)
  const spec = { pidFile: path.join(dir, 's.pid'), hangOnShutdown: true, shutdownTimeout: 60_000, stopTimeout: 500 }
  const pid = await startService(t, dir, spec)
  const r = await service('stop', spec)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, `stopped (pid ${pid}, forced with SIGKILL)\n`)
  t.false(h.isRunning(pid))
  t.false(fs.existsSync(spec.pidFile), 'stop removes the file the killed daemon could not')
})

test('shutdown hooks have a deadline (shutdownTimeout)', async (t) => {
  const dir = h.tempDir(t)
  const log = path.join(dir, 'log')
  const spec = { pidFile: path.join(dir, 's.pid'), hangOnShutdown: true, shutdownTimeout: 300, log }
  const pid = await startService(t, dir, spec)
  const result = await daemonkit.stop(spec.pidFile, { timeout: 10_000 })
  t.like(result, { stopped: true, pid, forced: false, signal: 'SIGTERM' })
  t.true(result.waitedMs >= 250, `waited ${result.waitedMs} ms`)
  t.regex(fs.readFileSync(log, 'utf8'), /shutdown hooks did not finish within 300 ms/)
  t.false(fs.existsSync(spec.pidFile))
})

test('an uncaught exception after ready goes to the stderr target; the pidfile is removed', async (t) => {
  const dir = h.tempDir(t)
  const log = path.join(dir, 'log')
  const spec = { pidFile: path.join(dir, 's.pid'), crashOnUsr2: true, log }
  const pid = await startService(t, dir, spec)
  process.kill(pid, 'SIGUSR2')
  await h.waitFor(() => !h.isRunning(pid), { what: 'the daemon to die' })
  t.regex(fs.readFileSync(log, 'utf8'), /late crash \(plugh\)/)
  t.false(fs.existsSync(spec.pidFile))
})

test('a pidfile naming a live unrelated process: status "dead", stop and signal never touch it', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 's.pid')
  const bystander = spawn('sleep', ['60'], { stdio: 'ignore' })
  t.teardown(() => bystander.kill('SIGKILL'))
  fs.writeFileSync(pidFile, `${bystander.pid}\n`)
  t.deepEqual(await daemonkit.status(pidFile), { state: 'dead', stalePid: bystander.pid, reason: undefined })
  t.deepEqual(await daemonkit.signal(pidFile, 'SIGTERM'), { sent: false, reason: 'not-running' })
  t.deepEqual(await daemonkit.stop(pidFile), { stopped: false, reason: 'not-running' })
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.true(h.isRunning(bystander.pid))
  t.is(bystander.signalCode, null)
})

test('pidfiles saying 0, -1, 1, garbage, empty or huge are reported faithfully and never acted on', async (t) => {
  const dir = h.tempDir(t)
  const cases = [
    ['0\n', /pid 0, which is never a daemon/],
    ['-1\n', /pid -1, which is never a daemon/],
    ['1\n', /pid 1, which is never a daemon/],
    ['hello\n', /does not hold a pid/],
    ['', /empty/],
    ['9'.repeat(100), /too large/],
  ]
  for (const [content, reason] of cases) {
    const pidFile = path.join(dir, `case-${cases.findIndex((c) => c[0] === content)}.pid`)
    fs.writeFileSync(pidFile, content)
    // Unlocked: dead, with the reason.
    const s = await daemonkit.status(pidFile)
    t.is(s.state, 'dead')
    t.is(s.stalePid, undefined)
    t.regex(s.reason, reason)
    t.deepEqual(await daemonkit.signal(pidFile, 'SIGKILL'), { sent: false, reason: 'not-running' })
    // Locked by someone (flock(1) holding it): unknown, and stop refuses.
    const holder = spawn('flock', [pidFile, 'sleep', '60'], { stdio: 'ignore' })
    t.teardown(() => holder.kill('SIGKILL'))
    await h.waitFor(() => h.isLocked(pidFile), { what: 'flock to hold it' })
    const locked = await daemonkit.status(pidFile)
    t.is(locked.state, 'unknown')
    t.regex(locked.reason, reason)
    await t.throwsAsync(daemonkit.stop(pidFile), { code: 'EPIDFILE', message: /refusing to signal anything/ })
    t.deepEqual(await daemonkit.signal(pidFile, 'SIGKILL'), { sent: false, reason: 'unknown' })
    t.is(fs.readFileSync(pidFile, 'utf8'), content, 'the file is left as it was')
    t.true(h.isRunning(holder.pid))
    holder.kill('SIGKILL')
  }
  t.pass('the test runner survived: nothing was sent to pid 0, -1 or 1')
})

test('symlink, FIFO and directory pidfiles: status says unknown, without hanging or following', async (t) => {
  const dir = h.tempDir(t)
  const link = path.join(dir, 'link.pid')
  fs.symlinkSync('/etc/hostname', link)
  const fifo = path.join(dir, 'fifo.pid')
  spawnSync('mkfifo', [fifo])
  const sub = path.join(dir, 'dir.pid')
  fs.mkdirSync(sub)
  for (const [file, reason] of [[link, /symbolic link/], [fifo, /FIFO/], [sub, /directory/]]) {
    const s = await daemonkit.status(file)
    t.is(s.state, 'unknown')
    t.regex(s.reason, reason)
    await t.throwsAsync(daemonkit.stop(file), { code: 'EPIDFILE' })
  }
})

h.needs('strace')('on Linux the signal goes through a pidfd opened before the lock is checked again', async (t) => {
  const dir = h.tempDir(t)
  const spec = { pidFile: path.join(dir, 's.pid') }
  const pid = await startService(t, dir, spec)
  const trace = path.join(dir, 'trace')
  const code = `require(${JSON.stringify(path.resolve(__dirname, '..'))}).stop(${JSON.stringify(spec.pidFile)}).then((r) => console.log(JSON.stringify(r)))`
  const r = await h.run('strace', ['-f', '-qq', '-o', trace, '-e', 'trace=pidfd_open,pidfd_send_signal,kill,flock', process.execPath, '-e', code])
  t.is(r.code, 0, r.stderr)
  t.like(JSON.parse(r.stdout), { stopped: true, pid, signal: 'SIGTERM', forced: false })
  const lines = fs.readFileSync(trace, 'utf8').split('\n')
  const open = lines.findIndex((l) => l.includes(`pidfd_open(${pid},`))
  const send = lines.findIndex((l) => /pidfd_send_signal\(\d+, SIGTERM/.test(l))
  t.true(open >= 0, 'pidfd_open was used')
  t.true(send > open, 'the signal went through the pidfd')
  t.true(lines.slice(open, send).some((l) => l.includes('LOCK_SH|LOCK_NB')), 'the lock was checked again in between')
  t.false(lines.some((l) => new RegExp(`\\bkill\\(${pid},`).test(l)), 'no plain kill() of the pid')
})

h.needs('strace')('without pidfds (ENOSYS) stop falls back to kill after checking the lock; other pidfd_open errors are reported', async (t) => {
  const dir = h.tempDir(t)
  const code = (file) => `require(${JSON.stringify(path.resolve(__dirname, '..'))}).stop(${JSON.stringify(file)}).then((r) => console.log(JSON.stringify(r)), (e) => { console.log(JSON.stringify({ code: e.code, reason: e.reason })); process.exit(1) })`
  const a = { pidFile: path.join(dir, 'a.pid') }
  const pidA = await startService(t, dir, a)
  let r = await h.run('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'inject=pidfd_open:error=ENOSYS', process.execPath, '-e', code(a.pidFile)])
  t.like(JSON.parse(r.stdout), { stopped: true, pid: pidA, signal: 'SIGTERM' })
  t.false(h.isRunning(pidA))

  const b = { pidFile: path.join(dir, 'b.pid') }
  const pidB = await startService(t, dir, b)
  r = await h.run('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'inject=pidfd_open:error=EMFILE', process.execPath, '-e', code(b.pidFile)])
  t.is(r.code, 1)
  t.deepEqual(JSON.parse(r.stdout), { code: 'EDAEMONSIGNAL', reason: 'EMFILE' })
  t.true(h.isRunning(pidB), 'never "not running" for a daemon that could not be opened')
})

h.needs('root', 'setpriv')('permission problems are reported as such, never as "not running"', async (t) => {
  const dir = h.tempDir(t)
  const service = h.readableCopy(dir, SERVICE)
  const spec = { pidFile: path.join(dir, 's.pid') }
  const pid = await startService(t, dir, spec)
  const asNobody = (action, s) =>
    h.run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, service, action, JSON.stringify(s)])
  let r = await asNobody('status', spec)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, `running (pid ${pid}); cannot verify that pid ${pid} holds the lock: its descriptors are unreadable (Permission denied)\n`)
  r = await asNobody('stop', spec)
  t.is(r.code, 4)
  t.regex(r.stderr, /permission denied, the daemon belongs to another user/)
  t.true(h.isRunning(pid))

  const closed = path.join(dir, 'closed')
  fs.mkdirSync(closed, { mode: 0o700 })
  fs.writeFileSync(path.join(closed, 'x.pid'), '12345\n')
  r = await asNobody('status', { pidFile: path.join(closed, 'x.pid') })
  t.is(r.code, 4)
  t.regex(r.stderr, /EACCES|permission denied/i)
  t.notRegex(r.stdout, /not running/)
})

test('50 start/stop cycles leave no process, no pidfile and no descriptor growth in the caller', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'c.pid')
  const r = await h.run(process.execPath, [path.join(h.FIXTURES, 'cycles.js'), pidFile], { timeout: 120_000 })
  t.is(r.code, 0, r.stderr)
  const summary = JSON.parse(r.stdout)
  for (const pid of summary.pids) h.cleanupPid(t, pid, dir)
  t.is(summary.pids.length, 51)
  t.is(new Set(summary.pids).size, 51)
  t.true(summary.results.every((x) => x.stopped === true && x.forced === false && x.signal === 'SIGTERM'))
  t.is(summary.fdsAfter, summary.fdsBefore)
  t.deepEqual(summary.final, { state: 'stopped' })
  t.false(summary.exists)
  t.true(summary.pids.every((pid) => !h.isRunning(pid)))
})

test('invalid arguments to the path functions and the class throw TypeErrors', async (t) => {
  await t.throwsAsync(daemonkit.status(''), { instanceOf: TypeError })
  await t.throwsAsync(daemonkit.signal('/tmp/x.pid', 'SIGNOPE'), { instanceOf: TypeError })
  await t.throwsAsync(daemonkit.stop('/tmp/x.pid', { timeout: -5 }), { instanceOf: TypeError, message: /"timeout"/ })
  t.throws(() => new daemonkit.Daemon({}), { instanceOf: TypeError, message: /"pidFile" is required/ })
  t.throws(() => new daemonkit.Daemon({ pidFile: '/tmp/x.pid', stopTimeout: 'soon' }), { instanceOf: TypeError, message: /"stopTimeout"/ })
  t.throws(() => new daemonkit.Daemon({ pidFile: '/tmp/x.pid', killSignal: 'kill' }), { instanceOf: TypeError, message: /"killSignal"/ })
})
