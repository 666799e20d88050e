'use strict'
// Running a service the way people expect: relative paths, failed starts that say so, CLI
// conventions (durations, signal names, help per command, errors in CLI words).
const test = require('ava')
const fs = require('node:fs')
const path = require('node:path')
const h = require('./helpers')

const { CLI, cli, started } = h
const PKG = path.join(__dirname, '..')

test('start runs the command in the folder it was called from: `node server.js` finds server.js', async (t) => {
  const dir = h.tempDir(t)
  fs.writeFileSync(path.join(dir, 'server.js'), "require('fs').writeFileSync('here', process.cwd()); setInterval(() => {}, 1000)\n")
  const pidFile = path.join(dir, 'api.pid')
  const s = started(t, dir, await cli(['start', '--json', '-p', 'api.pid', '-l', 'api.log', '--', process.execPath, 'server.js', dir], { cwd: dir }))
  t.true(h.isLocked(pidFile), 'the relative pidfile is in the folder')
  t.is(fs.readlinkSync(`/proc/${s.commandPid}/cwd`), dir)
  // The file exists from open() on; its content comes with the write that follows.
  t.is(await h.waitFor(() => fs.readFileSync(path.join(dir, 'here'), 'utf8'), { what: 'server.js to run' }), dir)
  t.true(h.isRunning(s.commandPid))
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
  // -C still overrides it.
  const other = h.tempDir(t)
  const s2 = started(t, dir, await cli(['start', '--json', '-p', pidFile, '-C', other, '--', '/usr/bin/python3', '-c', 'import time; time.sleep(300)', dir], { cwd: dir }))
  t.is(fs.readlinkSync(`/proc/${s2.commandPid}/cwd`), other)
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
})

test('spawnDaemon() runs the command in process.cwd() by default; daemonize() keeps /', async (t) => {
  const dir = h.tempDir(t)
  fs.writeFileSync(path.join(dir, 'worker.py'), 'import os, time\nwith open("cwd.txt", "w") as f: f.write(os.getcwd())\ntime.sleep(300)\n')
  const script = `require(${JSON.stringify(PKG)}).spawnDaemon('python3', ['worker.py', ${JSON.stringify(dir)}], { pidFile: 'w.pid' })
    .then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(1) })`
  const r = await h.run(process.execPath, ['-e', script], { cwd: dir })
  const s = started(t, dir, r)
  t.is(await h.waitFor(() => fs.readFileSync(path.join(dir, 'cwd.txt'), 'utf8'), { what: 'worker.py to run' }), dir)
  t.is(fs.readlinkSync(`/proc/${s.commandPid}/cwd`), dir)
  t.is(h.readPid(path.join(dir, 'w.pid')), s.pid)
  t.is((await cli(['stop', '-p', path.join(dir, 'w.pid')])).code, 0)
  // daemonize() keeps the classic '/'.
  const pidFile = path.join(dir, 'd.pid')
  const report = path.join(dir, 'report.json')
  const d = await h.launch({ options: { pidFile }, report }, { cwd: dir })
  t.is(d.code, 0, d.stderr)
  const pid = h.readPid(pidFile)
  h.cleanupPid(t, pid, dir)
  await h.waitFor(() => fs.existsSync(report), { what: 'the daemon report' })
  t.is(JSON.parse(fs.readFileSync(report, 'utf8')).cwd, '/')
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
})

test('start: a command that exits within the settle window is a failed start, with its status and stderr', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'p.pid')
  // A settle window wide enough for Node to fail on a loaded machine; the default's length is the next test's.
  const r = await cli(['start', '-p', pidFile, '--settle', '20s', '--', process.execPath, 'missing-server.js', dir], { cwd: dir })
  t.is(r.code, 1, r.stdout)
  t.notRegex(r.stdout, /started/)
  t.regex(r.stderr, /exited with status 1 within 20000 ms of its start/)
  t.regex(r.stderr, /Cannot find module '.*missing-server\.js'/)
  t.false(h.isLocked(pidFile))
  const st = await cli(['status', '-p', pidFile])
  t.is(st.code, 1)
  t.regex(st.stdout, /^failed: exited with status 1 at [\s\S]*Cannot find module/)
  // With a restart policy too: a crash loop is not a start.
  const loop = await cli(['start', '-p', pidFile, '-r', 'on-failure', '--', '/bin/sh', '-c', 'echo broken config >&2; exit 3', dir])
  t.is(loop.code, 1)
  t.regex(loop.stderr, /exited with status 3 within 1000 ms/)
  t.regex(loop.stderr, /broken config/)
  // With a log file, the tail still comes back (and is in the log).
  const log = path.join(dir, 'e.log')
  const logged = await cli(['start', '-p', pidFile, '-e', log, '--settle', '2s', '--', '/bin/sh', '-c', 'echo bad flag >&2; exit 2', dir])
  t.is(logged.code, 1)
  t.regex(logged.stderr, /status 2 within 2000 ms[\s\S]*bad flag/)
  t.regex(fs.readFileSync(log, 'utf8'), /bad flag/)
  // --settle 0: success at exec, as before.
  const quick = await cli(['start', '--json', '-p', pidFile, '--settle', '0', '--', '/bin/sh', '-c', 'exit 3', dir])
  t.is(quick.code, 0, quick.stderr)
  t.true(JSON.parse(quick.stdout).started)
})

test('start: a command that stays up through the settle window, or says READY=1 before it, has started', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'p.pid')
  const s = started(t, dir, await cli(['start', '--json', '-p', pidFile, '--settle', '300ms', '--', '/usr/bin/python3', '-c', 'import time; time.sleep(300)', dir]))
  t.true(h.isRunning(s.commandPid))
  t.true(h.isLocked(pidFile))
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
  // READY=1 ends the wait early: with a 10-minute window, start still returns (well within the test's timeout).
  const notify = `import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = os.environ['NOTIFY_SOCKET']
s.sendto(b'READY=1', '\\0' + a[1:] if a.startswith('@') else a)
time.sleep(300)`
  const r = await cli(['start', '--json', '-p', pidFile, '--settle', '10m', '--', '/usr/bin/python3', '-c', notify, dir], { timeout: 60_000 })
  const s2 = started(t, dir, r)
  t.true(h.isRunning(s2.commandPid))
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
})

test('spawnDaemon({ settle }) rejects with a ReadinessError carrying the exit status and stderr', async (t) => {
  const daemonkit = require('..')
  const dir = h.tempDir(t)
  const err = await t.throwsAsync(daemonkit.spawnDaemon('/bin/sh', ['-c', 'echo no database >&2; exit 4', dir], { pidFile: path.join(dir, 'p.pid'), settle: 1000 }))
  t.is(err.code, 'EDAEMONNOTREADY')
  t.is(err.exitCode, 4)
  t.regex(err.daemonStderr, /no database/)
  await t.throwsAsync(daemonkit.spawnDaemon('/bin/true', [], { supervise: false, settle: 10 }), { instanceOf: TypeError, message: /settle/ })
})

test('stop -t takes start-stop-daemon durations: a bare number is seconds; 1s, 500ms and 2m work', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'p.pid')
  const stubborn = ['/usr/bin/python3', '-c', 'import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)', dir]
  started(t, dir, await cli(['start', '--json', '-p', pidFile, '--', ...stubborn]))
  const before = Date.now()
  const r = await cli(['stop', '--json', '-p', pidFile, '-t', '1'])
  t.is(r.code, 0, r.stderr)
  t.true(JSON.parse(r.stdout).forced)
  t.true(Date.now() - before >= 900, '-t 1 waited a second before SIGKILL, not a millisecond')
  for (const value of ['1s', '500ms', '2m', '0.5s']) t.is((await cli(['stop', '-p', pidFile, '-t', value])).code, 0, value)
  const bad = await cli(['stop', '-p', pidFile, '-t', '5 seconds'])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /--timeout needs a time such as 500ms, 5s or 2m/)
})

test('signal names in any case, with or without SIG, and numbers', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'p.pid')
  const out = path.join(dir, 'out')
  const py = `import signal, time, sys
signal.signal(signal.SIGUSR1, lambda *a: (print('usr1', flush=True)))
while True: time.sleep(1)`
  started(t, dir, await cli(['start', '--json', '-p', pidFile, '-o', out, '--', '/usr/bin/python3', '-c', py, dir]))
  const handled = () => fs.readFileSync(out, 'utf8').split('\n').filter((l) => l === 'usr1').length
  for (const [i, name] of ['sigusr1', 'usr1', 'SIGUSR1', 'Usr1', '10'].entries()) {
    const r = await cli(['signal', name, '-p', pidFile])
    t.is(r.code, 0, `${name}: ${r.stderr}`)
    t.regex(r.stdout, /^sent SIGUSR1 to pid \d+\n$/)
    // One at a time: a signal sent while the same one is still pending would be merged with it.
    await h.waitFor(() => handled() === i + 1, { what: `SIGUSR1 number ${i + 1} (${name})` })
  }
  const bad = await cli(['signal', 'sigfoo', '-p', pidFile])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /unknown signal "sigfoo"/)
  t.notRegex(bad.stderr, /SIGSIG/)
  t.is((await cli(['stop', '-p', pidFile, '-s', 'int'])).code, 0)
})

test('help per command (CMD --help, help CMD), -q, completion, errors in CLI words', async (t) => {
  const dir = h.tempDir(t)
  const startHelp = await cli(['start', '--help'])
  t.is(startHelp.code, 0)
  t.regex(startHelp.stdout, /^Usage: daemonkit start /)
  t.regex(startHelp.stdout, /--settle TIME/)
  t.notRegex(startHelp.stdout, /--kill-timeout/)
  const stopHelp = await cli(['help', 'stop'])
  t.regex(stopHelp.stdout, /^Usage: daemonkit stop /)
  t.regex(stopHelp.stdout, /--kill-timeout TIME/)
  t.is((await cli(['help', 'bogus'])).code, 2)
  // Errors name the flag, not the API option.
  const noSup = await cli(['start', '--no-supervise', '-p', path.join(dir, 'p.pid'), '--', '/bin/true'])
  t.is(noSup.code, 2)
  t.regex(noSup.stderr, /^daemonkit start: --pidfile cannot be used with --no-supervise/)
  t.notRegex(noSup.stderr, /spawnDaemon|pidFile|supervise: true/)
  // -q: nothing on stdout.
  const pidFile = path.join(dir, 'q.pid')
  const q = await cli(['start', '-q', '--settle', '0', '-p', pidFile, '--', '/usr/bin/python3', '-c', 'import time; time.sleep(300)', dir])
  t.is(q.code, 0, q.stderr)
  t.is(q.stdout, '')
  h.cleanupPid(t, h.readPid(pidFile), dir)
  const st = await cli(['status', '-q', '-p', pidFile])
  t.is(st.code, 0)
  t.is(st.stdout, '')
  t.is((await cli(['stop', '-q', '-p', pidFile])).stdout, '')
  // Completion scripts parse in their shell.
  const bash = await cli(['completion', 'bash'])
  t.is(bash.code, 0)
  t.regex(bash.stdout, /complete -F _daemonkit daemonkit/)
  const script = path.join(dir, 'c.bash')
  fs.writeFileSync(script, bash.stdout)
  t.is((await h.run('bash', ['-n', script])).code, 0)
  t.regex((await cli(['completion', 'zsh'])).stdout, /^#compdef daemonkit/)
  t.is((await cli(['completion', 'fish'])).code, 2)
})

test('failure is a state: status says failed with the exit status, time, restarts and stderr, until the next start or reset', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'p.pid')
  const daemonkit = require('..')
  // Runs past the settle window, then fails.
  const s = started(t, dir, await cli(['start', '--json', '-p', pidFile, '--settle', '100ms', '--', '/bin/sh', '-c', 'sleep 1; echo disk full >&2; exit 5', dir]))
  await h.waitFor(() => !h.isLocked(pidFile) && h.procStat(s.pid)?.state !== 'S', { what: 'the supervisor to end' })
  const st = await cli(['status', '-p', pidFile])
  t.is(st.code, 1, st.stdout)
  t.regex(st.stdout, /^failed: exited with status 5 at \d{4}-\d\d-\d\dT[\d:.]+Z; last lines of stderr:\n {2}disk full\n$/)
  const json = JSON.parse((await cli(['status', '--json', '-p', pidFile])).stdout)
  t.like(json, { state: 'failed', status: 5, restarts: 0, stderr: 'disk full' })
  t.is(fs.statSync(`${pidFile}.failed`).mode & 0o777, 0o600)
  // reset (as systemctl reset-failed) clears it.
  t.regex((await cli(['reset', '-p', pidFile])).stdout, /failed state cleared/)
  t.is((await cli(['status', '-p', pidFile])).code, 3)

  // Given up after the burst limit: the restart count; killed by a signal: its name.
  const loop = started(t, dir, await cli(['start', '--json', '-p', pidFile, '--settle', '0', '-r', 'always', '--restart-delay', '10ms', '--restart-burst', '2', '--',
    '/bin/sh', '-c', 'echo try >&2; exit 0', dir]))
  await h.waitFor(async () => (await daemonkit.status(pidFile)).state === 'failed', { what: 'the supervisor to give up' })
  t.like(await daemonkit.status(pidFile), { state: 'failed', status: 0, restarts: 2 })
  t.false(h.isLocked(pidFile))
  t.truthy(loop)
  const killed = started(t, dir, await cli(['start', '--json', '-p', pidFile, '--', '/usr/bin/python3', '-c', 'import time; time.sleep(300)', dir]))
  t.is((await daemonkit.status(pidFile)).state, 'running', 'a new start ended the failed state')
  process.kill(killed.commandPid, 'SIGKILL')
  await h.waitFor(async () => (await daemonkit.status(pidFile)).state === 'failed', { what: 'the failure to be recorded' })
  t.like(await daemonkit.status(pidFile), { state: 'failed', status: undefined, signal: 'SIGKILL' })
  t.regex((await cli(['status', '-p', pidFile])).stdout, /^failed: killed by SIGKILL/)
  t.true(daemonkit.resetFailed(pidFile))
  t.false(daemonkit.resetFailed(pidFile))
  // A clean stop is not a failure.
  started(t, dir, await cli(['start', '--json', '-p', pidFile, '--', '/usr/bin/python3', '-c', 'import time; time.sleep(300)', dir]))
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
  t.deepEqual(await daemonkit.status(pidFile), { state: 'stopped' })
})

/** The CLI with its registry in `home`. */
function named(home, args, options = {}) {
  return cli(args, { ...options, env: { ...process.env, DAEMONKIT_HOME: home } })
}

test('names: --name puts pidfile, state and log in the registry; status/stop/signal/restart/reload/logs/list take the name', async (t) => {
  const dir = h.tempDir(t)
  const home = path.join(dir, 'home')
  fs.writeFileSync(path.join(dir, 'app.py'), `import http.server, os, signal, sys, time
signal.signal(signal.SIGHUP, lambda *a: print('hup', flush=True))
print('hello from', os.getcwd(), os.environ.get('GREETING'), flush=True)
http.server.HTTPServer(('127.0.0.1', 0), http.server.BaseHTTPRequestHandler).serve_forever()
`)
  const s = started(t, dir, await named(home, ['start', '--json', '--name', 'api', '-E', 'GREETING=hi', '--forward-hup', '--', '/usr/bin/python3', 'app.py', dir], { cwd: dir }))
  const pidFile = path.join(home, 'run', 'api.pid')
  t.is(h.readPid(pidFile), s.pid)
  t.true(h.isLocked(pidFile))
  t.is(fs.statSync(`${pidFile}.state`).mode & 0o777, 0o600)
  const log = path.join(home, 'log', 'api.log')
  await h.waitFor(() => fs.readFileSync(log, 'utf8').includes('hello'), { what: 'the log' })
  t.regex(fs.readFileSync(log, 'utf8'), new RegExp(`hello from ${dir} hi`))

  t.is((await named(home, ['status', 'api'])).stdout, `running (pid ${s.pid}, command pid ${s.commandPid})\n`)
  t.is((await named(home, ['status', '--name', 'api'])).code, 0)
  const listed = await h.waitFor(async () => {
    const l = JSON.parse((await named(home, ['list', '--json'])).stdout)
    return l[0]?.ports.length === 1 && l
  }, { what: 'list to show the port' })
  t.is(listed.length, 1)
  t.like(listed[0], { name: 'api', state: 'running', pid: s.pid, commandPid: s.commandPid, restarts: 0 })
  t.true(Number.isInteger(listed[0].uptime) && listed[0].uptime >= 0)
  t.true(listed[0].rss > 1 << 20, `rss ${listed[0].rss}`)
  t.true(typeof listed[0].cpu === 'number')
  t.regex((await named(home, ['list'])).stdout, /^NAME +STATE +PID[^\n]*\napi +running +\d+ +\d+ /)

  t.regex((await named(home, ['reload', 'api'])).stdout, /^reloaded \(pid \d+\)\n$/)
  await h.waitFor(() => fs.readFileSync(log, 'utf8').includes('hup'), { what: 'SIGHUP to reach the command' })
  t.is((await named(home, ['signal', 'usr2', 'api'])).code, 0)

  // restart NAME: the same command line, folder and environment, without repeating them.
  const r = await named(home, ['restart', '--json', 'api'])
  const s2 = started(t, dir, r)
  t.not(s2.commandPid, s.commandPid)
  t.is(fs.readlinkSync(`/proc/${s2.commandPid}/cwd`), dir)
  t.regex(fs.readFileSync(`/proc/${s2.commandPid}/environ`, 'utf8'), /(^|\0)GREETING=hi\0/)
  t.is((await named(home, ['restart', 'api'])).stdout.slice(0, 11), 'restarted (')

  const logs = await named(home, ['logs', 'api', '-n', '2'])
  t.is(logs.code, 0)
  t.is(logs.stdout.trim().split('\n').length, 2)
  t.regex(logs.stdout, /hello from/)

  t.regex((await named(home, ['stop', 'api'])).stdout, /^stopped/)
  t.is((await named(home, ['status', 'api'])).code, 3)
  t.like(JSON.parse((await named(home, ['list', '--json'])).stdout)[0], { name: 'api', state: 'stopped', pid: null })
  // Names are checked before anything is created.
  const bad = await named(home, ['start', '--name', '../x', '--', '/bin/true'])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /^daemonkit start: --name must be 1 to 64 letters/)
  const unknown = await named(home, ['restart', 'nobody'])
  t.is(unknown.code, 2)
  t.regex(unknown.stderr, /no record of how nobody was started/)
})

test('spawnDaemon({ name }) uses the registry; logs -f follows across a rotation', async (t) => {
  const dir = h.tempDir(t)
  const home = path.join(dir, 'home')
  const script = `process.env.DAEMONKIT_HOME = ${JSON.stringify(home)}
require(${JSON.stringify(PKG)}).spawnDaemon('/bin/sh', ['-c', 'i=0; while :; do i=$((i+1)); echo line $i; sleep 0.1; done', ${JSON.stringify(dir)}], { name: 'ticker' })
  .then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(1) })`
  const s = started(t, dir, await h.run(process.execPath, ['-e', script]))
  const log = path.join(home, 'log', 'ticker.log')
  t.is(h.readPid(path.join(home, 'run', 'ticker.pid')), s.pid)
  await h.waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('line 3'), { what: 'the log' })
  const { spawn } = require('node:child_process')
  const follower = spawn(process.execPath, [CLI, 'logs', 'ticker', '-n', '1', '-f'], { env: { ...process.env, DAEMONKIT_HOME: home } })
  t.teardown(() => follower.kill('SIGKILL'))
  let out = ''
  follower.stdout.on('data', (d) => (out += d))
  await h.waitFor(() => out.split('\n').length > 3, { what: 'logs -f to follow' })
  fs.renameSync(log, `${log}.1`)
  t.is((await named(home, ['reload', 'ticker'])).code, 0)
  await h.waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('line'), { what: 'the new log' })
  const first = Number(/line (\d+)/.exec(fs.readFileSync(log, 'utf8'))[1])
  await h.waitFor(() => out.includes(`line ${first + 2}\n`), { what: 'logs -f to read the new file' })
  follower.kill('SIGTERM')
  const numbers = out.trim().split('\n').map((l) => Number(l.split(' ')[1]))
  t.deepEqual(numbers, numbers.map((_, i) => numbers[0] + i), 'no line lost or repeated across the rotation')
  t.is((await named(home, ['stop', 'ticker'])).code, 0)
})

test('a daemonize() app with log files and no SIGHUP handler reopens them on SIGHUP instead of dying', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const log = path.join(dir, 'out.log')
  const app = path.join(dir, 'app.js')
  fs.writeFileSync(app, `require(${JSON.stringify(PKG)}).daemonize({ pidFile: ${JSON.stringify(pidFile)}, stdout: ${JSON.stringify(log)}, stderr: ${JSON.stringify(log)} })
  .then(() => setInterval(() => console.log('tick', process.pid), 100))\n`)
  const r = await h.run(process.execPath, [app])
  t.is(r.code, 0, r.stderr)
  const pid = h.readPid(pidFile)
  h.cleanupPid(t, pid, dir)
  await h.waitFor(() => fs.readFileSync(log, 'utf8').includes('tick'), { what: 'output' })
  fs.renameSync(log, `${log}.1`)
  process.kill(pid, 'SIGHUP')
  await h.waitFor(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('tick'), { what: 'the reopened log' })
  t.true(h.isRunning(pid))
  t.true(h.isLocked(pidFile))
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
})

test("the supervisor's own lines go to the stderr log, never into a stdout-only log", async (t) => {
  const dir = h.tempDir(t)
  const out = path.join(dir, 'out.log')
  const err = path.join(dir, 'err.log')
  const pidFile = path.join(dir, 'p.pid')
  started(t, dir, await cli(['start', '--json', '--settle', '0', '-p', pidFile, '-o', out, '--', '/bin/sh', '-c', 'echo data', dir]))
  await h.waitFor(() => !h.isLocked(pidFile), { what: 'the command to end' })
  t.is(fs.readFileSync(out, 'utf8'), 'data\n')
  started(t, dir, await cli(['start', '--json', '--settle', '0', '-p', pidFile, '-o', out, '-e', err, '--', '/bin/sh', '-c', 'echo more', dir]))
  await h.waitFor(() => !h.isLocked(pidFile) && fs.readFileSync(err, 'utf8').includes('exited'), { what: 'the command to end' })
  t.is(fs.readFileSync(out, 'utf8'), 'data\nmore\n')
  t.regex(fs.readFileSync(err, 'utf8'), /daemonkit-supervise: command exited with status 0/)
})

h.needs('systemd-analyze')('service install writes a systemd unit that systemd-analyze verify accepts; uninstall removes it', async (t) => {
  const dir = h.tempDir(t)
  const units = path.join(dir, 'units')
  const env = { ...process.env, DAEMONKIT_UNIT_DIR: units }
  const printed = await cli(['service', 'install', 'api', '--print', '-r', 'always', '--restart-delay', '2s', '-l', path.join(dir, 'api.log'), '-E', 'GREETING=hi $there 50%',
    '--', '/usr/bin/python3', '-c', 'print("%h $HOME")'], { cwd: dir, env })
  t.is(printed.code, 0, printed.stderr)
  const unit = printed.stdout
  t.false(fs.existsSync(units), '--print writes nothing')
  t.regex(unit, /^Type=notify$/m)
  t.regex(unit, /^KillMode=mixed$/m)
  t.regex(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m)
  t.regex(unit, new RegExp(`^WorkingDirectory=${dir}$`, 'm'))
  t.regex(unit, /^Restart=always$/m)
  t.regex(unit, /^RestartSec=2000ms$/m)
  t.regex(unit, /^Environment="GREETING=hi \$there 50%%"$/m)
  const exec = /^ExecStart=(.*)$/m.exec(unit)[1]
  t.true(exec.startsWith(`${process.execPath} ${fs.realpathSync(CLI)} run --name api -l `), exec)
  t.notRegex(unit, /npx/)
  t.regex(exec, / -- \/usr\/bin\/python3 -c "print\(\\"%%h \$\$HOME\\"\)"$/)
  t.notRegex(exec, / -r | --restart/, 'systemd restarts the service, not daemonkit')

  const installed = await cli(['service', 'install', 'api', '--', '/usr/bin/python3', '-c', 'print(1)'], { cwd: dir, env })
  t.is(installed.code, 0, installed.stderr)
  const file = path.join(units, 'daemonkit-api.service')
  t.regex(installed.stdout, new RegExp(`wrote ${file}\\nenable and start it with: systemctl( --user)? daemon-reload && systemctl( --user)? enable --now daemonkit-api.service`))
  for (const f of [file, path.join(dir, 'printed.service')]) {
    if (f !== file) fs.writeFileSync(f, unit)
    const verify = await h.run('systemd-analyze', ['verify', f])
    t.is(verify.code, 0, verify.stderr)
    t.is(verify.stderr.split('\n').filter((l) => l.includes(path.basename(f))).join('\n'), '', 'no complaint about the unit')
  }
  t.is((await cli(['service', 'uninstall', 'api'], { env })).code, 0)
  t.false(fs.existsSync(file))
  const plist = await cli(['service', 'install', 'api', '--print', '--launchd', '--', '/bin/true'], { cwd: dir, env })
  t.regex(plist.stdout, /<key>Label<\/key><string>daemonkit\.api<\/string>/)
})

test('daemonize({ name }) and new Daemon({ name }) use the registry: the CLI finds them by name', async (t) => {
  const dir = h.tempDir(t)
  const home = path.join(dir, 'home')
  const env = { ...process.env, DAEMONKIT_HOME: home }
  const app = path.join(dir, 'app.js')
  fs.writeFileSync(app, `const dk = require(${JSON.stringify(PKG)})
if (process.argv[2] === 'class') new dk.Daemon({ name: 'cls', run() { console.log('class up'); setInterval(() => {}, 1 << 30) } }).cli('start')
else dk.daemonize({ name: 'fn' }).then(() => { console.log('fn up'); setInterval(() => {}, 1 << 30) })
// ${dir}\n`)
  for (const [name, arg] of [['fn', 'fn'], ['cls', 'class']]) {
    const r = await h.run(process.execPath, [app, arg], { env })
    t.is(r.code, 0, r.stderr)
    const pidFile = path.join(home, 'run', `${name}.pid`)
    const pid = h.readPid(pidFile)
    h.cleanupPid(t, pid, dir)
    t.true(h.isLocked(pidFile))
    t.regex((await named(home, ['status', name])).stdout, new RegExp(`^running \\(pid ${pid}\\)`))
    await h.waitFor(async () => (await named(home, ['logs', name])).stdout.includes(`${name === 'fn' ? 'fn' : 'class'} up`), { what: 'the log' })
  }
  t.deepEqual(JSON.parse((await named(home, ['list', '--json'])).stdout).map((d) => [d.name, d.state]), [['cls', 'running'], ['fn', 'running']])
  for (const name of ['fn', 'cls']) t.is((await named(home, ['stop', name])).code, 0)
  await t.throwsAsync(require('..').daemonize({ name: 'a/b' }), { instanceOf: TypeError, message: /option "name" must be/ })
})

h.needs('root')('restart -p ignores a state file another user could have planted beside the pidfile', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'p.pid')
  const marker = path.join(dir, 'ran')
  fs.writeFileSync(`${pidFile}.state`, JSON.stringify({ command: '/bin/sh', args: ['-c', `touch ${marker}; sleep 300`], cwd: dir, options: { pidFile, settle: 0 }, startedAt: '' }))
  fs.chownSync(`${pidFile}.state`, 65534, 65534)
  const r = await cli(['restart', '-p', pidFile])
  if (h.isLocked(pidFile)) h.cleanupPid(t, h.readPid(pidFile), dir) // (if it ran it after all)
  t.is(r.code, 2)
  t.regex(r.stderr, /no record of how/)
  t.false(fs.existsSync(marker))
  fs.chownSync(`${pidFile}.state`, 0, 0)
  fs.chmodSync(`${pidFile}.state`, 0o666)
  t.is((await cli(['restart', '-p', pidFile])).code, 2, 'a world-writable one neither')
  fs.chmodSync(`${pidFile}.state`, 0o600)
  const ok = await cli(['restart', '--json', '-p', pidFile])
  started(t, dir, ok)
  await h.waitFor(() => fs.existsSync(marker), { what: 'the recorded command to run' })
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
})

test('list shows how often a running daemon was restarted', async (t) => {
  const dir = h.tempDir(t)
  const home = path.join(dir, 'home')
  started(t, dir, await named(home, ['start', '--json', '--settle', '0', '--name', 'flappy', '-r', 'always', '--restart-delay', '10ms', '--restart-burst', '1000',
    '--', '/bin/sh', '-c', 'sleep 0.2', dir]))
  const item = await h.waitFor(async () => {
    const d = JSON.parse((await named(home, ['list', '--json'])).stdout)[0]
    return d.state === 'running' && d.restarts >= 2 && d
  }, { what: 'two restarts' })
  t.like(item, { name: 'flappy', state: 'running' })
  t.regex((await named(home, ['list'])).stdout, /\nflappy +running +\d+ +(\d+|-) +\S+ +[1-9]\d* /)
  t.is((await named(home, ['stop', 'flappy'])).code, 0)
  t.false(fs.existsSync(path.join(home, 'run', 'flappy.pid.restarts')))
})

test('restart from another folder binds a relative --listen unix: path where the first start did', async (t) => {
  const dir = h.tempDir(t)
  const elsewhere = h.tempDir(t)
  const pidFile = path.join(dir, 'api.pid')
  const command = ['/usr/bin/python3', '-c', 'import time; time.sleep(300)', dir]
  t.teardown(() => cli(['stop', '-p', pidFile]))
  started(t, dir, await cli(['start', '--json', '-p', pidFile, '--listen', 'unix:api.sock', '--', ...command], { cwd: dir }))
  t.true(fs.statSync(path.join(dir, 'api.sock')).isSocket())
  const r = await cli(['restart', '--json', '-p', pidFile], { cwd: elsewhere })
  t.is(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout)
  h.cleanupPid(t, s.pid, dir)
  h.cleanupPid(t, s.commandPid, dir)
  t.false(fs.existsSync(path.join(elsewhere, 'api.sock')), 'nothing bound in the caller\'s folder')
  t.true(fs.statSync(path.join(dir, 'api.sock')).isSocket(), 'the socket is where the first start put it')
  const state = JSON.parse(fs.readFileSync(`${pidFile}.state`, 'utf8'))
  t.deepEqual(state.options.listen, [{ address: `unix:${path.join(dir, 'api.sock')}`, name: 'unknown' }])
})

test('--stop-timeout: start passes it to the supervisor and records it; service install sizes the unit by it', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'api.pid')
  t.teardown(() => cli(['stop', '-p', pidFile]))
  const s = started(t, dir, await cli(['start', '--json', '-p', pidFile, '--stop-timeout', '3s', '--', '/usr/bin/python3', '-c', 'import time; time.sleep(300)', dir]))
  const argv = fs.readFileSync(`/proc/${s.pid}/cmdline`, 'utf8').split('\0')
  t.is(argv[argv.indexOf('--stop-timeout') + 1], '3000', argv.join(' '))
  t.is(JSON.parse(fs.readFileSync(`${pidFile}.state`, 'utf8')).options.stopTimeout, 3000)
  const unit = await cli(['service', 'install', 'api', '--print', '--stop-timeout', '60s', '--', '/bin/sleep', '100'])
  t.is(unit.code, 0, unit.stderr)
  t.regex(unit.stdout, /^TimeoutStopSec=65$/m)
  t.regex(unit.stdout, /^ExecStart=.* run --name api --stop-timeout 60s -- \/bin\/sleep 100$/m)
  const bad = await cli(['start', '-p', pidFile, '--stop-timeout', 'soon', '--', '/bin/true'])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /--stop-timeout needs a time/)
})

test('restart applies the options given on its own command line over the recorded ones, and records the result', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'api.pid')
  const out = path.join(dir, 'out.log')
  t.teardown(() => cli(['stop', '-p', pidFile]))
  const command = ['/usr/bin/python3', '-c', 'import os, time; print(os.environ.get("A"), os.environ.get("B"), flush=True); time.sleep(300)', dir]
  started(t, dir, await cli(['start', '--json', '-p', pidFile, '-E', 'A=1', '-l', path.join(dir, 'first.log'), '--', ...command]))
  const r = await cli(['restart', '--json', '-p', pidFile, '-E', 'B=2', '-o', out, '-r', 'always'])
  t.is(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout)
  h.cleanupPid(t, s.pid, dir)
  h.cleanupPid(t, s.commandPid, dir)
  const env = fs.readFileSync(`/proc/${s.commandPid}/environ`, 'utf8').split('\0')
  t.true(env.includes('A=1') && env.includes('B=2'), env.filter((e) => /^[AB]=/.test(e)).join(' '))
  await h.waitFor(() => fs.existsSync(out) && fs.readFileSync(out, 'utf8').includes('1 2'), { what: 'the command to print into the new stdout log' })
  const state = JSON.parse(fs.readFileSync(`${pidFile}.state`, 'utf8'))
  t.deepEqual(state.options.env, { A: '1', B: '2' })
  t.is(state.options.stdout, out)
  t.is(state.options.restart, 'always')
  t.is(state.options.pidFile, pidFile)
})

h.needs('root', 'setpriv')('--listen unix: with --user: the socket file is the user\'s, with a mode by the umask, so the user can connect', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const pidFile = path.join(dir, 'api.pid')
  const sock = path.join(dir, 'api.sock')
  t.teardown(() => cli(['stop', '-p', pidFile]))
  started(t, dir, await cli(['start', '--json', '-p', pidFile, '-u', 'nobody', '--umask', '007', '--listen', `unix:${sock}`, '--', '/usr/bin/python3', '-c', 'import time; time.sleep(300)', dir]))
  const st = fs.lstatSync(sock)
  t.true(st.isSocket())
  t.is(st.uid, 65534)
  t.is(st.mode & 0o777, 0o770)
  const connect = await h.run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/usr/bin/python3', '-c', `import socket; s = socket.socket(socket.AF_UNIX); s.connect(${JSON.stringify(sock)}); print('connected')`])
  t.is(connect.code, 0, connect.stderr)
  t.regex(connect.stdout, /connected/)
})

test('CLI words: --name with --no-supervise, a command that cannot start, an unwritable registry folder', async (t) => {
  const dir = h.tempDir(t)
  const env = { ...process.env, DAEMONKIT_HOME: dir }
  const named = await cli(['start', '--name', 'x', '--no-supervise', '--', '/bin/sleep', '1'], { env })
  t.is(named.code, 2)
  t.regex(named.stderr, /--name cannot be used with --no-supervise/)
  t.notRegex(named.stderr, /--pidfile/)
  const missing = await cli(['start', '--name', 'y', '--', path.join(dir, 'no-such-program')], { env })
  t.is(missing.code, 1)
  t.regex(missing.stderr, /^daemonkit start: cannot start /m)
  t.notRegex(missing.stderr, /spawnDaemon/)
  const file = path.join(dir, 'file')
  fs.writeFileSync(file, '')
  const blocked = await cli(['start', '--name', 'z', '--', '/bin/sleep', '1'], { env: { ...process.env, DAEMONKIT_HOME: path.join(file, 'home') } })
  t.not(blocked.code, 0)
  t.regex(blocked.stderr, /cannot create the registry folder .*: it comes from DAEMONKIT_HOME/)
})
