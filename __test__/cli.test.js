'use strict'
const test = require('ava')
const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync, execFileSync } = require('node:child_process')
const h = require('./helpers')
const daemonkit = require('..')

const { CLI, cli, sleeper } = h
const SIGNALS = path.join(h.FIXTURES, 'signals.py')
const LISTENER = path.join(h.FIXTURES, 'notify-listener.py')

function lines(file) {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []
}

/** Starts a supervised command through the CLI; registers both pids for teardown. */
function start(t, dir, args) {
  // --settle 0: several tests start commands that exit at once on purpose.
  return h.startJson(t, dir, [...(args.includes('--settle') ? [] : ['--settle', '0']), ...args])
}

test('--help documents every option; --version prints the package version', async (t) => {
  const help = await cli(['--help'])
  t.is(help.code, 0)
  const source = fs.readFileSync(path.join(__dirname, '..', 'src', 'cli-args.ts'), 'utf8')
  const flags = [...source.matchAll(/'(--[a-z-]+)': '/g)].map((m) => m[1])
  t.true(flags.length >= 20)
  for (const flag of [...flags, '--json', '--no-supervise', '--help', '--version']) t.true(help.stdout.includes(flag), `${flag} missing from --help`)
  for (const command of ['start', 'run', 'stop', 'restart', 'status', 'signal']) t.regex(help.stdout, new RegExp(`^  ${command} `, 'm'))

  // Every option of spawnDaemon() and stop(), read from the published types, has a flag.
  const flagOf = {
    pidFile: '--pidfile', cwd: '--cwd', umask: '--umask', stdout: '--stdout', stderr: '--stderr', env: '--env',
    readyTimeout: '--ready-timeout', user: '--user', group: '--group', chroot: '--chroot', supervise: '--no-supervise',
    restart: '--restart', restartDelay: '--restart-delay', restartDelayMax: '--restart-delay-max',
    restartBurst: '--restart-burst', restartWindow: '--restart-window', notify: '--notify', forwardHup: '--forward-hup',
    waitReady: '--wait-ready', listen: '--listen', settle: '--settle', stopTimeout: '--stop-timeout', name: '--name', signal: '--signal', timeout: '--timeout', killSignal: '--kill-signal', killTimeout: '--kill-timeout',
  }
  const dts = (file) => fs.readFileSync(path.join(__dirname, '..', 'dist', file), 'utf8')
  const members = (text, name) => {
    const body = text.slice(text.indexOf(`export interface ${name}`)).split('\n}')[0]
    const picked = [...(body.split('{')[0].match(/'[A-Za-z]+'/g) ?? [])].map((k) => k.slice(1, -1))
    return [...picked, ...[...body.matchAll(/^ {4}([A-Za-z]+)\?:/gm)].map((m) => m[1])]
  }
  const apiOptions = [...members(dts('spawn.d.ts'), 'SpawnDaemonOptions'), ...members(dts('manage.d.ts'), 'StopOptions')]
  t.true(apiOptions.length >= 20, apiOptions.join(' '))
  t.deepEqual(apiOptions.filter((o) => !(o in flagOf)), [], 'API options without a flag')
  for (const o of apiOptions) t.true(help.stdout.includes(flagOf[o]), `${flagOf[o]} (${o}) missing from --help`)
  const version = await cli(['--version'])
  t.is(version.stdout, `daemonkit ${require('../package.json').version}\n`)
  const bad = await cli(['start', '--bogus'])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /unknown option --bogus/)
})

test('start: the supervisor holds the lock; status reports both pids; the command is detached', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'p.pid')
  const s = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir)])
  t.is(h.readPid(pidFile), s.pid)
  t.true(h.isLocked(pidFile))
  t.is(Number(h.procStatus(s.commandPid).PPid), s.pid, 'the command is the supervisor\'s child')
  const sup = h.procStat(s.pid)
  t.is(sup.ttyNr, 0)
  t.not(sup.session, s.pid)
  t.is(h.procStat(s.commandPid).session, sup.session)
  t.is(fs.readlinkSync(`/proc/${s.commandPid}/cwd`), process.cwd())
  // Python opens and closes a few files while it starts; wait until it sleeps.
  const files = () => Object.values(h.procFds(s.commandPid)).filter((x) => x.startsWith('/'))
  const settled = await h.waitFor(() => {
    const open = files()
    return open.length === 3 && open
  }, { what: 'the command to settle' })
  t.deepEqual(settled, ['/dev/null', '/dev/null', '/dev/null'])
  const status = await cli(['status', '-p', pidFile])
  t.is(status.code, 0)
  t.is(status.stdout, `running (pid ${s.pid}, command pid ${s.commandPid})\n`)
  t.deepEqual(await daemonkit.status(pidFile), { state: 'running', pid: s.pid, commandPid: s.commandPid })
  const again = await cli(['start', '-p', pidFile, '--', ...sleeper(dir)])
  t.is(again.code, 0)
  t.is(again.stdout, `already running (pid ${s.pid})\n`)
  const stop = await cli(['stop', '-p', pidFile])
  t.is(stop.stdout, `stopped (pid ${s.pid})\n`)
  t.false(h.isRunning(s.pid))
  await h.waitFor(() => !h.isRunning(s.commandPid), { what: 'the command to end' })
  t.false(fs.existsSync(pidFile))
  t.is((await cli(['status', '-p', pidFile])).code, 3)
})

test('restart, status and stop with --json; stop escalates to SIGKILL after --timeout; bad flag values are usage errors', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'r.pid')
  const first = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir)])
  const restarted = await cli(['restart', '--json', '-p', pidFile, '--', ...sleeper(dir)])
  t.is(restarted.code, 0, restarted.stderr)
  const second = JSON.parse(restarted.stdout)
  h.cleanupPid(t, second.pid, dir)
  h.cleanupPid(t, second.commandPid, dir)
  t.like(second, { started: true })
  t.not(second.pid, first.pid)
  t.false(h.isRunning(first.pid))
  t.false(h.isRunning(first.commandPid))
  let r = await cli(['status', '--json', '-p', pidFile])
  t.is(r.code, 0)
  t.deepEqual(JSON.parse(r.stdout), { state: 'running', pid: second.pid, commandPid: second.commandPid })
  r = await cli(['stop', '--json', '-p', pidFile])
  t.is(r.code, 0)
  t.like(JSON.parse(r.stdout), { stopped: true, pid: second.pid, signal: 'SIGTERM', forced: false })
  r = await cli(['status', '--json', '-p', pidFile])
  t.is(r.code, 3)
  t.deepEqual(JSON.parse(r.stdout), { state: 'stopped' })
  r = await cli(['stop', '--json', '-p', pidFile])
  t.deepEqual(JSON.parse(r.stdout), { stopped: false, reason: 'not-running' })

  // A command that ignores SIGTERM (the supervisor passes it on and waits for it): SIGKILL
  // after --timeout ends the supervisor, and the command with it (parent-death signal).
  const stubborn = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir, '\nimport signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)')])
  await h.waitFor(() => h.ignoresSignal(stubborn.commandPid, 15), { what: 'the command to ignore SIGTERM' })
  r = await cli(['stop', '--json', '-p', pidFile, '-t', '300ms', '--kill-timeout', '20s'])
  t.is(r.code, 0, r.stderr)
  t.like(JSON.parse(r.stdout), { stopped: true, pid: stubborn.pid, signal: 'SIGKILL', forced: true })
  await h.waitFor(() => !h.isRunning(stubborn.commandPid), { what: 'the command to die with its supervisor' })

  // An escalation signal that does not end it (USR2, passed on and ignored): stop gives up after
  // --timeout plus --kill-timeout (1000 ms here, the default would make it 5300).
  const deaf = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir, '\nimport signal\nfor s in (signal.SIGTERM, signal.SIGUSR2): signal.signal(s, signal.SIG_IGN)')])
  await h.waitFor(() => h.ignoresSignal(deaf.commandPid, 15) && h.ignoresSignal(deaf.commandPid, 12), { what: 'the command to ignore TERM and USR2' })
  r = await cli(['stop', '-p', pidFile, '-t', '300ms', '--kill-signal', 'USR2', '--kill-timeout', '700ms'])
  t.is(r.code, 1)
  const waited = Number(/still running after (\d+) ms/.exec(r.stderr)?.[1])
  t.true(waited >= 1000 && waited < 5300, `gave up after ${waited} ms: ${r.stderr}`)
  t.true(h.isRunning(deaf.pid))
  t.is((await cli(['stop', '-p', pidFile, '--kill-timeout', 'soon'])).code, 2)
  t.is((await cli(['start', '-p', pidFile, '--notify', 'maybe', '--', 'true'])).code, 2)
})

test('a command that closes all its descriptors, or leaves children behind, does not confuse running/stopped', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'closer.pid')
  const closer = await start(t, dir, ['-p', pidFile, '--', ...sleeper(dir, '\nimport os; os.closerange(0, 4096)')])
  await h.waitFor(() => Object.keys(h.procFds(closer.commandPid)).length === 0, { what: 'the command to close its descriptors' })
  t.true(h.isRunning(closer.commandPid))
  t.deepEqual(Object.keys(h.procFds(closer.commandPid)), [], 'the command closed everything')
  t.true(h.isLocked(pidFile))
  t.is((await cli(['status', '-p', pidFile])).code, 0)

  const leaver = path.join(dir, 'leaver.pid')
  const orphanFile = path.join(dir, 'orphan.pid')
  const script = `python3 -c 'import time; time.sleep(300)' ${dir} & echo $! > ${orphanFile}; exit 0`
  const s = await start(t, dir, ['-p', leaver, '--', 'sh', '-c', script])
  const orphan = Number((await h.waitFor(() => fs.existsSync(orphanFile) && fs.readFileSync(orphanFile, 'utf8').trim(), { what: 'the orphan pid' })))
  h.cleanupPid(t, orphan, dir)
  await h.waitFor(() => !h.isRunning(s.pid), { what: 'the supervisor to end with its command' })
  t.false(h.isRunning(orphan), 'the command\'s leftover child was ended with it')
  t.deepEqual(await daemonkit.status(leaver), { state: 'stopped' })
  t.false(fs.existsSync(leaver))
})

test('the supervisor forwards TERM, INT, QUIT, HUP, USR1 and USR2 to the command', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 's.pid')
  const log = path.join(dir, 'signals.log')
  const s = await start(t, dir, ['-p', pidFile, '--', 'python3', SIGNALS, log])
  await h.waitFor(() => lines(log).length > 0, { what: 'the command to start' })
  for (const sig of ['HUP', 'USR1', 'USR2', 'INT', 'QUIT']) {
    const r = await cli(['signal', sig, '-p', pidFile])
    t.is(r.stdout, `sent SIG${sig} to pid ${s.pid}\n`)
    await h.waitFor(() => lines(log).includes(`SIG${sig}`), { what: `SIG${sig} to arrive` })
  }
  t.true(h.isRunning(s.commandPid))
  await cli(['stop', '-p', pidFile])
  t.deepEqual(lines(log), [`ready ${s.commandPid}`, 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGINT', 'SIGQUIT', 'SIGTERM'])
  t.is((await cli(['signal', 'HUP', '-p', pidFile])).code, 7)
})

test('killing the supervisor with SIGKILL takes the command with it, also after a user drop (as root)', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const asRoot = process.getuid() === 0
  for (const extra of asRoot ? [[], ['-u', 'nobody']] : [[]]) {
    const s = await start(t, dir, ['-p', path.join(dir, `k${extra.length}.pid`), ...extra, '--', ...sleeper(dir)])
    t.true(h.isRunning(s.commandPid))
    process.kill(s.pid, 'SIGKILL')
    await h.waitFor(() => !h.isRunning(s.commandPid), { what: `the command (${extra.join(' ') || 'root'}) to die of the parent-death signal` })
  }
  // The supervisor's guard ends what the command left and then exits too, a moment later.
  await h.waitFor(() => h.processesMentioning(dir).length === 0, { what: 'the guard to finish' })
  t.deepEqual(h.processesMentioning(dir), [])
})

test('restart on-failure backs off exponentially up to --restart-delay-max and gives up after the burst limit', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'r.pid')
  const runs = path.join(dir, 'runs')
  const log = path.join(dir, 'log')
  const s = await start(t, dir, ['-p', pidFile, '-l', log, '-r', 'on-failure', '--restart-delay', '50ms', '--restart-delay-max', '150ms',
    '--restart-burst', '4', '--', 'sh', '-c', `date +%s%N >> ${runs}; echo failing; exit 3`])
  await h.waitFor(() => !h.isRunning(s.pid), { timeout: 15_000, what: 'the supervisor to give up' })
  const starts = lines(runs).map((ns) => Number(BigInt(ns) / 1000n) / 1000)
  t.is(starts.length, 5, 'the first run and four restarts')
  const gaps = starts.slice(1).map((ms, i) => ms - starts[i])
  t.log(`gaps between runs: ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`)
  for (const [i, delay] of [50, 100, 150, 150].entries()) t.true(gaps[i] >= delay, `gap ${i} (${gaps[i]} ms) is at least ${delay} ms`)
  const text = fs.readFileSync(log, 'utf8')
  const delays = [...text.matchAll(/restarting in (\d+) ms/g)].map((m) => Number(m[1]))
  t.deepEqual(delays, [50, 100, 150, 150], 'doubled each time, capped at 150 ms')
  t.regex(text, /4 restarts within 60000 ms, giving up/)
  t.is(text.match(/^failing$/gm).length, 5, 'the command\'s own output is in the log')
  t.false(fs.existsSync(pidFile))
})

test('restart always restarts a command that exits 0; on-failure does not', async (t) => {
  const dir = h.tempDir(t)
  const runsAlways = path.join(dir, 'always')
  const a = await start(t, dir, ['-p', path.join(dir, 'a.pid'), '-r', 'always', '--restart-delay', '20ms', '--restart-burst', '2',
    '--', 'sh', '-c', `echo run >> ${runsAlways}`])
  await h.waitFor(() => !h.isRunning(a.pid), { timeout: 15_000, what: 'the supervisor to give up' })
  t.is(lines(runsAlways).length, 3)
  const runsOnFailure = path.join(dir, 'onfailure')
  const b = await start(t, dir, ['-p', path.join(dir, 'b.pid'), '-r', 'on-failure', '--', 'sh', '-c', `echo run >> ${runsOnFailure}`])
  await h.waitFor(() => !h.isRunning(b.pid), { what: 'the supervisor to end' })
  t.is(lines(runsOnFailure).length, 1)
})

test('exec failures reject with the errno and the path, supervised or not, and leave nothing', async (t) => {
  const dir = h.tempDir(t)
  const notExecutable = path.join(dir, 'script.sh')
  fs.writeFileSync(notExecutable, '#!/bin/sh\necho hi\n', { mode: 0o644 })
  const pidFile = path.join(dir, 'x.pid')
  const cases = [
    ['/nonexistent/program', {}, 'ENOENT', /exec failed: No such file or directory/],
    [notExecutable, {}, 'EACCES', /exec failed: Permission denied/],
    ['no-such-command-anywhere', {}, 'ENOENT', /command not found on PATH/],
    ['/bin/true', { cwd: path.join(dir, 'missing') }, 'ENOENT', new RegExp(`chdir to ${path.join(dir, 'missing')} failed: No such file or directory`)],
    ['/bin/true', { cwd: notExecutable }, 'ENOTDIR', new RegExp(`chdir to ${notExecutable} failed: Not a directory`)],
  ]
  for (const [command, extra, reason, message] of cases) {
    for (const supervise of [false, true]) {
      const options = { ...extra, supervise, ...(supervise ? { pidFile } : {}) }
      const err = await t.throwsAsync(daemonkit.spawnDaemon(command, [], options))
      t.is(err.code, 'EDAEMONLAUNCH')
      t.is(err.reason, reason, `${command} supervised=${supervise}`)
      t.is(err.path, command)
      t.regex(err.message, message)
      t.log(`${supervise ? 'supervised' : 'direct'}: ${err.message}`)
      t.false(fs.existsSync(pidFile))
    }
  }
  await h.settle(() => h.processesMentioning(dir).length === 0, { timeout: 15_000 })
  t.deepEqual(h.processesMentioning(dir), [], 'no supervisor or failed process is left')
  const r = await cli(['start', '-p', pidFile, '--', '/nonexistent/program'])
  t.is(r.code, 1)
  t.regex(r.stderr, /cannot start \/nonexistent\/program: exec failed: No such file or directory/)

  // A missing cwd is found before the log files are created.
  const log = path.join(dir, 'never.log')
  for (const supervise of [false, true]) {
    const err = await t.throwsAsync(daemonkit.spawnDaemon('/bin/true', [], { cwd: path.join(dir, 'typo'), stdout: log, supervise, ...(supervise ? { pidFile } : {}) }))
    t.like(err, { code: 'EDAEMONLAUNCH', reason: 'ENOENT' })
  }
  const run = await cli(['run', '-p', pidFile, '-l', log, '-C', path.join(dir, 'typo'), '--', '/bin/true'])
  t.is(run.code, 1)
  t.regex(run.stderr, /chdir to .*typo failed: No such file or directory/)
  t.false(fs.existsSync(log), 'no log file was created')
  t.false(fs.existsSync(pidFile))
  // Arguments the supervisor refuses after the CLI handed it the pidfile: it removes the file.
  const badUser = await cli(['run', '-p', pidFile, '-u', 'no-such-user-here', '--', '/bin/true'])
  t.not(badUser.code, 0)
  t.regex(badUser.stderr, /no-such-user-here/)
  t.false(fs.existsSync(pidFile), 'no pidfile is left behind')
})

test('spawnDaemon without supervisor: the command itself is the daemon', async (t) => {
  const dir = h.tempDir(t)
  const out = path.join(dir, 'out.log')
  const r = await daemonkit.spawnDaemon('python3', ['-c', 'import os, time; print(os.getcwd(), flush=True); time.sleep(300)', dir], { stdout: out, cwd: dir, umask: 0o077 })
  h.cleanupPid(t, r.pid, dir)
  t.is(r.pid, r.commandPid)
  const st = h.procStat(r.pid)
  t.is(st.ttyNr, 0)
  t.not(st.session, r.pid)
  t.is(h.procStatus(r.pid).Umask, '0077')
  await h.waitFor(() => fs.existsSync(out) && fs.readFileSync(out, 'utf8') === `${dir}\n`, { what: 'the output' })
  t.is(h.procFds(r.pid)['1'], out)
})

h.rootTest('user drop: Uid, Gid and Groups from /proc; root cannot be regained; logs and pidfile stay root\'s', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const pidFile = path.join(dir, 'u.pid')
  const log = path.join(dir, 'u.log')
  const code = 'import os, sys, time\ntry:\n    os.setuid(0)\n    print("regained root", flush=True)\nexcept PermissionError as e:\n    print("setuid(0) refused:", e, flush=True)\nwhile True: time.sleep(1)'
  // /usr/bin/python3: the user's python may live under /root, which nobody cannot read.
  const s = await start(t, dir, ['-p', pidFile, '-l', log, '-u', 'nobody', '--', '/usr/bin/python3', '-c', code, dir])
  const status = h.procStatus(s.commandPid)
  const uid = execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim()
  const gid = execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim()
  const groups = execFileSync('id', ['-G', 'nobody'], { encoding: 'utf8' }).trim().split(' ').sort()
  t.is(status.Uid, [uid, uid, uid, uid].join('\t'))
  t.is(status.Gid, [gid, gid, gid, gid].join('\t'))
  t.deepEqual(status.Groups.split(' ').filter(Boolean).sort(), groups)
  t.is(h.procStatus(s.pid).Uid.split('\t')[0], '0', 'the supervisor keeps root to reopen logs')
  await h.waitFor(() => fs.existsSync(log) && /setuid\(0\) refused/.test(fs.readFileSync(log, 'utf8')), { what: 'the setuid probe' })
  t.notRegex(fs.readFileSync(log, 'utf8'), /regained root/)
  t.is(fs.statSync(log).uid, 0)
  t.is(fs.statSync(log).mode & 0o777, 0o640)
  t.is(fs.statSync(pidFile).uid, 0)

  // Supplementary groups, with the user of the group database who has the most of them
  // (postgres here, runner on GitHub's machines); nobody has only its own.
  const users = execFileSync('getent', ['passwd'], { encoding: 'utf8' }).trim().split('\n').map((l) => l.split(':'))
  const candidates = users.filter(([, , uidText]) => Number(uidText) > 0).map(([name]) => ({
    name,
    groups: execFileSync('id', ['-G', name], { encoding: 'utf8' }).trim().split(' ').sort(),
  }))
  const many = candidates.sort((a, b) => b.groups.length - a.groups.length)[0]
  t.log(`${many.name}: groups ${many.groups.join(' ')}`)
  if (many.groups.length > 1) {
    const m = await start(t, dir, ['-p', path.join(dir, 'm.pid'), '-u', many.name, '--', ...sleeper(dir)])
    t.deepEqual(h.procStatus(m.commandPid).Groups.split(' ').filter(Boolean).sort(), many.groups)
    t.is(h.procStatus(m.commandPid).Uid.split('\t')[0], execFileSync('id', ['-u', many.name], { encoding: 'utf8' }).trim())
  }
})

h.needs('root', 'strace')('an explicit group replaces the user\'s own in the group list; the direct (unsupervised) drop uses raw syscalls', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const daemonGid = execFileSync('getent', ['group', 'daemon'], { encoding: 'utf8' }).split(':')[2]
  const s = await start(t, dir, ['-p', path.join(dir, 'g.pid'), '-u', 'nobody', '-g', 'daemon', '--', ...sleeper(dir)])
  const status = h.procStatus(s.commandPid)
  t.is(status.Gid.split('\t')[0], daemonGid)
  t.deepEqual(status.Groups.split(' ').filter(Boolean), [daemonGid], 'nobody\'s own group (65534) is not kept')

  // From the multi-threaded Node process itself (no supervisor): the credentials are set with
  // raw system calls, so the child never signals the launcher's threads (glibc's setxid broadcast).
  const trace = path.join(dir, 'trace')
  const code = `require(${JSON.stringify(path.resolve(__dirname, '..'))}).spawnDaemon('/usr/bin/python3', ['-c', 'import time; time.sleep(300)', ${JSON.stringify(dir)}], { user: 'nobody', supervise: false }).then((r) => console.log(JSON.stringify(r)))`
  const r = await h.run('strace', ['-f', '-qq', '-b', 'execve', '-o', trace, '-e', 'trace=tgkill,setresuid,setresgid,setgroups', process.execPath, '-e', code])
  t.is(r.code, 0, r.stderr)
  const { pid } = JSON.parse(r.stdout)
  h.cleanupPid(t, pid, dir)
  t.is(h.procStatus(pid).Uid, '65534\t65534\t65534\t65534')
  const traced = fs.readFileSync(trace, 'utf8')
  t.regex(traced, /setresuid\(65534, 65534, 65534\)\s+= 0/)
  t.notRegex(traced, /tgkill\(/)
})

h.needs('root', 'gcc')('chroot: the command runs inside the new root, in cwd relative to it; the log is written outside', async (t) => {
  const dir = h.tempDir(t)
  const jail = path.join(dir, 'jail')
  fs.mkdirSync(path.join(jail, 'data'), { recursive: true })
  // A static binary, since the jail has no C library.
  const cc = await h.run('gcc', ['-static', '-O1', '-o', path.join(jail, 'whereami'), path.join(h.FIXTURES, 'whereami.c')])
  t.is(cc.code, 0, cc.stderr)
  const log = path.join(dir, 'jail.log')
  const s = await start(t, dir, ['-p', path.join(dir, 'j.pid'), '-l', log, '--chroot', jail, '-C', '/data', '--', '/whereami'])
  await h.waitFor(() => !h.isRunning(s.pid), { what: 'the supervisor to end with its command' })
  t.regex(fs.readFileSync(log, 'utf8'), /^cwd=\/data root-has-etc=0$/m)
})

h.rootTest('root refuses a pidfile in a world-writable non-sticky directory, or owned by another user', async (t) => {
  const dir = h.tempDir(t)
  const open = path.join(dir, 'open')
  fs.mkdirSync(open)
  fs.chmodSync(open, 0o777)
  let err = await t.throwsAsync(daemonkit.spawnDaemon('/bin/true', [], { pidFile: path.join(open, 'x.pid') }))
  t.is(err.code, 'EPIDFILE')
  t.regex(err.message, /writable by others and not sticky/)
  t.deepEqual(fs.readdirSync(open), [])
  const foreign = path.join(dir, 'foreign.pid')
  fs.writeFileSync(foreign, '')
  fs.chownSync(foreign, 65534, 65534)
  err = await t.throwsAsync(daemonkit.spawnDaemon('/bin/true', [], { pidFile: foreign }))
  t.regex(err.message, /owned by uid 65534/)
  const sticky = path.join(dir, 'sticky')
  fs.mkdirSync(sticky)
  fs.chmodSync(sticky, 0o1777)
  const s = await start(t, dir, ['-p', path.join(sticky, 'ok.pid'), '--', ...sleeper(dir)])
  t.true(h.isRunning(s.pid))
})

h.needs('start-stop-daemon')('Debian start-stop-daemon: --status 0 while running, 3 after; --stop stops it cleanly', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'ssd.pid')
  const log = path.join(dir, 'signals.log')
  const s = await start(t, dir, ['-p', pidFile, '--', 'python3', SIGNALS, log])
  await h.waitFor(() => lines(log).length > 0, { what: 'the command to start' })
  t.is(spawnSync('start-stop-daemon', ['--status', '--pidfile', pidFile]).status, 0)
  const stop = await h.run('start-stop-daemon', ['--stop', '--pidfile', pidFile, '--retry', 'TERM/10/KILL/5'])
  t.is(stop.code, 0, stop.stderr)
  t.false(h.isRunning(s.pid))
  t.is(lines(log).at(-1), 'SIGTERM', 'the command got TERM, not KILL')
  t.false(fs.existsSync(pidFile))
  t.is(spawnSync('start-stop-daemon', ['--status', '--pidfile', pidFile]).status, 3)

  // A Node daemon made by daemonize() too.
  const nodePid = path.join(dir, 'node.pid')
  const r = await h.launch({ options: { pidFile: nodePid } })
  t.is(r.code, 0)
  const pid = h.readPid(nodePid)
  h.cleanupPid(t, pid, dir)
  t.is(spawnSync('start-stop-daemon', ['--status', '--pidfile', nodePid]).status, 0)
  t.is((await h.run('start-stop-daemon', ['--stop', '--pidfile', nodePid, '--retry', 'TERM/10'])).code, 0)
  t.false(fs.existsSync(nodePid), 'SIGTERM made the daemon remove its pidfile')
  t.is(spawnSync('start-stop-daemon', ['--status', '--pidfile', nodePid]).status, 3)
})

h.needs('flock', 'pkill')('util-linux: flock -n fails while it runs; pkill -F reaches the right process', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'pk.pid')
  const log = path.join(dir, 'signals.log')
  const s = await start(t, dir, ['-p', pidFile, '--', 'python3', SIGNALS, log])
  await h.waitFor(() => lines(log).length > 0, { what: 'the command to start' })
  t.not(spawnSync('flock', ['-n', pidFile, 'true']).status, 0)
  t.is(spawnSync('pkill', ['-F', pidFile]).status, 0)
  await h.waitFor(() => !h.isRunning(s.pid), { what: 'the supervisor to stop' })
  t.is(lines(log).at(-1), 'SIGTERM')
  t.false(fs.existsSync(pidFile))
  t.is(spawnSync('flock', ['-n', pidFile, 'true']).status, 0)
})

h.needs('logrotate')('a real logrotate run with a postrotate that signals HUP: no line lost, new lines in the new file', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'lr.pid')
  const log = path.join(dir, 'app.log')
  const writer = `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo "line $i"; sleep 0.002; done; sleep 300`
  const s = await start(t, dir, ['-p', pidFile, '-l', log, '--', 'sh', '-c', writer, dir])
  await h.waitFor(() => fs.existsSync(log) && fs.statSync(log).size > 200, { what: 'some lines' })
  const conf = path.join(dir, 'logrotate.conf')
  fs.writeFileSync(conf, `${log} {\n  rotate 3\n  nocompress\n  missingok\n  postrotate\n    ${process.execPath} ${CLI} signal HUP -p ${pidFile}\n  endscript\n}\n`)
  const rotate = await h.run('logrotate', ['-f', '-s', path.join(dir, 'state'), conf])
  t.is(rotate.code, 0, rotate.stderr)
  await h.waitFor(() => fs.existsSync(log) && fs.statSync(log).size > 200, { what: 'lines in the new file' })
  t.true(h.isRunning(s.commandPid), 'SIGHUP reopened the logs and did not reach (and kill) the writer')
  await cli(['stop', '-p', pidFile])
  const rotated = lines(`${log}.1`)
  const fresh = lines(log)
  t.true(rotated.length > 0 && fresh.length > 0)
  const numbers = [...rotated, ...fresh].map((l) => Number(l.replace('line ', '')))
  t.deepEqual(numbers, numbers.map((_, i) => i + 1), 'every line once, in order, across the two files')
  t.log(`${rotated.length} lines before the rotation, ${fresh.length} after`)
  t.false(h.isRunning(s.commandPid))
})

/** Sends SIGTERM to a foreground child and resolves with its exit code. */
function terminate(child) {
  const exited = new Promise((resolve) => child.on('exit', resolve))
  child.kill('SIGTERM')
  return exited
}

/** A stand-in for systemd's notification socket; `received` collects the messages, one a line. */
async function notifyListener(t, dir) {
  const socket = path.join(dir, 'notify.sock')
  const received = path.join(dir, 'received')
  const listener = spawn('python3', [LISTENER, socket, received], { stdio: 'ignore' })
  t.teardown(() => listener.kill('SIGKILL'))
  await h.waitFor(() => lines(received).includes('listening'), { what: 'the listener' })
  return { socket, received }
}

/** Runs `node ARGS...` as systemd would run a Type=notify service; resolves once READY=1 came. */
async function startUnderSystemd(t, dir, args) {
  const { socket, received } = await notifyListener(t, dir)
  const service = spawn(process.execPath, args, { stdio: 'ignore', env: { ...process.env, NOTIFY_SOCKET: socket } })
  t.teardown(() => service.kill('SIGKILL'))
  await h.waitFor(() => lines(received).some((l) => l.startsWith('READY=1')), { what: 'READY=1' })
  return { service, received }
}

test('systemd: with NOTIFY_SOCKET, daemonize() stays in place and sends READY=1 then STOPPING=1', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'sd.pid')
  const { service, received } = await startUnderSystemd(t, dir, [h.DAEMON, JSON.stringify({ options: { pidFile } })])
  t.is(h.readPid(pidFile), service.pid, 'no fork: the service process itself holds the pidfile')
  t.true(h.isLocked(pidFile))
  t.true(lines(received).includes(`READY=1|MAINPID=${service.pid}`))
  const exited = new Promise((resolve) => service.on('exit', (code, sig) => resolve({ code, sig })))
  service.kill('SIGTERM')
  t.deepEqual(await exited, { code: null, sig: 'SIGTERM' })
  // The listener may write its last line a moment after the service is gone.
  await h.waitFor(() => lines(received).includes('STOPPING=1'), { what: 'STOPPING=1' })
  t.deepEqual(lines(received), ['listening', `READY=1|MAINPID=${service.pid}`, 'STOPPING=1'])
  t.false(fs.existsSync(pidFile))
})

test('systemd: daemonkit start under NOTIFY_SOCKET runs in the foreground and notifies', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'fg.pid')
  const log = path.join(dir, 'signals.log')
  const { service: fg, received } = await startUnderSystemd(t, dir, [CLI, 'start', '-p', pidFile, '--', 'python3', SIGNALS, log])
  const supervisor = h.readPid(pidFile)
  h.cleanupPid(t, supervisor, dir)
  t.is(supervisor, fg.pid, 'not detached: the CLI became the supervisor (execve), no Node process stays beside it')
  t.is(fs.readlinkSync(`/proc/${fg.pid}/exe`), fs.realpathSync(path.join(__dirname, '..', 'binding', 'daemonkit-supervise')))
  // READY=1 means the command has exec'd; wait for it to install its handlers too.
  await h.waitFor(() => lines(log).length > 0, { what: 'the command to start' })
  t.is(await terminate(fg), 0)
  await h.waitFor(() => lines(received).includes('STOPPING=1'), { what: 'STOPPING=1' })
  t.deepEqual(lines(received), ['listening', `READY=1|MAINPID=${supervisor}`, 'STOPPING=1'])
  t.is(lines(log).at(-1), 'SIGTERM')
  t.false(fs.existsSync(pidFile))
})

test('SIGHUP with log files stays with the supervisor unless --forward-hup', async (t) => {
  const dir = h.tempDir(t)
  for (const forward of [false, true]) {
    const pidFile = path.join(dir, `h${forward}.pid`)
    const events = path.join(dir, `signals-${forward}.log`)
    const s = await start(t, dir, ['-p', pidFile, '-l', path.join(dir, 'out.log'), ...(forward ? ['--forward-hup'] : []), '--', 'python3', SIGNALS, events])
    await h.waitFor(() => lines(events).length > 0, { what: 'the command to start' })
    await cli(['signal', 'HUP', '-p', pidFile])
    await cli(['signal', 'USR1', '-p', pidFile])
    await h.waitFor(() => lines(events).includes('SIGUSR1'), { what: 'SIGUSR1' })
    t.is(lines(events).includes('SIGHUP'), forward)
    t.true(h.isRunning(s.commandPid))
  }
})

test('daemonkit run: the CLI becomes the supervisor; one Ctrl-C (SIGINT to the foreground process group) reaches the command once', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'run.pid')
  const events = path.join(dir, 'signals.log')
  const inherited = path.join(dir, 'inherited.txt')
  const inheritedFd = fs.openSync(inherited, 'w')
  t.teardown(() => fs.closeSync(inheritedFd))
  // Its own process group, as a terminal's foreground job would be; a file at fd 3.
  const fg = spawn(process.execPath, [CLI, 'run', '-p', pidFile, '--', 'python3', SIGNALS, events], { stdio: ['ignore', 'ignore', 'ignore', inheritedFd], detached: true })
  t.teardown(() => {
    try {
      process.kill(-fg.pid, 'SIGKILL')
    } catch {
      // gone
    }
  })
  await h.waitFor(() => lines(events).length > 0 && fs.existsSync(pidFile), { what: 'the command to start' })
  const supervisor = h.readPid(pidFile)
  h.cleanupPid(t, supervisor, dir)
  t.is(supervisor, fg.pid, 'no Node process stays: the CLI exec\'d the supervisor')
  t.is(fs.readlinkSync(`/proc/${fg.pid}/exe`), fs.realpathSync(path.join(__dirname, '..', 'binding', 'daemonkit-supervise')))
  const files = Object.values(h.procFds(supervisor)).filter((target) => target.startsWith('/'))
  t.false(files.includes(inherited), 'a descriptor the CLI inherited did not reach the supervisor')
  t.true(files.includes(pidFile), 'the supervisor holds the pidfile')
  const command = h.procChildren(supervisor)[0]
  const commandStat = h.procStat(command)
  t.is(commandStat.session, command, 'the command has a session of its own')
  t.is(commandStat.ttyNr, 0, 'and no controlling terminal')
  process.kill(-fg.pid, 'SIGINT')
  await h.waitFor(() => lines(events).includes('SIGINT'), { what: 'SIGINT' })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.is(lines(events).filter((l) => l === 'SIGINT').length, 1)
  t.is(await terminate(fg), 0)
  t.false(fs.existsSync(pidFile))
})

h.needs('script')('daemonkit run in a terminal: job control (stty tostop) cannot stop the command, which has no controlling terminal', async (t) => {
  const dir = h.tempDir(t)
  const script = `stty tostop; ${process.execPath} ${CLI} run -- /bin/sh -c 'echo "written by $$"; exit 0' ${dir}`
  // In a background group of the terminal the echo would stop the command (SIGTTOU) for good;
  // then the stopped supervisor and command (both name dir) are killed by pid afterwards.
  t.teardown(() => {
    for (const pid of h.processesMentioning(dir)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone meanwhile
      }
    }
  })
  const r = await h.run('script', ['-qfec', script, '/dev/null'], { timeout: 20_000 })
  t.is(r.code, 0, r.stderr)
  t.regex(r.stdout, /written by \d+/)
})

test('daemonkit run with a program that cannot start says why and leaves no pidfile', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'bad.pid')
  const r = await cli(['run', '-p', pidFile, '--', '/nonexistent/program'])
  t.not(r.code, 0)
  t.regex(r.stderr, /cannot start "\/nonexistent\/program": exec failed: No such file or directory/)
  t.false(fs.existsSync(pidFile))
})

test('--wait-ready: start returns once the program says READY=1, or fails with its own message', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'w.pid')
  const report = path.join(dir, 'report.json')
  // The fixture daemonizes in place (NOTIFY_SOCKET is set by the supervisor) and says ready
  // only after it listens and has written its report.
  const spec = { options: { ready: 'manual' }, listen: true, report }
  const s = await start(t, dir, ['-p', pidFile, '--wait-ready', '--', process.execPath, h.DAEMON, JSON.stringify(spec)])
  t.true(fs.existsSync(report), 'start returned only after the program was ready')
  t.is(JSON.parse(fs.readFileSync(report, 'utf8')).pid, s.commandPid)
  t.false(JSON.parse(fs.readFileSync(report, 'utf8')).markerInEnv)
  t.is((await cli(['stop', '-p', pidFile])).code, 0)

  const bad = path.join(dir, 'bad.pid')
  const r = await cli(['start', '-p', bad, '--wait-ready', '--', process.execPath, '-e', 'console.error("bad config (frotz)"); process.exit(4)', dir])
  t.is(r.code, 1)
  t.regex(r.stderr, /exited with status 4 before it was ready/)
  t.regex(r.stderr, /bad config \(frotz\)/)
  t.false(fs.existsSync(bad))
  await h.settle(() => h.processesMentioning(dir).length === 0, { timeout: 15_000 })
  t.deepEqual(h.processesMentioning(dir), [])
  const err = await t.throwsAsync(daemonkit.spawnDaemon(process.execPath, ['-e', 'process.exit(5)'], { pidFile: bad, waitReady: true }))
  t.like(err, { code: 'EDAEMONNOTREADY', reason: 'exited', exitCode: 5 })
})

test('--wait-ready: only the command (or its descendants) can say READY=1; its stderr tail survives any character', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'fake.pid')
  let settled = false
  const pending = cli(['start', '-p', pidFile, '--wait-ready', '--ready-timeout', '120s', '--', ...sleeper(dir)]).finally(() => (settled = true))
  const supervisor = await h.waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() && h.readPid(pidFile), { what: 'the supervisor' })
  h.cleanupPid(t, supervisor, dir)
  const command = await h.waitFor(() => h.procChildren(supervisor)[0], { what: 'the command' })
  h.cleanupPid(t, command, dir)
  const socket = await h.waitFor(() => fs.readFileSync(`/proc/${command}/environ`, 'utf8').split('\0').find((v) => v.startsWith('NOTIFY_SOCKET=')), { what: 'its NOTIFY_SOCKET' })
  // Another local process, not descended from the command, pretends the command is ready.
  const send = 'import socket, sys\nname = sys.argv[1]\ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.sendto(b"READY=1", "\\0" + name[1:] if name.startswith("@") else name)'
  const forged = spawnSync('python3', ['-c', send, socket.slice('NOTIFY_SOCKET='.length)], { encoding: 'utf8' })
  t.is(forged.status, 0, forged.stderr)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.false(settled, 'a forged READY=1 is ignored: start is still waiting')
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
  const r = await pending
  t.is(r.code, 1)
  t.regex(r.stderr, /stopped before it was ready/)
  t.false(h.isRunning(command))
  t.false(fs.existsSync(pidFile))

  const odd = 'line\u2028separated \u00e9\ud83d\ude00 "quoted" \\ end'
  const err = await t.throwsAsync(daemonkit.spawnDaemon(process.execPath, ['-e', `process.stderr.write(${JSON.stringify(odd)}); process.exit(6)`, dir], { waitReady: true }))
  t.like(err, { code: 'EDAEMONNOTREADY', exitCode: 6, daemonStderr: odd })
})

test('--wait-ready: a command that never says READY=1 is killed after --ready-timeout, with the supervisor', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'never.pid')
  const r = await cli(['start', '-p', pidFile, '--wait-ready', '--ready-timeout', '1500ms', '--', ...sleeper(dir)])
  t.is(r.code, 1)
  t.regex(r.stderr, /did not report within 1500 ms and was killed/)
  await h.settle(() => h.processesMentioning(dir).length === 0, { timeout: 15_000 })
  t.deepEqual(h.processesMentioning(dir), [], 'neither the supervisor nor the command is left')
  t.false(fs.existsSync(pidFile))
})

test('under systemd, a Node command that daemonizes itself stays under the supervisor', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'sdnode.pid')
  const report = path.join(dir, 'report.json')
  const args = [CLI, 'run', '-p', pidFile, '--wait-ready', '--', process.execPath, h.DAEMON, JSON.stringify({ options: {}, report })]
  const { service: fg, received } = await startUnderSystemd(t, dir, args)
  const supervisor = h.readPid(pidFile)
  h.cleanupPid(t, supervisor, dir)
  // READY=1 goes out as daemonize() resolves; the fixture writes its report just after.
  const { pid } = await h.waitFor(() => JSON.parse(fs.readFileSync(report, 'utf8')), { what: 'the report' })
  h.cleanupPid(t, pid, dir)
  t.is(Number(h.procStatus(pid).PPid), supervisor, 'the app did not fork away from its supervisor')
  t.deepEqual(lines(received), ['listening', `READY=1|MAINPID=${supervisor}`])
  t.is(await terminate(fg), 0)
  t.false(h.isRunning(pid))
})

test('under Electron, a script run with process.execPath gets ELECTRON_RUN_AS_NODE=1; other commands do not', async (t) => {
  const dir = h.tempDir(t)
  const preload = path.join(dir, 'electron.js')
  fs.writeFileSync(preload, "Object.defineProperty(process.versions, 'electron', { value: '30.0.0' })\n")
  const out = (name) => path.join(dir, name)
  const code = `
    const { spawnDaemon } = require(${JSON.stringify(path.resolve(__dirname, '..'))})
    const show = 'require("fs").writeFileSync(process.argv[1], String(process.env.ELECTRON_RUN_AS_NODE))'
    Promise.all([
      spawnDaemon(process.execPath, ['-e', show, ${JSON.stringify(out('node'))}]),
      spawnDaemon('/bin/sh', ['-c', 'printf "[%s]" "$ELECTRON_RUN_AS_NODE" > "$0"', ${JSON.stringify(out('sh'))}]),
    ]).then(() => console.log('ok'))`
  const r = await h.run(process.execPath, ['--require', preload, '-e', code])
  t.is(r.code, 0, r.stderr)
  // Each waits for its content: a file exists from its open() on, empty until the write.
  t.is(await h.waitFor(() => fs.readFileSync(out('node'), 'utf8'), { what: "node's report" }), '1')
  t.is(await h.waitFor(() => fs.readFileSync(out('sh'), 'utf8'), { what: "sh's report" }), '[]', 'unset for sh')
})

test('spawnDaemon rejects invalid options with a TypeError before creating anything', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'v.pid')
  const bad = [
    [{ pidFile, restart: 'sometimes' }, /"restart"/],
    [{ supervise: false, restart: 'always' }, /"restart" needs the supervisor/],
    [{ pidFile, user: '' }, /"user"/],
    [{ pidFile, restartDelay: -1 }, /"restartDelay"/],
    [{ pidFile, stdout: 7 }, /"stdout"/],
    [{ pidFile, supervise: false }, /"pidFile" needs the supervisor/],
    [{ pidFile, forwardHup: 'yes' }, /"forwardHup"/],
  ]
  for (const [options, message] of bad) await t.throwsAsync(daemonkit.spawnDaemon('/bin/true', [], options), { instanceOf: TypeError, message })
  await t.throwsAsync(daemonkit.spawnDaemon('', []), { instanceOf: TypeError })
  t.deepEqual(fs.readdirSync(dir), [])
})
