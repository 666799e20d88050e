'use strict'
// A forged hand-off marker, a launcher that dies during the readiness wait, a process limit,
// arguments that are not UTF-8, and a NOTIFY_SOCKET nobody listens on.
const test = require('ava')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn } = require('node:child_process')
const h = require('./helpers')

const HANDOFF = path.join(h.FIXTURES, 'handoff.js')

/** Registers teardown for the daemon whose pid the pidfile names (if any). */
function cleanupFromPidfile(t, pidFile, dir) {
  t.teardown(() => {
    const pid = h.readPid(pidFile)
    if (pid > 1) return h.killIfMentions(pid, dir)
  })
}

/** Spawns the hand-off fixture's launcher; returns the child and a promise of its exit. */
function spawnLauncher(t, spec, { stdio = ['ignore', 'ignore', 'pipe'], env = process.env, cwd } = {}) {
  const child = spawn(process.execPath, [HANDOFF, JSON.stringify(spec)], { stdio, env, cwd })
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return { child, exited }
}

// ---------------------------------------------------------------- a forged DAEMONKIT_HANDOFF

/** Runs the basic fixture daemon with a forged marker and fds 0-5 as given; stdout is `precious`. */
function runForged(t, dir, marker, extraFds, options) {
  const precious = path.join(dir, 'precious.log')
  fs.writeFileSync(precious, 'precious line 1\nprecious line 2\n')
  const out = fs.openSync(precious, 'a')
  const args = [h.DAEMON, JSON.stringify({ options })]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      stdio: ['ignore', out, 'pipe', ...extraFds],
      env: { ...process.env, DAEMONKIT_HANDOFF: marker },
    })
    fs.closeSync(out)
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`timed out; stderr: ${stderr}`))
    }, 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stderr, precious: fs.readFileSync(precious, 'utf8') })
    })
  })
}

test('a forged v1 marker (the old format) pointing at stdout is ignored: the file is untouched, the script launches as usual', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'app.pid')
  cleanupFromPidfile(t, pidFile, dir)
  const marker = `v1:${'0'.repeat(32)}:2:2:1:${encodeURIComponent(pidFile)}`
  const r = await runForged(t, dir, marker, [], { pidFile })
  t.is(r.precious, 'precious line 1\nprecious line 2\n', 'the file on stdout was neither truncated nor written')
  t.is(r.code, 0, r.stderr)
  const pid = h.readPid(pidFile)
  t.true(h.isRunning(pid), 'a real daemon runs')
  t.true(h.isLocked(pidFile))
})

test('a forged current-format marker is refused unless fds 3/4/5 are the launcher\'s pipe, output and locked pidfile', async (t) => {
  const dir = h.tempDir(t)
  const { formatHandoff } = require('../dist/handoff')
  const pidFile = path.join(dir, 'app.pid')
  cleanupFromPidfile(t, pidFile, dir)
  const marker = (lockFd) => formatHandoff({ token: '0'.repeat(32), readyFd: 3, stderrFd: 4, lockFd, pidFile, readyTimeout: 30_000 })

  // fd 3 and 4: a regular file; fd 5: the pidfile, open but not locked.
  const other = path.join(dir, 'other.log')
  fs.writeFileSync(other, 'other\n')
  fs.writeFileSync(pidFile, '')
  const a = fs.openSync(other, 'r+')
  const b = fs.openSync(other, 'r+')
  const p = fs.openSync(pidFile, 'r+')
  t.teardown(() => [a, b, p].forEach((fd) => fs.closeSync(fd)))
  const r1 = await runForged(t, dir, marker(5), [a, b, p], { pidFile })
  t.regex(r1.stderr, /ignoring DAEMONKIT_HANDOFF/)
  t.is(r1.code, 0, r1.stderr)
  t.is(fs.readFileSync(other, 'utf8'), 'other\n', 'nothing written into the inherited descriptors')
  t.is(r1.precious, 'precious line 1\nprecious line 2\n')
  const first = h.readPid(pidFile)
  t.true(h.isRunning(first))
  t.true(h.isLocked(pidFile))

  // Now the pidfile is locked by that daemon: a descriptor of it (a different open file
  // description) is not proof either. fd 3 is a pipe's write end this time.
  const [pr, pw] = require('../binding').pipe()
  t.teardown(() => [pr, pw].forEach((fd) => fs.closeSync(fd)))
  const r2 = await runForged(t, dir, marker(5), [pw, b, p], { pidFile })
  t.regex(r2.stderr, /ignoring DAEMONKIT_HANDOFF/)
  t.regex(r2.stderr, /already running/, 'it started as a launcher, which found the lock taken')
  t.not(r2.code, 0)
  t.is(h.readPid(pidFile), first, 'the running daemon\'s pidfile was not overwritten')
  t.is(r2.precious, 'precious line 1\nprecious line 2\n')
})

test('the hand-off a real launcher makes is still adopted (pidfile, lock, readiness)', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const adopted = path.join(dir, 'adopted')
  const { child, exited } = spawnLauncher(t, { options: { pidFile }, adopted })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const r = await exited
  t.is(r.code, 0, stderr)
  t.notRegex(stderr, /ignoring/)
  const pid = h.readPid(pidFile)
  h.cleanupPid(t, pid, dir)
  t.is(Number(await h.waitFor(() => h.readText(adopted))), pid)
  t.true(h.isLocked(pidFile))
})

// ---------------------------------------------------------------- the launcher dies early

/**
 * Launches a daemon with ready: 'manual' that writes its pid to `adopted`, `stderrLines` lines to
 * stderr (`log`), and once `goFile` exists as many again, then calls ready() and writes `afterReady`.
 */
function launchManualReady(t, stderrLines) {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const goFile = path.join(dir, 'go')
  const adopted = path.join(dir, 'adopted')
  const afterReady = path.join(dir, 'after-ready')
  const log = path.join(dir, 'err.log')
  cleanupFromPidfile(t, pidFile, dir)
  const { child, exited } = spawnLauncher(t, {
    options: { pidFile, ready: 'manual', stderr: log }, adopted, goFile, afterReady, stderrLines,
  })
  return { pidFile, goFile, adopted, afterReady, log, child, exited }
}

test('the launcher survives a closed stderr pipe while relaying, and exits 0 once the daemon is ready', async (t) => {
  // What `node app.js 2>&1 | head -2` does: the reader goes away while the daemon still writes.
  const { pidFile, goFile, adopted, afterReady, child, exited } = launchManualReady(t, 200)
  child.stderr.destroy()
  const pid = Number(await h.waitFor(() => h.readText(adopted), { what: 'the daemon to adopt' }))
  fs.writeFileSync(goFile, '')
  const r = await exited
  t.is(r.code, 0, 'the launcher did not crash on EPIPE')
  t.is(Number(await h.waitFor(() => h.readText(afterReady), { what: 'ready() to return' })), pid)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.true(h.isRunning(pid), 'the daemon runs')
  t.is(h.readPid(pidFile), pid)
  t.true(h.isLocked(pidFile))
})

test('a launcher killed during the wait: the daemon survives its stderr writes and ready(), and says so in its log', async (t) => {
  const { pidFile, goFile, adopted, afterReady, log, child, exited } = launchManualReady(t, 20)
  const pid = Number(await h.waitFor(() => h.readText(adopted), { what: 'the daemon to adopt' }))
  child.kill('SIGKILL')
  t.is((await exited).signal, 'SIGKILL')
  fs.writeFileSync(goFile, '')
  t.is(Number(await h.waitFor(() => h.readText(afterReady), { timeout: 15_000, what: 'ready() to return' })), pid)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.true(h.isRunning(pid), 'ready() did not throw EPIPE into the daemon')
  t.is(h.readPid(pidFile), pid)
  t.true(h.isLocked(pidFile))
  const text = h.readText(log)
  t.regex(text, /after-go line 19 from/, 'stderr written after the launcher died lands in the stderr target')
  t.regex(text, /launching process is gone/)
})

test('a launcher killed during the wait: a daemon that never gets ready ends by itself at readyTimeout, without a pidfile', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const adopted = path.join(dir, 'adopted')
  const log = path.join(dir, 'err.log')
  cleanupFromPidfile(t, pidFile, dir)
  const { child, exited } = spawnLauncher(t, { options: { pidFile, ready: 'manual', readyTimeout: 2000, stderr: log }, adopted })
  const pid = Number(await h.waitFor(() => h.readText(adopted), { what: 'the daemon to adopt' }))
  h.cleanupPid(t, pid, dir)
  child.kill('SIGKILL')
  await exited
  await h.waitFor(() => !h.isRunning(pid), { timeout: 20_000, what: 'the daemon to end by itself' })
  await h.settle(() => !fs.existsSync(pidFile))
  t.false(fs.existsSync(pidFile), 'no pidfile left')
  t.regex(h.readText(log), /not ready after 2000 ms/)
})

test('with its launcher alive, a daemon that never gets ready is still reported as a timeout', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const { child, exited } = spawnLauncher(t, { options: { pidFile, ready: 'manual', readyTimeout: 1500 } })
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  const r = await exited
  t.not(r.code, 0)
  t.regex(stderr, /was not ready after 1500 ms/)
  t.false(fs.existsSync(pidFile))
})

// ---------------------------------------------------------------- a small process limit

/** Threads (tasks) of user `uid` now: what RLIMIT_NPROC counts. */
function tasksOf(uid) {
  let n = 0
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (fs.statSync(`/proc/${entry}`).uid === uid) n += fs.readdirSync(`/proc/${entry}/task`).length
    } catch {
      // gone
    }
  }
  return n
}

h.needs('root', 'setpriv', 'prlimit')('under a process limit too small for the daemon\'s threads, the launcher fails cleanly: a message, no pidfile, no process', async (t) => {
  const dir = h.tempDir(t)
  const fixture = h.readableCopy(dir, h.DAEMON)
  const run = path.join(dir, 'run')
  fs.mkdirSync(run)
  fs.chmodSync(run, 0o777)
  const pidFile = path.join(run, 'd.pid')
  const mark = path.join(run, 'mark')
  // Room for the launcher (a Node process starts about seven threads) and the two launch
  // stages, not for the daemon's own threads. The limit counts every process of the user, so the
  // test runs as a uid of its own: other tests start and end processes as nobody meanwhile.
  const uid = 64999
  const limit = tasksOf(uid) + 11
  const spec = JSON.stringify({ options: { pidFile, readyTimeout: 3000 }, mark })
  const r = await h.run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'prlimit', `--nproc=${limit}`, '--',
    process.execPath, fixture, spec], { cwd: run })
  t.is(r.signal, null, `the launcher was not killed by a signal (${r.signal}); stderr: ${r.stderr}`)
  t.not(r.code, 0)
  // Usually the daemon starts and hangs for want of threads; when another process of the same
  // user took the room meanwhile, the launch itself fails (EAGAIN). Both must end cleanly.
  t.regex(r.stderr, /not ready after 3000 ms|fork failed/)
  if (/not ready/.test(r.stderr)) t.regex(r.stderr, /ulimit -u/)
  t.false(fs.existsSync(pidFile), 'no pidfile left')
  const match = /daemon \(pid (\d+)\)/.exec(r.stderr)
  if (match) {
    await h.waitFor(() => !h.isRunning(Number(match[1])), { timeout: 15_000, what: 'no daemon left' })
  }
})

// ---------------------------------------------------------------- arguments that are not UTF-8

test('an argument that is not valid UTF-8 reaches the daemon byte for byte', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const cmdline = path.join(dir, 'cmdline.json')
  cleanupFromPidfile(t, pidFile, dir)
  const spec = JSON.stringify({ options: { pidFile }, cmdline })
  // A shell puts raw bytes into argv; Node's own spawn() could only pass UTF-8.
  const r = await h.run('/bin/sh', ['-c', `exec "$0" "$1" "$2" "$(printf 'caf\\351 \\377\\376 ok')" --flag`, process.execPath, HANDOFF, spec])
  t.is(r.code, 0, r.stderr)
  const seen = JSON.parse(await h.waitFor(() => h.readText(cmdline), { what: 'the daemon\'s report' }))
  t.true(seen.isDaemon)
  const args = Buffer.from(seen.hex, 'hex').toString('latin1').split('\0').slice(0, -1)
  t.deepEqual(args.slice(-2).map((a) => Buffer.from(a, 'latin1').toString('hex')), [Buffer.from('caf\xe9 \xff\xfe ok', 'latin1').toString('hex'), Buffer.from('--flag').toString('hex')])
})

test('a UTF-8 argument (U+FFFD included) is passed exactly as before', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const cmdline = path.join(dir, 'cmdline.json')
  cleanupFromPidfile(t, pidFile, dir)
  const r = await h.run(process.execPath, [HANDOFF, JSON.stringify({ options: { pidFile }, cmdline }), 'héllo \uFFFD ✓'])
  t.is(r.code, 0, r.stderr)
  const seen = JSON.parse(await h.waitFor(() => h.readText(cmdline), { what: 'the daemon\'s report' }))
  t.is(seen.argv.at(-1), 'héllo \uFFFD ✓')
})

test('an argument that is not UTF-8 and whose bytes are lost (process.title changed) is refused before anything starts', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const script = path.join(dir, 'titled.js')
  fs.writeFileSync(script, `process.title = 'renamed'\nrequire(${JSON.stringify(path.join(__dirname, '..'))}).daemonize(${JSON.stringify({ pidFile })}).catch((e) => { console.error(e.code, e.reason, e.message); process.exit(3) })\n`)
  const r = await h.run('/bin/sh', ['-c', `exec "$0" "$1" "$(printf '\\377')"`, process.execPath, script])
  t.is(r.code, 3, r.stderr)
  t.regex(r.stderr, /EDAEMONLAUNCH EARGVENCODING .*not valid UTF-8/)
  t.false(fs.existsSync(pidFile), 'nothing was opened')
})

// ---------------------------------------------------------------- a NOTIFY_SOCKET nobody listens on

for (const [what, value] of [
  ['a path that does not exist', '/nonexistent/daemonkit/notify.sock'],
  ['an abstract name nobody bound', `@daemonkit-test-nobody-${process.pid}`],
  ['garbage', 'not a socket at all'],
]) {
  test(`detach 'auto' with NOTIFY_SOCKET set to ${what}: says so and detaches`, async (t) => {
    const dir = h.tempDir(t)
    const pidFile = path.join(dir, 'd.pid')
    cleanupFromPidfile(t, pidFile, dir)
    const r = await h.launch({ options: { pidFile } }, { env: { ...process.env, NOTIFY_SOCKET: value }, timeout: 20_000 })
    t.is(r.code, 0, r.stderr)
    t.regex(r.stderr, /NOTIFY_SOCKET=.* no socket listens there .*detaching as usual/)
    const pid = h.readPid(pidFile)
    t.true(h.isRunning(pid))
    t.not(h.procStat(pid).session, h.procStat(process.pid).session, 'detached into a session of its own')
  })
}

test('daemonkit start with an unreachable NOTIFY_SOCKET detaches too', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  cleanupFromPidfile(t, pidFile, dir)
  const cli = path.join(__dirname, '..', 'dist', 'cli.js')
  const r = await h.run(process.execPath, [cli, 'start', '-p', pidFile, '--', 'sleep', '600'], {
    env: { ...process.env, NOTIFY_SOCKET: path.join(dir, 'missing.sock') }, timeout: 20_000,
  })
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /^started \(pid \d+/)
  t.regex(r.stderr, /detaching as usual/)
  t.true(h.isLocked(pidFile))
})

// ---------------------------------------------------------------- readyTimeout edge values

test('every readyTimeout daemonize() accepts survives the hand-off marker (format, then parse)', (t) => {
  const { formatHandoff, parseHandoff } = require('../dist/handoff')
  for (const readyTimeout of [1, 0.5, 1500.5, 30_000, 2 ** 31 - 1001, 2 ** 31 - 1.5, 2 ** 31 - 1]) {
    const h0 = { token: 'a'.repeat(32), readyFd: 3, stderrFd: 4, lockFd: 5, pidFile: '/run/x y.pid', readyTimeout }
    const parsed = parseHandoff(formatHandoff(h0))
    t.is(typeof parsed, 'object', `readyTimeout ${readyTimeout}: ${parsed}`)
    t.is(parsed.readyTimeout, Math.ceil(readyTimeout))
    t.is(parsed.pidFile, '/run/x y.pid')
  }
})

test('a fractional readyTimeout launches a daemon', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const adopted = path.join(dir, 'adopted')
  cleanupFromPidfile(t, pidFile, dir)
  const { exited } = spawnLauncher(t, { options: { pidFile, readyTimeout: 1500.5 }, adopted })
  const r = await exited
  t.is(r.code, 0)
  const pid = h.readPid(pidFile)
  h.cleanupPid(t, pid, dir)
  // The daemon writes the file after its READY, so after the launcher may have exited.
  t.is(Number(await h.waitFor(() => h.readText(adopted))), pid)
  t.true(h.isLocked(pidFile))
})

test('a readyTimeout near 2^31-1 ms does not make the daemon end itself at once', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const adopted = path.join(dir, 'adopted')
  const log = path.join(dir, 'err.log')
  cleanupFromPidfile(t, pidFile, dir)
  const { child, exited } = spawnLauncher(t, { options: { pidFile, ready: 'manual', readyTimeout: 2 ** 31 - 1, stderr: log }, adopted })
  const pid = Number(await h.waitFor(() => h.readText(adopted), { what: 'the daemon to adopt' }))
  h.cleanupPid(t, pid, dir)
  // Its launcher gone, only the daemon's own deadline could end it.
  child.kill('SIGKILL')
  await exited
  await new Promise((resolve) => setTimeout(resolve, 2500))
  t.true(h.isRunning(pid), 'the daemon still waits for readiness')
  t.true(h.isLocked(pidFile))
  t.notRegex(h.readText(log) ?? '', /not ready after/)
})

test('a daemon that exits before ready without reporting how is not said to be "killed by a signal"', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const script = path.join(dir, 'quits.js')
  // process.reallyExit skips the 'exit' handlers, so no EXIT line reaches the launcher.
  fs.writeFileSync(script, `require(${JSON.stringify(path.join(__dirname, '..'))}).daemonize({ pidFile: ${JSON.stringify(pidFile)}, ready: 'manual' }).then(() => process.reallyExit(1))\n`)
  const r = await h.run(process.execPath, [script], { timeout: 30_000 })
  t.is(r.code, 1)
  t.notRegex(r.stderr, /killed by a signal/)
  t.regex(r.stderr, /exited without reporting how/)
  t.false(fs.existsSync(pidFile))
})

// ---------------------------------------------------------------- a takeover that ends early

test('namedProcessEnded, which decides whether a new copy that ends early removes the pidfile naming the old one: live no, zombie or gone yes, unknown no', async (t) => {
  const { namedProcessEnded } = require('../dist/proc')
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'app.pid')
  // A live process, and a zombie: `sh` forks a child that exits, then becomes a `sleep` that never reaps it.
  const zombieFile = path.join(dir, 'zombie.pid')
  const parent = spawn('sh', ['-c', 'sleep 0 & echo $! > "$0"; exec sleep 60', zombieFile], { stdio: 'ignore' })
  t.teardown(() => parent.kill('SIGKILL'))
  const zombie = await h.waitFor(() => h.readPid(zombieFile), { what: 'the child pid' })
  await h.waitFor(() => h.procStat(zombie)?.state === 'Z', { what: 'the zombie' })
  fs.writeFileSync(pidFile, `${parent.pid}\n`)
  t.false(namedProcessEnded(pidFile), 'a live process')
  fs.writeFileSync(pidFile, `${zombie}\n`)
  t.true(namedProcessEnded(pidFile), 'a zombie')
  const gone = spawn('true')
  await new Promise((resolve) => gone.on('exit', resolve))
  await h.waitFor(() => h.procStat(gone.pid) === undefined, { what: 'the process to be reaped' })
  fs.writeFileSync(pidFile, `${gone.pid}\n`)
  t.true(namedProcessEnded(pidFile), 'a process that is gone')
  // Planted in its place: a symlink to a file naming that pid is not followed, a FIFO does not
  // block, a file others may write does not count.
  const planted = path.join(dir, 'planted.pid')
  fs.renameSync(pidFile, planted)
  fs.symlinkSync(planted, pidFile)
  t.false(namedProcessEnded(pidFile), 'a symlink')
  fs.unlinkSync(pidFile)
  require('node:child_process').execFileSync('mkfifo', [pidFile])
  t.false(namedProcessEnded(pidFile), 'a FIFO')
  fs.unlinkSync(pidFile)
  fs.copyFileSync(planted, pidFile)
  fs.chmodSync(pidFile, 0o666)
  t.false(namedProcessEnded(pidFile), 'a world-writable file')
  fs.chmodSync(pidFile, 0o644)
  t.true(namedProcessEnded(pidFile))
  for (const text of ['', 'x\n', '1\n', '-5\n']) {
    fs.writeFileSync(pidFile, text)
    t.false(namedProcessEnded(pidFile), `no pid to judge: ${JSON.stringify(text)}`)
  }
  t.false(namedProcessEnded(path.join(dir, 'missing.pid')), 'no file')
})
