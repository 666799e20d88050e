'use strict'
// Log files on hostile paths (symlinks, hard links, FIFOs, directories others can change, a
// service user who prepares its log directory) and on a full disk.
const test = require('ava')
const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync, execFileSync } = require('node:child_process')
const h = require('./helpers')
const daemonkit = require('..')

const { CLI, cli, startJson: start } = h
const LINES = path.join(h.FIXTURES, 'lines.py')

/** A command that prints "tick N" ten times a second; its command line mentions `dir`. */
function ticker(dir) {
  return ['/usr/bin/python3', '-c', 'import sys, time\ni = 0\nwhile True:\n    print("tick", i, flush=True)\n    i += 1\n    time.sleep(0.1)', dir]
}

/** A root-only file with known content, the target of the planted links. */
function secret(dir) {
  const file = path.join(dir, 'secret')
  fs.writeFileSync(file, 'root only\n', { mode: 0o600 })
  return file
}

/** Runs `script` with sh as nobody (setpriv), as the service user would. */
function asNobody(t, script) {
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'sh', '-c', script], { encoding: 'utf8' })
  t.is(r.status, 0, `as nobody: ${script}: ${r.stderr}`)
}

/** Should a refused start have started anyway, its processes are killed at teardown. */
function killStarted(t, dir, stdout) {
  const m = /pid (\d+), command pid (\d+)/.exec(stdout)
  if (m) for (const pid of [m[1], m[2]]) h.cleanupPid(t, Number(pid), dir)
}

/** Daemonizes the fixture with `options`, expecting a refusal; a daemon that starts anyway is killed at teardown. */
async function refusedDaemonize(t, dir, options) {
  const r = await h.launch({ options }, { timeout: 20_000 })
  if (r.code === 0 && options.pidFile && fs.existsSync(options.pidFile)) h.cleanupPid(t, h.readPid(options.pidFile), dir)
  return r
}

/** Checks that a start refused `log` and left nothing behind. */
async function refusedStart(t, dir, log, why, extra = []) {
  const pidFile = path.join(dir, 'refused.pid')
  const r = await cli(['start', '-p', pidFile, '-l', log, ...extra, '--', ...ticker(dir)])
  killStarted(t, dir, r.stdout)
  t.not(r.code, 0, `start with ${log} should fail`)
  t.true(r.stderr.includes(`cannot open the log file ${log}`), r.stderr)
  t.regex(r.stderr, why)
  t.false(fs.existsSync(pidFile), 'no pidfile is left')
  await h.settle(() => h.processesMentioning(dir).length === 0, { timeout: 15_000 })
  t.deepEqual(h.processesMentioning(dir), [], 'no process is left')
}

test('log paths are never followed through a symlink, nor opened when hard-linked, a FIFO or a directory (daemonize, spawnDaemon, start)', async (t) => {
  const dir = h.tempDir(t)
  const target = path.join(dir, 'target')
  fs.writeFileSync(target, 'untouched\n')
  const link = path.join(dir, 'link.log')
  fs.symlinkSync(target, link)
  const dangling = path.join(dir, 'dangling.log')
  const nowhere = path.join(dir, 'nowhere')
  fs.symlinkSync(nowhere, dangling)
  const hard = path.join(dir, 'hard.log')
  fs.linkSync(target, hard)
  const fifo = path.join(dir, 'fifo.log')
  execFileSync('mkfifo', [fifo])

  // daemonize(): the launcher rejects before anything starts.
  for (const [log, why] of [[link, /symbolic link/], [dangling, /symbolic link/], [hard, /hard links/], [fifo, /a FIFO/], [dir, /directory/]]) {
    const pidFile = path.join(dir, 'd.pid')
    const r = await refusedDaemonize(t, dir, { pidFile, stdout: log })
    t.not(r.code, 0)
    t.true(r.stderr.includes(`cannot open the log file ${log}`), r.stderr)
    t.true(r.stderr.includes('ELOGFILE'), r.stderr)
    t.regex(r.stderr, why)
    t.false(fs.existsSync(pidFile), 'no pidfile is left')
  }
  // spawnDaemon(), direct and supervised: a LogfileError.
  for (const supervise of [false, true]) {
    const err = await t.throwsAsync(async () => {
      const s = await daemonkit.spawnDaemon(ticker(dir)[0], ticker(dir).slice(1), { stderr: dangling, supervise, ...(supervise ? { pidFile: path.join(dir, 's.pid') } : {}) })
      for (const pid of new Set([s.pid, s.commandPid])) h.cleanupPid(t, pid, dir)
    })
    t.true(err.message.includes(`cannot open the log file ${dangling}`), err.message)
    if (!supervise) {
      t.true(err instanceof daemonkit.LogfileError)
      t.is(err.code, 'ELOGFILE')
      t.is(err.reason, 'ELOGFILEUNSAFE')
      t.is(err.path, dangling)
    }
  }
  await refusedStart(t, dir, link, /symbolic link/)
  await refusedStart(t, dir, hard, /hard links/)
  await refusedStart(t, dir, fifo, /a FIFO/)
  t.is(fs.readFileSync(target, 'utf8'), 'untouched\n')
  t.false(fs.existsSync(nowhere), 'nothing was created where the dangling link points')

  // /dev/null, a character device, is fine.
  const ok = await daemonkit.spawnDaemon('/bin/true', [], { stdout: '/dev/null' })
  t.true(ok.pid > 1)
})

h.rootTest('as root: links planted in a sticky world-writable directory, or a file another user put there, are refused', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const pub = path.join(dir, 'pub')
  fs.mkdirSync(pub)
  fs.chmodSync(pub, 0o1777)
  const root = secret(dir)
  const link = path.join(pub, 'app.log')
  fs.symlinkSync(root, link)
  const dangling = path.join(pub, 'dangling.log')
  const created = path.join(dir, 'created-by-root')
  fs.symlinkSync(created, dangling)
  const foreign = path.join(pub, 'foreign.log')
  fs.writeFileSync(foreign, '')
  fs.chownSync(foreign, 65534, 65534)

  await refusedStart(t, dir, link, /symbolic link/)
  await refusedStart(t, dir, dangling, /symbolic link/)
  await refusedStart(t, dir, foreign, /owned by uid 65534/)
  for (const log of [link, dangling, foreign]) {
    const r = await refusedDaemonize(t, dir, { pidFile: path.join(dir, 'd.pid'), stderr: log })
    t.not(r.code, 0)
    t.true(r.stderr.includes(`cannot open the log file ${log}`), r.stderr)
  }
  t.is(fs.readFileSync(root, 'utf8'), 'root only\n')
  t.false(fs.existsSync(created), 'root created nothing where the dangling link points')
  t.is(fs.readFileSync(foreign, 'utf8'), '')

  // A directory others may write to without the sticky bit is refused outright.
  const open = path.join(dir, 'open')
  fs.mkdirSync(open)
  fs.chmodSync(open, 0o777)
  await refusedStart(t, dir, path.join(open, 'app.log'), /can be changed by users other than root/)
  t.false(fs.existsSync(path.join(open, 'app.log')))
})

h.needs('root', 'setpriv')('--user: a log directory the service user owns is written as that user, so a symlink swapped in before SIGHUP gains nothing', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const root = secret(dir)
  const logdir = path.join(dir, 'logdir')
  fs.mkdirSync(logdir)
  fs.chownSync(logdir, 65534, 65534)
  const log = path.join(logdir, 'app.log')
  const s = await start(t, dir, ['-p', path.join(dir, 'u.pid'), '-l', log, '-u', 'nobody', '--', ...ticker(dir)])
  await h.waitFor(() => h.readText(log).includes('tick 1\n'), { what: 'the first ticks' })
  t.is(fs.statSync(log).uid, 65534, 'created by the service user, in its own directory')

  // A rotation as logrotate does it still works.
  fs.renameSync(log, `${log}.0`)
  t.is((await cli(['signal', 'HUP', '-p', path.join(dir, 'u.pid')])).code, 0)
  await h.waitFor(() => /tick \d+\n/.test(h.readText(log)), { what: 'ticks in the new file' })

  // nobody swaps the log for a link to a root-only file, and waits for the next rotation.
  asNobody(t, `mv ${log} ${log}.1 && ln -s ${root} ${log}`)
  t.is((await cli(['signal', 'HUP', '-p', path.join(dir, 'u.pid')])).code, 0)
  await h.waitFor(() => h.readText(`${log}.1`).includes(`cannot reopen ${log}`), { what: 'the refusal, in the old file' })
  const after = h.readText(`${log}.1`).length
  await h.waitFor(() => h.readText(`${log}.1`).length > after + 20, { what: 'output to go on into the old file' })
  t.is(fs.readFileSync(root, 'utf8'), 'root only\n', 'nothing reached the root-only file')
  t.true(fs.lstatSync(log).isSymbolicLink())
  t.true(h.isRunning(s.pid) && h.isRunning(s.commandPid))

  // spawnDaemon() without a supervisor opens the file in the launching process, the same way.
  const direct = path.join(logdir, 'direct.log')
  const d = await daemonkit.spawnDaemon('/usr/bin/python3', ['-c', 'print("hello", flush=True)', dir], { stdout: direct, user: 'nobody', supervise: false })
  h.cleanupPid(t, d.pid, dir)
  await h.waitFor(() => h.readText(direct) === 'hello\n', { what: 'the direct command\'s output' })
  t.is(fs.statSync(direct).uid, 65534)
  const err = await t.throwsAsync(daemonkit.spawnDaemon('/usr/bin/python3', ['-c', 'pass', dir], { stdout: log, user: 'nobody', supervise: false }))
  t.is(err.code, 'ELOGFILE')
})

h.needs('root', 'setpriv')('--user: a directory on the log\'s path swapped for a link to a root-only directory makes root create nothing there', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const logdir = path.join(dir, 'logdir')
  fs.mkdirSync(path.join(logdir, 'sub'), { recursive: true })
  fs.chownSync(logdir, 65534, 65534)
  fs.chownSync(path.join(logdir, 'sub'), 65534, 65534)
  const rootOnly = path.join(dir, 'root-only')
  fs.mkdirSync(rootOnly, { mode: 0o700 })
  const log = path.join(logdir, 'sub', 'app.log')
  await start(t, dir, ['-p', path.join(dir, 'u.pid'), '-l', log, '-u', 'nobody', '--', ...ticker(dir)])
  await h.waitFor(() => h.readText(log).includes('tick 1\n'), { what: 'the first ticks' })

  asNobody(t, `mv ${logdir}/sub ${logdir}/old && ln -s ${rootOnly} ${logdir}/sub`)
  t.is((await cli(['signal', 'HUP', '-p', path.join(dir, 'u.pid')])).code, 0)
  const old = path.join(logdir, 'old', 'app.log')
  await h.waitFor(() => h.readText(old).includes(`cannot reopen ${log}`), { what: 'the refusal, in the old file' })
  t.regex(h.readText(old), /Permission denied/)
  t.deepEqual(fs.readdirSync(rootOnly), [], 'root created nothing in the root-only directory')

  // A start through the swapped path fails the same way, naming the file.
  const again = path.join(dir, 'again')
  fs.mkdirSync(again)
  await refusedStart(t, again, log, /Permission denied/, ['-u', 'nobody'])
  t.deepEqual(fs.readdirSync(rootOnly), [])
})

h.needs('root', 'mount', 'umount')('a full disk: lines stay whole, and one notice says how many were lost', async (t) => {
  const dir = h.tempDir(t)
  const mnt = path.join(dir, 'mnt')
  fs.mkdirSync(mnt)
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { encoding: 'utf8' })
  if (mounted.status !== 0) return t.log(`cannot mount a tmpfs here (${mounted.stderr.trim()}): skipped`) || t.pass()
  t.teardown(() => spawnSync('umount', ['-l', mnt]))

  // Fill it, then free a little, so that writes stop somewhere in the middle of a line.
  const fill = path.join(mnt, 'fill')
  const fd = fs.openSync(fill, 'w')
  const block = Buffer.alloc(4096, 'f')
  try {
    for (;;) fs.writeSync(fd, block)
  } catch (err) {
    t.is(err.code, 'ENOSPC')
  }
  fs.ftruncateSync(fd, Math.max(0, fs.fstatSync(fd).size - 6000))
  fs.closeSync(fd)

  const log = path.join(mnt, 'app.log')
  const [first, last] = [3000, 4000]
  await start(t, dir, ['-p', path.join(dir, 'f.pid'), '-l', log, '--', '/usr/bin/python3', LINES, dir, String(first), String(last)])
  await h.waitFor(() => fs.existsSync(path.join(dir, 'phase1')), { what: 'phase 1 (the disk fills up)' })
  fs.unlinkSync(fill)
  fs.writeFileSync(path.join(dir, 'go'), '')
  const lastLine = `line ${String(last).padStart(6, '0')} ${'x'.repeat(20)}\n`
  await h.waitFor(() => h.readText(log).endsWith(lastLine), { what: 'the last line' })

  const lines = h.readText(log).split('\n').slice(0, -1)
  const notices = []
  const numbers = []
  for (const [i, line] of lines.entries()) {
    const m = /^line (\d{6}) x{20}$/.exec(line)
    if (m) {
      numbers.push(Number(m[1]))
      continue
    }
    const n = /^daemonkit-supervise: (\d+) lines \((\d+) bytes\) of output were lost: (.*)$/.exec(line)
    t.truthy(n, `line ${i + 1} is neither whole nor a notice: ${JSON.stringify(line)}`)
    if (n) notices.push({ at: numbers.length, lines: Number(n[1]), bytes: Number(n[2]), why: n[3] })
  }
  t.is(notices.length, 1, 'exactly one notice')
  t.true(numbers.every((n, i) => i === 0 || n > numbers[i - 1]), 'lines in order, none repeated')
  const lost = last - numbers.length
  t.true(lost > 0, 'lines were lost')
  const [notice] = notices
  t.is(notice.lines, lost, 'the notice counts exactly the missing lines')
  t.is(notice.bytes, lost * lastLine.length, 'and their bytes')
  t.regex(notice.why, /space/i)
  // The notice stands where the gap is.
  t.is(numbers[notice.at] - numbers[notice.at - 1] - 1, lost)
})

// ---------------------------------------------------------------- links root made, FIFOs with a reader

test('run -o /dev/stdout and -e /dev/stderr write to the caller\'s own stdout and stderr', async (t) => {
  const st = fs.lstatSync('/dev/stdout', { throwIfNoEntry: false })
  if (!st || !st.isSymbolicLink() || st.uid !== 0) return t.pass('/dev/stdout is not root\'s symbolic link here: skipped')
  // Through sh, so that stdout and stderr are real pipes (Node gives children sockets).
  const q = (s) => `'${s.replace(/'/g, "'\\''")}'`
  const script = `${q(process.execPath)} ${q(CLI)} run -o /dev/stdout -e /dev/stderr -- sh -c 'echo out; echo err >&2' 2>&1 | cat`
  const r = await h.run('sh', ['-c', script])
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /^out$/m)
  t.regex(r.stdout, /^err$/m)
})

test('a FIFO with a reader is a log; a FIFO nobody reads is refused with a clear message', async (t) => {
  const dir = h.tempDir(t)
  const fifo = path.join(dir, 'fifo.log')
  execFileSync('mkfifo', [fifo])
  let r = await cli(['run', '-o', fifo, '--', 'echo', 'hi'])
  t.is(r.code, 1, r.stdout)
  t.regex(r.stderr, /a FIFO that nobody reads/)
  const reader = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => reader.exitCode === null && reader.kill('SIGKILL'))
  let got = ''
  reader.stdout.on('data', (d) => (got += d))
  const readerDone = new Promise((resolve) => reader.on('close', resolve))
  // cat opens the FIFO (blocking until a writer comes): retry until it is there.
  await h.waitFor(async () => {
    r = await cli(['run', '-o', fifo, '--', 'echo', 'hi'])
    return r.code === 0
  }, { timeout: 15_000, what: 'a run writing into the FIFO' })
  await readerDone
  t.regex(got, /^hi$/m)
})

h.needs('root', 'setpriv')('a dangling symlink another user planted in a sticky directory is refused as a symlink (exit 1)', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o1777)
  const log = path.join(dir, 'app.log')
  asNobody(t, `ln -s ${path.join(dir, 'nowhere')} ${log}`)
  // The default on most systems (the kernel then answers EACCES, not ELOOP); restored after.
  const sysctl = '/proc/sys/fs/protected_symlinks'
  const before = fs.readFileSync(sysctl, 'utf8').trim()
  fs.writeFileSync(sysctl, '1')
  t.teardown(() => fs.writeFileSync(sysctl, before))
  const r = await cli(['run', '-o', log, '--', 'echo', 'hi'])
  t.is(r.code, 1, r.stderr)
  t.regex(r.stderr, /symbolic link/)
  t.false(fs.existsSync(path.join(dir, 'nowhere')))
})
