'use strict'
// Pidfiles that someone else controls: files that are not pidfiles, hard links, locks taken by
// other processes, full filesystems; and stop() against stopped, stubborn and dying daemons.
const test = require('ava')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const h = require('./helpers')
const daemonkit = require('..')

const { CLI, cli, sleeper, startJson: start } = h
// One test at a time: each starts several real daemons, and the suite shares a small machine
// with other test files whose timeouts assume it is not flooded.
const serial = test.serial
const rootTest = h.needs('root').serial

const IGNORE_TERM = '\nimport signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)'

/** A process unrelated to any pidfile (the "victim" an attacker would name); killed at teardown. */
function bystander(t, dir) {
  const child = spawn('/usr/bin/python3', ['-c', 'import time\nwhile True: time.sleep(1)', dir], { stdio: 'ignore' })
  h.cleanupPid(t, child.pid, dir)
  return child
}

/**
 * A process holding a flock on `file` (util-linux flock(1), `mode` '-x' or '-s'), optionally as
 * another user through setpriv. Resolves once the lock is held; killed by pid at teardown.
 */
async function flockHolder(t, dir, file, mode, { asNobody = false } = {}) {
  const cmd = ['flock', mode, file, 'sleep', '120']
  const argv = asNobody ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...cmd] : cmd
  const child = spawn(argv[0], argv.slice(1), { stdio: 'ignore' })
  t.teardown(async () => {
    if (h.isRunning(child.pid)) child.kill('SIGKILL')
    await h.settle(() => !h.isRunning(child.pid))
  })
  await h.waitFor(() => h.isLocked(file), { what: `flock ${mode} on ${file}` })
  return child
}

// ------------------------------------------------------------------------------------------
// 1. stop / restart / start never destroy a file that is not provably a stale pidfile
// ------------------------------------------------------------------------------------------

serial('stop, restart and stop() leave a file that is not a pidfile untouched; start refuses it', async (t) => {
  const dir = h.tempDir(t)
  const conf = path.join(dir, 'app.conf')
  fs.writeFileSync(conf, 'db_password=x\n')

  let r = await cli(['stop', '-p', conf])
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, 'not running\n')
  t.is(fs.readFileSync(conf, 'utf8'), 'db_password=x\n', 'stop kept the file')

  t.deepEqual(await daemonkit.stop(conf), { stopped: false, reason: 'not-running' })
  t.is(fs.readFileSync(conf, 'utf8'), 'db_password=x\n', 'stop() kept the file')

  r = await cli(['restart', '-p', conf, '--', ...sleeper(dir)])
  t.is(r.code, 1)
  t.regex(r.stderr, /not a pidfile/)
  t.is(fs.readFileSync(conf, 'utf8'), 'db_password=x\n', 'restart kept the file')

  r = await cli(['start', '-p', conf, '--', ...sleeper(dir)])
  t.is(r.code, 1)
  t.regex(r.stderr, /not a pidfile .*left untouched/)
  t.is(fs.readFileSync(conf, 'utf8'), 'db_password=x\n', 'start kept the file')
  t.deepEqual(h.processesMentioning(dir), [], 'nothing was started')

  // The library's start: a PidfileError with a code, the file as it was.
  const caught = path.join(dir, 'caught.json')
  r = await h.launch({ options: { pidFile: conf }, caught })
  t.is(fs.readFileSync(conf, 'utf8'), 'db_password=x\n')
  t.like(JSON.parse(fs.readFileSync(caught, 'utf8')), { name: 'PidfileError', code: 'EPIDFILE' })
})

serial('stop on a hard link to a big file neither truncates nor removes it (9: hard links are refused everywhere)', async (t) => {
  const dir = h.tempDir(t)
  const big = path.join(dir, 'big.db')
  fs.writeFileSync(big, Buffer.alloc(1 << 20, 7))
  const link = path.join(dir, 'x.pid')
  fs.linkSync(big, link)

  // A file with other names is reported unsafe: stop refuses it (exit 1) and touches nothing.
  let r = await cli(['stop', '-p', link])
  t.is(r.code, 1, r.stderr)
  t.regex(r.stderr, /hard links/)
  t.is(fs.statSync(big).size, 1 << 20, 'the linked file kept its content')
  t.true(fs.existsSync(link), 'the link was not removed')

  // A hard link whose content looks like a pid is still another file's name: start refuses it.
  const other = path.join(dir, 'other.txt')
  fs.writeFileSync(other, '4242\n')
  const pidLink = path.join(dir, 'y.pid')
  fs.linkSync(other, pidLink)
  r = await cli(['start', '-p', pidLink, '--', ...sleeper(dir)])
  t.is(r.code, 1)
  t.regex(r.stderr, /hard links/)
  t.is(fs.readFileSync(other, 'utf8'), '4242\n')
  r = await cli(['stop', '-p', pidLink])
  t.is(r.code, 1, r.stderr)
  t.is(fs.readFileSync(other, 'utf8'), '4242\n')
  t.true(fs.existsSync(pidLink))
  t.deepEqual(h.processesMentioning(dir), [])
})

serial('stop removes nothing when it stopped nothing: a stale pidfile, a port.conf saying 8080, another tool\'s pidfile', async (t) => {
  const dir = h.tempDir(t)
  const files = { 'stale.pid': '4242\n', 'port.conf': '8080\n', 'other-tool.pid': `${process.pid}\n` }
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name)
    fs.writeFileSync(file, content)
    t.deepEqual(await daemonkit.stop(file), { stopped: false, reason: 'not-running' })
    const r = await cli(['stop', '-p', file])
    t.is(r.code, 0, r.stderr)
    t.is(fs.readFileSync(file, 'utf8'), content, `${name} is left as it was`)
  }
  const r = await cli(['status', '-p', path.join(dir, 'stale.pid')])
  t.is(r.code, 1)
  t.regex(r.stdout, /^dead: /)
})

// ------------------------------------------------------------------------------------------
// 2. the lock holder is checked against the pid in the file
// ------------------------------------------------------------------------------------------

h.needs('flock').serial('a planted pidfile locked by someone else: stop refuses, the named process is not signalled, status says so', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'api.pid')
  const daemon = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir)])
  const victim = bystander(t, dir)
  // What a service account owning the run folder can do: move the real file away, plant
  // another pid, lock the planted file.
  fs.renameSync(pidFile, path.join(dir, '.old'))
  fs.writeFileSync(pidFile, `${victim.pid}\n`)
  await flockHolder(t, dir, pidFile, '-x')

  let r = await cli(['status', '--json', '-p', pidFile])
  t.is(r.code, 4)
  const s = JSON.parse(r.stdout)
  t.is(s.state, 'unknown')
  t.is(s.namedPid, victim.pid)
  t.regex(s.reason, new RegExp(`locked, but not by pid ${victim.pid}`))

  r = await cli(['stop', '-p', pidFile])
  t.is(r.code, 1)
  t.regex(r.stderr, /not by pid \d+ that it names/)
  r = await cli(['signal', 'TERM', '-p', pidFile])
  t.is(r.code, 4)
  t.regex(r.stdout, /locked, but not by pid/)
  const e = await t.throwsAsync(daemonkit.stop(pidFile))
  t.like(e, { code: 'EPIDFILE', reason: 'EFOREIGNLOCK' })
  t.deepEqual(await daemonkit.signal(pidFile, 'SIGTERM'), { sent: false, reason: 'unknown' })

  await new Promise((resolve) => setTimeout(resolve, 300))
  t.true(h.isRunning(victim.pid), 'the named process was not signalled')
  t.true(h.isRunning(daemon.pid), 'the real daemon was not signalled either')
  t.is(fs.readFileSync(pidFile, 'utf8'), `${victim.pid}\n`, 'the planted file is left as it is')
  r = await cli(['start', '-p', pidFile, '--', ...sleeper(dir)])
  t.is(r.code, 1)
  t.notRegex(r.stdout, /already running/)
  t.regex(r.stderr, /locked, but not by pid \d+ that it names.*refusing to start/)
})

h.needs('root', 'flock', 'setpriv').serial('after a crash, nobody locks the stale pidfile of a root daemon whose pid was reused: nothing is killed', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const pidFile = path.join(dir, 'root.pid')
  // The stale file of a crashed daemon, naming a pid that now belongs to a root process.
  const reused = bystander(t, dir)
  fs.writeFileSync(pidFile, `${reused.pid}\n`, { mode: 0o644 })
  await flockHolder(t, dir, pidFile, '-x', { asNobody: true })
  const r = await cli(['stop', '-p', pidFile])
  t.is(r.code, 1)
  t.regex(r.stderr, /not by pid/)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.true(h.isRunning(reused.pid), 'the root process that reused the pid is alive')
  t.is((await cli(['status', '-p', pidFile])).code, 4)
})

h.needs('root', 'flock', 'setpriv').serial('a shared flock held by nobody on a stale pidfile: status says so, start replaces the file and starts', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const pidFile = path.join(dir, 'svc.pid')
  const daemon = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir)])
  const crashed = daemon.pid
  process.kill(crashed, 'SIGKILL')
  await h.waitFor(() => !h.isLocked(pidFile), { what: 'the lock to be released' })
  t.is(fs.readFileSync(pidFile, 'utf8'), `${crashed}\n`, 'the crash left the file behind')
  await flockHolder(t, dir, pidFile, '-s', { asNobody: true })

  let r = await cli(['status', '-p', pidFile])
  t.is(r.code, 4)
  t.regex(r.stdout, /^unknown: .*shared locks only/)
  const oldInode = fs.statSync(pidFile).ino
  r = await cli(['start', '--json', '-p', pidFile, '--', ...sleeper(dir)])
  t.is(r.code, 0, r.stderr)
  const started = JSON.parse(r.stdout)
  h.cleanupPid(t, started.pid, dir)
  h.cleanupPid(t, started.commandPid, dir)
  t.regex(r.stderr, /shared locks only.*replaced it with a new pidfile/)
  t.not(fs.statSync(pidFile).ino, oldInode, 'a fresh file')
  t.is(h.readPid(pidFile), started.pid)
  r = await cli(['status', '-p', pidFile])
  t.is(r.code, 0, r.stdout)
})

h.needs('root', 'flock', 'setpriv').serial('an exclusive flock held by another process than the named one still refuses start', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const pidFile = path.join(dir, 'svc.pid')
  const victim = bystander(t, dir)
  fs.writeFileSync(pidFile, `${victim.pid}\n`)
  await flockHolder(t, dir, pidFile, '-x', { asNobody: true })
  const r = await cli(['start', '-p', pidFile, '--', ...sleeper(dir)])
  t.is(r.code, 1)
  t.regex(r.stderr, new RegExp(`locked, but not by pid ${victim.pid}`))
  t.is(fs.readFileSync(pidFile, 'utf8'), `${victim.pid}\n`)
})

serial('a daemon still starting up (waiting for its command to be ready) is proven to hold its lock, and its start goes on', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'slow.pid')
  const ready = path.join(dir, 'ready')
  // The command says it is ready only once `ready` exists; until then the launcher waits.
  const script = `import os, socket, time, sys\nwhile not os.path.exists(${JSON.stringify(ready)}): time.sleep(0.05)\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\na = os.environ['NOTIFY_SOCKET']\ns.sendto(b'READY=1', '\\0' + a[1:] if a.startswith('@') else a)\nwhile True: time.sleep(1)`
  const launching = cli(['start', '--json', '--wait-ready', '-p', pidFile, '--', '/usr/bin/python3', '-c', script, dir])
  await h.waitFor(() => h.isLocked(pidFile) && fs.readFileSync(pidFile, 'utf8') !== '', { what: 'the supervisor to write its pid' })
  const during = await daemonkit.status(pidFile)
  t.true(during.state === 'running' && during.unverified === undefined, `the supervisor holds the lock it names: ${JSON.stringify(during)}`)
  fs.writeFileSync(ready, '')
  const r = await launching
  t.is(r.code, 0, r.stderr)
  const started = JSON.parse(r.stdout)
  h.cleanupPid(t, started.pid, dir)
  h.cleanupPid(t, started.commandPid, dir)
  t.like(await daemonkit.status(pidFile), { state: 'running', pid: started.pid })
  t.like(await daemonkit.stop(pidFile), { stopped: true, pid: started.pid })
})

h.needs('root', 'setpriv').serial('as another user, status of root\'s daemon says it cannot verify, and stop signals nothing', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'root.pid')
  const daemon = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir)])
  const copy = h.readableCopy(dir, path.join(__dirname, 'fixtures', 'basic.js'))
  const cliCopy = path.join(path.dirname(copy), '..', '..', 'dist', 'cli.js')
  const asNobody = (args) => h.run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cliCopy, ...args])
  let r = await asNobody(['status', '--json', '-p', pidFile])
  t.is(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout)
  t.is(s.state, 'running')
  t.is(s.pid, daemon.pid)
  t.regex(s.unverified, /cannot verify that pid \d+ holds the lock/)
  r = await asNobody(['stop', '-p', pidFile])
  t.is(r.code, 4)
  t.regex(r.stderr, /cannot verify/)
  t.true(h.isRunning(daemon.pid))
  // As root the proof is made, and stop works.
  t.deepEqual(await daemonkit.status(pidFile), { state: 'running', pid: daemon.pid, commandPid: daemon.commandPid })
  t.like(await daemonkit.stop(pidFile), { stopped: true, pid: daemon.pid })
})

// ------------------------------------------------------------------------------------------
// 13, 14, 15. stop() against stopped, stubborn and dying daemons
// ------------------------------------------------------------------------------------------

serial('a SIGSTOPped daemon gets SIGCONT with its stop signal and ends on it, unforced', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const r = await h.launch({ options: { pidFile } })
  t.is(r.code, 0, r.stderr)
  const pid = h.readPid(pidFile)
  h.cleanupPid(t, pid, dir)
  process.kill(pid, 'SIGSTOP')
  await h.waitFor(() => h.procStat(pid)?.state === 'T', { what: 'the daemon to be stopped' })
  const result = await daemonkit.stop(pidFile, { timeout: 15_000 })
  t.like(result, { stopped: true, pid, signal: 'SIGTERM', forced: false })
  t.false(fs.existsSync(pidFile))
})

serial('ten concurrent stop() calls on a TERM-ignoring daemon share one stop: all say forced', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'stubborn.pid')
  const daemon = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir, IGNORE_TERM)])
  await h.waitFor(() => h.ignoresSignal(daemon.commandPid, 15), { what: 'the command to ignore SIGTERM' })
  const results = await Promise.all(Array.from({ length: 10 }, () => daemonkit.stop(pidFile, { timeout: 300 })))
  for (const r of results) t.like(r, { stopped: true, pid: daemon.pid, signal: 'SIGKILL', forced: true })
  t.false(fs.existsSync(pidFile))
  // Once done, a new call is a new stop.
  t.deepEqual(await daemonkit.stop(pidFile), { stopped: false, reason: 'not-running' })
})

serial('stop -t 0 --kill-timeout 0 kills, waits for the kill to take, and removes the pidfile', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'now.pid')
  const daemon = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir, IGNORE_TERM)])
  await h.waitFor(() => h.ignoresSignal(daemon.commandPid, 15), { what: 'the command to ignore SIGTERM' })
  const r = await cli(['stop', '--json', '-p', pidFile, '-t', '0', '--kill-timeout', '0'])
  t.is(r.code, 0, r.stderr)
  t.like(JSON.parse(r.stdout), { stopped: true, pid: daemon.pid, forced: true, signal: 'SIGKILL' })
  t.false(fs.existsSync(pidFile))
  t.false(h.isLocked(pidFile))
})

// ------------------------------------------------------------------------------------------
// 6, 16. a full filesystem is a failed start, with nothing left behind
// ------------------------------------------------------------------------------------------

/** A 64 KiB tmpfs mounted in `dir`, filled up; unmounted at teardown. */
function fullTmpfs(t, dir) {
  const mnt = path.join(dir, 'full')
  fs.mkdirSync(mnt)
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs', mnt])
  if (m.status !== 0) return undefined
  t.teardown(() => void spawnSync('umount', ['-l', mnt]))
  spawnSync('dd', ['if=/dev/zero', `of=${path.join(mnt, 'fill')}`, 'bs=4096'], { stdio: 'ignore' })
  return mnt
}

rootTest('dk start with the pidfile on a full filesystem fails, and leaves no process and no pidfile', async (t) => {
  const dir = h.tempDir(t)
  const mnt = fullTmpfs(t, dir)
  if (!mnt) return t.pass('cannot mount a tmpfs here: skipped')
  const pidFile = path.join(mnt, 'api.pid')
  const r = await cli(['start', '-p', pidFile, '--', ...sleeper(dir)])
  await h.settle(() => h.processesMentioning(dir).length === 0)
  for (const pid of h.processesMentioning(dir)) h.cleanupPid(t, pid, dir)
  t.is(r.code, 1, r.stdout)
  t.notRegex(r.stdout, /started/)
  t.regex(r.stderr, /cannot write the pid.*No space left on device/)
  t.deepEqual(h.processesMentioning(dir), [], 'no supervisor or command is left')
  t.false(fs.existsSync(pidFile), 'no pidfile is left')
  t.is((await cli(['status', '-p', pidFile])).code, 3)
  const json = await cli(['start', '--json', '-p', pidFile, '--', ...sleeper(dir)])
  await h.settle(() => h.processesMentioning(dir).length === 0)
  for (const pid of h.processesMentioning(dir)) h.cleanupPid(t, pid, dir)
  t.is(json.code, 1)
  t.like(JSON.parse(json.stdout).error, { code: 'EPIDFILE', reason: 'ENOSPC' })
  t.deepEqual(h.processesMentioning(dir), [])
})

rootTest('daemonize() with the pidfile on a full filesystem rejects with a PidfileError, leaving nothing behind', async (t) => {
  const dir = h.tempDir(t)
  const mnt = fullTmpfs(t, dir)
  if (!mnt) return t.pass('cannot mount a tmpfs here: skipped')
  const pidFile = path.join(mnt, 'd.pid')
  const caught = path.join(dir, 'caught.json')
  const mark = path.join(dir, 'mark')
  const r = await h.launch({ options: { pidFile }, caught, mark })
  const daemons = fs.readFileSync(mark, 'utf8').trim().split('\n').filter((l) => l.startsWith('daemon ')).map((l) => Number(l.split(' ')[1]))
  for (const pid of daemons) h.cleanupPid(t, pid, dir)
  t.is(r.code, 0, r.stderr) // the fixture catches the rejection and carries on
  const e = JSON.parse(fs.readFileSync(caught, 'utf8'))
  t.like(e, { name: 'PidfileError', code: 'EPIDFILE', reason: 'ENOSPC' })
  t.regex(e.message, new RegExp(`^${pidFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot write pid`))
  await h.settle(() => daemons.every((pid) => !h.isRunning(pid)))
  for (const pid of daemons) t.false(h.isRunning(pid), `daemon ${pid} is gone`)
  t.false(fs.existsSync(pidFile))
})

// ------------------------------------------------------------------------------------------
// symlinked directories and hard links lead to another service's pidfile
// ------------------------------------------------------------------------------------------

/** Runs `sh -c script` as nobody. */
function asNobody(script, cwd) {
  return spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', script], { cwd, encoding: 'utf8' })
}

h.needs('root', 'setpriv').serial('a symlinked directory planted by a user does not lead stop, signal or status to another service', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const other = path.join(dir, 'othersvc', 'run')
  const app = path.join(dir, 'appsvc')
  fs.mkdirSync(other, { recursive: true })
  fs.mkdirSync(app)
  fs.chownSync(app, 65534, 65534)
  const otherPid = path.join(other, 'daemon.pid')
  const daemon = await start(t, dir, ['-p', otherPid, '--', ...sleeper(dir)])
  const r0 = asNobody(`ln -s ${other} run`, app)
  t.is(r0.status, 0, r0.stderr)
  const planted = path.join(app, 'run', 'daemon.pid')

  let r = await cli(['stop', '-p', planted])
  t.not(r.code, 0, r.stdout)
  t.regex(r.stderr + r.stdout, /symbolic link .*appsvc\/run.* not followed/)
  r = await cli(['signal', '-p', planted, 'TERM'])
  t.not(r.code, 0)
  r = await cli(['status', '-p', planted])
  t.is(r.code, 4, r.stdout)
  t.regex(r.stdout, /appsvc\/run/)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.true(h.isRunning(daemon.pid), 'the other service still runs')
  t.true(h.isLocked(otherPid))
  t.is(h.readPid(otherPid), daemon.pid)
})

h.needs('root', 'setpriv').serial('start as root does not write through a symlinked directory a user planted', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const rootOnly = path.join(dir, 'rootonly')
  const app = path.join(dir, 'appsvc')
  fs.mkdirSync(rootOnly, { mode: 0o700 })
  fs.mkdirSync(app)
  fs.chownSync(app, 65534, 65534)
  t.is(asNobody(`ln -s ${rootOnly} run`, app).status, 0)
  const r = await cli(['start', '-p', path.join(app, 'run', 'daemon.pid'), '--', ...sleeper(dir)])
  t.is(r.code, 1, r.stdout)
  t.regex(r.stderr, /symbolic link .*appsvc\/run/)
  t.false(fs.existsSync(path.join(rootOnly, 'daemon.pid')), 'nothing created in the root-only directory')
})

rootTest('a symlinked directory is followed where nobody else could have planted it, refused below /tmp', async (t) => {
  // A directory of its own under /run (root's, writable by nobody else), removed at teardown.
  const dir = fs.mkdtempSync('/run/daemonkit-test-')
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.mkdirSync(path.join(dir, 'real'), { mode: 0o755 })
  fs.symlinkSync(path.join(dir, 'real'), path.join(dir, 'run'))
  const daemon = await start(t, dir, ['-p', path.join(dir, 'run', 'd.pid'), '--', ...sleeper(dir)])
  t.is(h.readPid(path.join(dir, 'real', 'd.pid')), daemon.pid)
  const r = await cli(['status', '-p', path.join(dir, 'run', 'd.pid')])
  t.is(r.code, 0, r.stdout)

  const tmp = h.tempDir(t) // below /tmp, which everybody can write to
  fs.mkdirSync(path.join(tmp, 'real'))
  fs.symlinkSync(path.join(tmp, 'real'), path.join(tmp, 'run'))
  const refused = await cli(['start', '-p', path.join(tmp, 'run', 'd.pid'), '--', ...sleeper(tmp)])
  t.is(refused.code, 1)
  t.regex(refused.stderr, /symbolic link .*\/run, which others could have planted/)
  t.false(fs.existsSync(path.join(tmp, 'real', 'd.pid')))
})

rootTest('a hard link to another service\'s pidfile is reported unsafe and never acted on', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const otherPid = path.join(dir, 'other.pid')
  const daemon = await start(t, dir, ['-p', otherPid, '--', ...sleeper(dir)])
  fs.mkdirSync(path.join(dir, 'run'))
  const linked = path.join(dir, 'run', 'api.pid')
  fs.linkSync(otherPid, linked)
  let r = await cli(['status', '-p', linked])
  t.is(r.code, 4, r.stdout)
  t.regex(r.stdout, /hard links/)
  r = await cli(['stop', '-p', linked])
  t.not(r.code, 0, r.stdout)
  r = await cli(['signal', '-p', linked, 'TERM'])
  t.not(r.code, 0, r.stdout)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.true(h.isRunning(daemon.pid), 'the other service still runs')
  t.true(fs.existsSync(linked) && fs.existsSync(otherPid))
  fs.unlinkSync(linked)
})

/** Writes a `.failed` record beside `pidFile` as the supervisor would, with `stderr` as its tail. */
function forgeFailure(pidFile, stderr, mode = 0o600) {
  const file = `${pidFile}.failed`
  fs.writeFileSync(file, JSON.stringify({ status: 3, at: Date.now(), restarts: 0, stderr }), { mode })
  fs.chmodSync(file, mode)
  return file
}

serial('status: a failure record is printed with its control characters escaped (no terminal escapes reach the screen)', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'app.pid')
  forgeFailure(pidFile, 'boom\n\x1b]0;owned\x07\x1b[2Jcleared\r\x9b31m\n')
  const r = await cli(['status', '-p', pidFile])
  t.is(r.code, 1, r.stderr)
  t.regex(r.stdout, /failed: exited with status 3/)
  t.regex(r.stdout, /\\x1b\]0;owned\\x07\\x1b\[2Jcleared\\x0d\\x9b31m/)
  t.false(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/.test(r.stdout), JSON.stringify(r.stdout))
})

serial('status: a failure record that others may write is not trusted', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'app.pid')
  forgeFailure(pidFile, 'forged\n', 0o622)
  t.is((await daemonkit.status(pidFile)).state, 'stopped')
  const r = await cli(['status', '-p', pidFile])
  t.is(r.code, 3, r.stdout)
  t.regex(r.stdout, /not running/)
})

rootTest('status: a failure record owned by another user is not trusted', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o1777)
  const pidFile = path.join(dir, 'app.pid')
  const file = forgeFailure(pidFile, 'forged by nobody\n')
  fs.chownSync(file, 65534, 65534)
  t.is((await daemonkit.status(pidFile)).state, 'stopped')
})

serial('restart: a state file that records another pidfile (copied or renamed) is not used', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'a.pid')
  const other = path.join(dir, 'b.pid')
  t.teardown(() => cli(['stop', '-p', other]))
  const [command, ...args] = sleeper(dir)
  fs.writeFileSync(`${pidFile}.state`, JSON.stringify({ command, args, cwd: dir, options: { pidFile: other, cwd: dir }, startedAt: new Date().toISOString() }), { mode: 0o600 })
  const r = await cli(['restart', '-p', pidFile])
  t.not(r.code, 0, r.stdout)
  t.regex(r.stderr, /no record of how/)
  t.false(fs.existsSync(other), 'nothing was started on the other pidfile')
})
