'use strict'
// The supervisor's protocol as the launcher sees it through the binding: defaults, command line,
// report lines, errno names. No process is started.
const test = require('ava')
const path = require('node:path')

const n = require(path.join(__dirname, '..', 'binding'))
const { normalizeSpawnOptions, supervisorArgs } = require('../dist/spawn')
const { supervisorDefaults, durationText } = require('../dist/defaults')

const skip = process.platform === 'win32' ? test.skip : test

skip('the defaults are the supervisor\'s, and what spawnDaemon() applies', (t) => {
  const d = supervisorDefaults()
  t.like(d, { restart: 'never', restartDelay: 100, restartDelayMax: 30_000, restartBurst: 5, restartWindow: 60_000, stopTimeout: 10_000, settle: 0, startSettle: 1000, tailLimit: 8192, name: 'daemonkit-supervise' })
  const o = normalizeSpawnOptions({})
  t.like(o, { restart: d.restart, restartDelay: d.restartDelay, restartDelayMax: d.restartDelayMax, restartBurst: d.restartBurst, restartWindow: d.restartWindow, stopTimeout: d.stopTimeout, settle: d.settle })
  t.deepEqual([100, 1000, 30_000, 60_000, 90_000, 7_200_000, 1500].map(durationText), ['100ms', '1s', '30s', '60s', '90s', '7200s', '1500ms'])
})

skip('the command line: flags in a fixed order, hand-off last, then -- and the command', (t) => {
  const o = normalizeSpawnOptions({ stdout: '/tmp/o.log', cwd: '/', umask: 0o27, user: 'nobody', waitReady: true, forwardHup: true })
  t.deepEqual(supervisorArgs(o, 'x', []), [
    '--stdout', '/tmp/o.log', '--restart', 'never', '--backoff-min', '100', '--backoff-max', '30000', '--burst', '5',
    '--burst-window', '60000', '--cwd', '/', '--umask', '27', '--user', 'nobody', '--forward-hup', '--stop-timeout', '10000',
    '--wait-ready', '--upgrade-timeout', '30000', '--', 'x',
  ])
  const s = normalizeSpawnOptions({ cwd: '/', settle: 700, restart: 'always' })
  t.deepEqual(supervisorArgs(s, 'node', ['app.js', '--'], { readyFd: 3, lockFd: 4, pidFile: '/run/a.pid', listen: [{ fd: 5, name: 'http' }], newSession: true }), [
    '--ready-fd', '3', '--restart', 'always', '--backoff-min', '100', '--backoff-max', '30000', '--burst', '5', '--burst-window', '60000',
    '--cwd', '/', '--umask', '22', '--stop-timeout', '10000', '--settle', '700', '--new-session', '--lock-fd', '4', '--pidfile', '/run/a.pid',
    '--listen-fd', '5:http', '--', 'node', 'app.js', '--',
  ])
})

skip('report lines decode by kind; anything else is null', (t) => {
  t.deepEqual(n.decodeSupervisorReport('READY 42'), { kind: 'ready', pid: 42 })
  t.deepEqual(n.decodeSupervisorReport('NOTREADY 3 "a\\n\\u00e9\\ud83d\\ude00"'), { kind: 'notReady', status: 3, stderr: 'a\né😀' })
  t.deepEqual(n.decodeSupervisorReport('FAIL chdir 2 chdir failed: No such file or directory (2)'), { kind: 'fail', stage: 'chdir', errno: 2, message: 'chdir failed: No such file or directory (2)' })
  for (const line of ['', 'READY', 'READY x', 'NOTREADY 1 not-json', 'FAIL exec two words', 'OK 1']) t.is(n.decodeSupervisorReport(line), null, line)
})

skip('errno names and messages', (t) => {
  t.is(n.errnoName(2), 'ENOENT')
  t.is(n.errnoName(0), null)
  t.is(n.errnoMessage(13), 'Permission denied')
})

skip('the control socket\'s lines: one request, answers that survive any message', (t) => {
  t.is(n.controlUpgradeRequest(), 'UPGRADE\n')
  t.true(n.isUpgradeRequest('UPGRADE\n'))
  t.false(n.isUpgradeRequest('UPGRADE'))
  t.false(n.isUpgradeRequest('upgrade\n'))
  t.is(n.controlUnknownRequestReply(), 'FAIL usage "unknown request"\n')
  for (const reply of [{ kind: 'ok', pid: 42 }, { kind: 'fail', reason: 'exited', message: 'daemon (pid 7) exited with code 1:\nboom "quoted" \u00e9' }]) {
    const line = n.encodeControlReply(reply)
    t.true(line.endsWith('\n') && line.indexOf('\n') === line.length - 1, line)
    t.deepEqual(n.decodeControlReply(line), reply)
  }
  for (const line of ['', 'OK', 'OK x', 'FAIL busy', 'FAIL busy not-json', 'READY 1']) t.is(n.decodeControlReply(line), null, line)
  t.deepEqual(n.decodeControlReply('FAIL newer-word "x"\n'), { kind: 'fail', reason: 'failed', message: 'x' }, 'a reason this version does not know')
  t.is(n.controlRefusal('busy'), 'a graceful restart is already in progress')
  t.is(n.controlRefusal('stopping'), 'the daemon is stopping')
  t.is(n.controlRefusal('starting'), null, 'each server says in its own words what is not ready')
})
