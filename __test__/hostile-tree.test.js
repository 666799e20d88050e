'use strict'
// The command's whole process tree ends with it: on stop, on `run` + SIGINT, when the command
// exits by itself, after a failed --wait-ready start, and when the supervisor is SIGKILLed
// (also for a command that lost PR_SET_PDEATHSIG by executing a file-capability binary).
const test = require('ava')
const fs = require('node:fs')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const h = require('./helpers')

const { CLI, cli } = h

/**
 * A copy of /bin/sleep inside `dir`, so every process of the tree has `dir` in its command line
 * (teardown only ever kills such a process, by pid).
 */
function sleepCopy(dir, name = 'sleep') {
  const copy = path.join(dir, name)
  fs.copyFileSync('/bin/sleep', copy)
  fs.chmodSync(copy, 0o755)
  return copy
}

/**
 * A shell script that builds a tree and records each pid in `dir/NAME.pid`: a background
 * child, a child that called setsid, an orphan (its parent shell exits at once), and a
 * foreground child the script waits for. `tail` replaces the final wait, e.g. 'exit 3'.
 */
function treeScript(dir, { tail = 'wait' } = {}) {
  const sleep = sleepCopy(dir)
  const script = path.join(dir, 'tree.sh')
  fs.writeFileSync(
    script,
    [
      'd=$1',
      'echo $$ > "$d/sh.pid"',
      `${sleep} 1010 & echo $! > "$d/bg.pid"`,
      `setsid ${sleep} 1012 & echo $! > "$d/setsid.pid"`,
      `sh -c '${sleep} 1013 & echo $! > "$1/orphan.pid"' orphan "$d"`,
      `${sleep} 1011 & echo $! > "$d/fg.pid"`,
      tail,
      '',
    ].join('\n'),
  )
  return ['/bin/sh', script, dir]
}

const TREE = ['sh', 'bg', 'setsid', 'orphan', 'fg']

/**
 * Waits until the script has recorded the pids `names` (and, unless `running` is false, until
 * they run); returns { name: pid }.
 */
async function recorded(t, dir, names, { running = true } = {}) {
  const pids = {}
  for (const name of names) {
    const file = path.join(dir, `${name}.pid`)
    pids[name] = await h.waitFor(() => fs.existsSync(file) && h.readPid(file) > 0 && h.readPid(file), { what: `${name}.pid` })
    h.cleanupPid(t, pids[name], dir)
  }
  for (const [name, pid] of Object.entries(pids)) {
    if (name === 'sh' || !running) continue // the shell may have exited by design
    await h.waitFor(() => h.isRunning(pid), { what: `${name} (pid ${pid}) to run` })
  }
  return pids
}

function left(pids) {
  return Object.entries(pids).filter(([, pid]) => h.isRunning(pid)).map(([name, pid]) => `${name} (pid ${pid})`)
}

/** Starts `command` through the CLI with extra `args`; registers supervisor and command for teardown. */
function start(t, dir, args, command) {
  // --settle 0: some commands here exit at once on purpose.
  return h.startJson(t, dir, ['--settle', '0', ...args, '--', ...command])
}

/** The guard of the supervisor whose command line mentions `dir` (a fork of it, named daemonkit-guard). */
function guardOf(dir) {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (fs.readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'daemonkit-guard' && h.cmdlineHas(Number(entry), dir)) return Number(entry)
    } catch {
      // gone
    }
  }
  return undefined
}

test('stop ends the whole tree: background, setsid, orphaned and foreground children', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const s = await start(t, dir, ['-p', pidFile], treeScript(dir))
  const pids = await recorded(t, dir, TREE)
  t.is(h.procStat(pids.setsid).session, pids.setsid, 'the setsid child leads a session of its own')
  await h.settle(() => h.procStat(pids.orphan).ppid === s.pid) // its parent shell exits right after writing orphan.pid
  t.is(h.procStat(pids.orphan).ppid, s.pid, 'the orphan is re-parented to the supervisor (child subreaper)')
  t.is(h.procStat(s.commandPid).pgrp, s.commandPid, 'the command leads a process group of its own')

  const r = await cli(['stop', '-p', pidFile])
  t.is(r.code, 0, r.stderr)
  t.deepEqual(left(pids), [], 'when stop returns, nothing of the tree runs')
  t.false(h.isLocked(pidFile))
})

test('run + SIGINT to its process group (a terminal\'s Ctrl-C) ends the whole tree', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  // Its own process group, as a terminal's foreground job would be.
  const child = spawn(process.execPath, [CLI, 'run', '-p', pidFile, '--', ...treeScript(dir)], { stdio: 'ignore', detached: true })
  t.teardown(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'))
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })))
  const pids = await recorded(t, dir, TREE)
  t.is(h.readPid(pidFile), child.pid, 'run became the supervisor')
  // The guard names itself after its fork; the command may already run by then.
  const guard = await h.waitFor(() => guardOf(dir), { what: 'the guard' })
  t.is(h.procStat(guard).pgrp, child.pid, 'the guard is in the foreground group too')
  process.kill(-child.pid, 'SIGINT')
  const how = await exited
  t.is(how.code, 0)
  t.deepEqual(left(pids), [], 'when the supervisor has exited, nothing of the tree runs')
})

test('a command that exits by itself takes its leftovers with it (before the supervisor exits)', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const s = await start(t, dir, ['-p', pidFile], treeScript(dir, { tail: 'exit 0' }))
  const pids = await recorded(t, dir, TREE.filter((n) => n !== 'sh'), { running: false })
  await h.waitFor(() => !h.isLocked(pidFile), { what: 'the supervisor to let go of the lock' })
  t.deepEqual(left(pids), [], 'the supervisor ended them before it let go of the lock')
  await h.waitFor(() => !h.isRunning(s.pid), { what: 'the supervisor to exit' })
})

test('restart: what the failed command left is ended before the next start', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const sleep = sleepCopy(dir)
  const script = `n=$(ls "${dir}" | grep -c '^run'); touch "${dir}/run$n"; ${sleep} 1030 & echo $! > "${dir}/left$n.pid"; [ $n -ge 1 ] && wait; exit 1`
  const s = await start(t, dir, ['-p', pidFile, '-r', 'on-failure', '--restart-delay', '50ms'], ['/bin/sh', '-c', script, dir])
  const first = await h.waitFor(() => fs.existsSync(path.join(dir, 'left0.pid')) && h.readPid(path.join(dir, 'left0.pid')), { what: 'left0.pid' })
  h.cleanupPid(t, first, dir)
  const second = await h.waitFor(() => fs.existsSync(path.join(dir, 'left1.pid')) && h.readPid(path.join(dir, 'left1.pid')), { what: 'the restart' })
  h.cleanupPid(t, second, dir)
  t.false(h.isRunning(first), 'the first run\'s leftover was ended before the restart')
  t.true(h.isLocked(pidFile))
  t.true(h.isRunning(s.pid))
  const r = await cli(['stop', '-p', pidFile])
  t.is(r.code, 0, r.stderr)
  t.false(h.isRunning(second))
})

test('a failed --wait-ready start leaves no process behind', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const sleep = sleepCopy(dir)
  const r = await cli(['start', '--wait-ready', '-p', pidFile, '--', '/bin/sh', '-c', `${sleep} 1014 & echo $! > "${dir}/bg.pid"; exit 3`])
  t.is(r.code, 1)
  t.regex(r.stderr, /status 3/)
  const bg = h.readPid(path.join(dir, 'bg.pid'))
  t.true(bg > 1, 'the command named its background child')
  h.cleanupPid(t, bg, dir)
  t.false(h.isRunning(bg), 'when start returns, the background child is gone')
  t.false(fs.existsSync(pidFile))
})

test('a --wait-ready start that times out leaves no process behind', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const sleep = sleepCopy(dir)
  const r = await cli(['start', '--wait-ready', '--ready-timeout', '3s', '-p', pidFile, '--', '/bin/sh', '-c', `${sleep} 1018 & echo $! > "${dir}/bg.pid"; wait`])
  t.is(r.code, 1)
  t.regex(r.stderr, /did not report within 3000 ms|before it was ready/)
  const bg = h.readPid(path.join(dir, 'bg.pid'))
  t.true(bg > 1, 'the command named its background child')
  h.cleanupPid(t, bg, dir)
  t.false(h.isRunning(bg), 'when start returns, the background child is gone')
  t.false(h.isLocked(pidFile))
})

h.needs(...(process.getuid() === 0 ? ['setpriv'] : []))('kill -9 of the supervisor, without a cgroup: the guard ends the command\'s process group', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  // As root the supervisor would make a cgroup; as nobody it cannot, and the guard has only
  // the process group to go by.
  let run = (args) => cli(args)
  if (process.getuid() === 0) {
    h.readableCopy(dir, path.join(h.FIXTURES, 'basic.js'))
    fs.chmodSync(dir, 0o1777)
    const copy = path.join(dir, 'pkg', 'dist', 'cli.js')
    run = (args) => h.run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, copy, ...args])
  }
  const r = await run(['start', '--json', '-p', pidFile, '--', ...treeScript(dir)])
  t.is(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout)
  h.cleanupPid(t, s.pid, dir)
  h.cleanupPid(t, s.commandPid, dir)
  const pids = await recorded(t, dir, TREE)
  t.notRegex(cgroupOf(s.commandPid), /\/daemonkit-\d+$/)
  const guard = await h.waitFor(() => guardOf(dir), { what: 'a guard beside the supervisor' })
  t.not(h.procStat(guard).ppid, s.pid, 'forked twice: not a child of the supervisor')
  await h.settle(() => h.procStat(pids.orphan).ppid === s.pid)
  t.deepEqual(fs.readFileSync(`/proc/${s.pid}/task/${s.pid}/children`, 'utf8').trim().split(' ').map(Number).sort(), [s.commandPid, pids.orphan].sort(), 'its children: the command and the adopted orphan')
  t.false(Object.values(h.procFds(guard)).some((target) => target.endsWith('x.pid')), 'the guard does not hold the pidfile')
  process.kill(s.pid, 'SIGKILL')
  // The orphan stayed in the command's group; the setsid child left it (see the next test).
  const inGroup = TREE.filter((n) => n !== 'setsid')
  await h.settle(() => left(pick(pids, inGroup)).length === 0, { timeout: 15_000 })
  t.deepEqual(left(pick(pids, inGroup)), [], 'the command and its process group are ended')
  await h.settle(() => !h.isRunning(guard), { timeout: 15_000 })
  t.false(h.isRunning(guard), 'the guard exits once done')
})

/** The cgroup v2 path of `pid` ('0::' line of /proc/PID/cgroup). */
function cgroupOf(pid) {
  const line = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'))
  return line?.slice(3)
}

/** The directory of cgroup v2 path `rel` (the cgroup2 mount from /proc/self/mountinfo). */
function cgroupDir(rel) {
  const mount = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' - ')[1]?.startsWith('cgroup2 '))
  return mount && path.join(mount.split(' ')[4], rel)
}

test('kill -9 of the supervisor, with a cgroup of its own: even a child that called setsid is ended', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const s = await start(t, dir, ['-p', pidFile], treeScript(dir))
  const pids = await recorded(t, dir, TREE)
  const cgroup = cgroupOf(s.commandPid)
  if (!cgroup || !/\/daemonkit-\d+$/.test(cgroup)) {
    process.kill(s.pid, 'SIGKILL')
    return t.pass(`skipped: no cgroup v2 of its own could be made here (the command is in ${cgroup})`)
  }
  t.is(cgroup, `${cgroupOf(process.pid).replace(/\/$/, '')}/daemonkit-${s.pid}`)
  t.is(cgroupOf(pids.setsid), cgroup, 'the setsid child is in the cgroup')
  process.kill(s.pid, 'SIGKILL')
  await h.settle(() => left(pids).length === 0, { timeout: 15_000 })
  t.deepEqual(left(pids), [], 'every process of the tree is ended, the setsid child too')
  await h.settle(() => !fs.existsSync(cgroupDir(cgroup)), { timeout: 15_000 })
  t.false(fs.existsSync(cgroupDir(cgroup)), 'the guard removed the cgroup')
})

test('after a normal stop the cgroup is removed', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const sleep = sleepCopy(dir)
  const s = await start(t, dir, ['-p', pidFile], [sleep, '1040'])
  const cgroup = cgroupOf(s.commandPid)
  if (!cgroup || !/\/daemonkit-\d+$/.test(cgroup)) return t.pass(`skipped: no cgroup v2 of its own could be made here (the command is in ${cgroup})`)
  t.true(fs.existsSync(cgroupDir(cgroup)))
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
  await h.settle(() => !fs.existsSync(cgroupDir(cgroup)), { timeout: 15_000 })
  t.false(fs.existsSync(cgroupDir(cgroup)))
})

function pick(pids, names) {
  return Object.fromEntries(names.map((n) => [n, pids[n]]))
}

test('kill -9 of the supervisor ends a command that lost PR_SET_PDEATHSIG (file capability)', async (t) => {
  if (process.getuid() !== 0) return t.pass('skipped: needs root to set file capabilities')
  const setcap = ['/usr/sbin/setcap', '/sbin/setcap'].find((p) => fs.existsSync(p))
  if (!setcap) return t.pass('skipped: setcap (libcap2-bin) is not installed')
  const dir = h.tempDir(t)
  const capSleep = sleepCopy(dir, 'capsleep')
  const set = spawnSync(setcap, ['cap_net_bind_service+ep', capSleep])
  if (set.status !== 0) return t.pass(`skipped: setcap failed here: ${set.stderr}`)
  fs.chmodSync(dir, 0o755)
  const pidFile = path.join(dir, 'x.pid')
  // As nobody, the exec gains a capability, which makes the kernel clear PR_SET_PDEATHSIG.
  const s = await start(t, dir, ['-p', pidFile, '-u', 'nobody'], ['/bin/sh', '-c', `exec ${capSleep} 1015`, dir])
  await h.waitFor(() => fs.readFileSync(`/proc/${s.commandPid}/comm`, 'utf8').trim() === 'capsleep', { what: 'the exec of capsleep' })
  const bindService = 1n << 10n
  t.is(BigInt(`0x${h.procStatus(s.commandPid).CapPrm}`) & bindService, bindService, 'it runs with the file capability')
  process.kill(s.pid, 'SIGKILL')
  await h.settle(() => !h.isRunning(s.commandPid), { timeout: 15_000 })
  t.false(h.isRunning(s.commandPid), 'the capability binary is ended although the kernel cleared its parent-death signal')
})

test('descendants that ignore SIGTERM are killed after the grace period, and the log says so', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const log = path.join(dir, 'out.log')
  const sleep = sleepCopy(dir)
  const s = await start(t, dir, ['-p', pidFile, '-l', log], ['/bin/sh', '-c', `(trap '' TERM; exec ${sleep} 1017) & echo $! > "${dir}/stubborn.pid"; wait`, dir])
  const pids = await recorded(t, dir, ['stubborn'])
  t.true(h.ignoresSignal(pids.stubborn, 15))
  const r = await cli(['stop', '-p', pidFile, '-t', '30s'])
  t.is(r.code, 0, r.stderr)
  t.false(r.stdout.includes('forced'), 'the supervisor itself was not killed')
  t.deepEqual(left(pids), [])
  t.regex(fs.readFileSync(log, 'utf8'), /killed the command's remaining processes after 3000 ms/)
  t.false(h.isRunning(s.pid))
})

test('a guard killed with SIGKILL: the supervisor logs that the protection is gone, and at exit removes its cgroup itself', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const log = path.join(dir, 'sup.log')
  const sleep = sleepCopy(dir)
  const s = await start(t, dir, ['-p', pidFile, '-l', log], [sleep, '1041'])
  const guard = await h.waitFor(() => guardOf(dir), { what: 'the guard' })
  const cgroup = cgroupOf(s.commandPid)
  const ownCgroup = cgroup && /\/daemonkit-\d+$/.test(cgroup)
  process.kill(guard, 'SIGKILL')
  await h.waitFor(() => /guard process \(pid \d+\) has ended/.test(fs.readFileSync(log, 'utf8')), { timeout: 15_000, what: 'the supervisor to notice' })
  t.regex(fs.readFileSync(log, 'utf8'), new RegExp(`guard process \\(pid ${guard}\\) has ended: if this supervisor is killed now`))
  t.is((await cli(['stop', '-p', pidFile])).code, 0)
  if (!ownCgroup) return t.pass(`no cgroup v2 of its own could be made here (the command is in ${cgroup}): the cgroup part is skipped`)
  await h.settle(() => !fs.existsSync(cgroupDir(cgroup)), { timeout: 15_000 })
  t.false(fs.existsSync(cgroupDir(cgroup)), 'the supervisor removed its cgroup with no guard to do it')
})

test('a command that names itself daemonkit-guard is still reported as the command by status', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'x.pid')
  const named = sleepCopy(dir, 'daemonkit-guard')
  const s = await start(t, dir, ['-p', pidFile], [named, '1042'])
  t.is(fs.readFileSync(`/proc/${s.commandPid}/comm`, 'utf8').trim(), 'daemonkit-guard')
  const r = await cli(['status', '--json', '-p', pidFile])
  t.is(r.code, 0, r.stdout)
  t.is(JSON.parse(r.stdout).commandPid, s.commandPid)
})
