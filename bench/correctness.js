'use strict'
// Benchmark 6: correctness properties, observed on real daemons (never assumed from docs).
//
// Per tool, three launches, each in its own temp dir:
//   pty   — the launcher runs inside a pseudo-terminal (util-linux `script -qec CMD /dev/null`).
//           Read from /proc/PID/stat: is the daemon a session leader, does it have a controlling
//           terminal (tty_nr)? Then the harness opens a fresh pseudo-terminal that nobody owns
//           (`probe pty`), and the app opens it with a plain fs.openSync(path, 'r+') (SIGUSR2):
//           does it become the daemon's controlling terminal, and does the daemon survive when
//           that terminal hangs up (the master closes)?
//   fds   — the launcher gets stdin/stdout/stderr on files and an extra open file at fd 5 (as a
//           shell or a parent program may leave one). Which of them does the daemon still hold
//           (/proc/PID/fd)? Where do its fds 0-2 point? Is the pidfile locked (a flock on it in
//           /proc/locks)? cwd, umask.
//   crash — the app throws at start (BENCH_CRASH=1). The launcher's exit status and time, whether
//           it shows the app's error, and what is left behind (pidfile, process).

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const { now, ms, procStat, procStatus, procFds, exited, isLocked, readJsonWait, readPid, tempDir, removeDir, shq, sleep, cmdlineHas } = require('./lib')
const { runLauncher, daemonPids, cleanUp, pidPath } = require('./tools')

/** Starts `probe pty`; resolves with { path, hangUp() } where hangUp closes the master. */
function openPty(probe) {
  return new Promise((resolve, reject) => {
    const holder = spawn(probe, ['pty'], { stdio: ['pipe', 'pipe', 'inherit'] })
    const exit = new Promise((r) => holder.once('exit', r))
    let got = ''
    holder.once('error', reject)
    holder.stdout.on('data', (chunk) => {
      got += chunk
      if (!got.includes('\n')) return
      holder.stdout.removeAllListeners('data')
      holder.stdout.destroy()
      resolve({
        path: got.trim(),
        hangUp: async () => {
          holder.stdin.end()
          await exit
        },
      })
    })
  })
}

async function ptyRun(tool, probe) {
  const dir = tempDir(`pty-${tool.name}`)
  try {
    const cmd = tool.cmd(dir).map(shq).join(' ')
    const r = runLauncher(['script', '-qec', cmd, '/dev/null'], { cwd: dir, timeout: 20_000 })
    if (r.status !== 0) throw new Error(`${tool.name} under script: exit ${r.status ?? r.signal}: ${r.stderr}`)
    const marker = readJsonWait(path.join(dir, 'ready.json'), 10_000)
    if (!marker) throw new Error(`${tool.name} under script: no ready marker`)
    const st = procStat(marker.pid)
    if (!st) throw new Error(`${tool.name} under script: the daemon is gone`)
    const out = { sessionLeader: st.session === marker.pid, ttyNr: st.ttyNr }

    const pty = await openPty(probe)
    try {
      fs.writeFileSync(path.join(dir, 'tty-path'), pty.path)
      process.kill(marker.pid, 'SIGUSR2')
      const opened = readJsonWait(path.join(dir, 'tty.json'), 5000)
      if (!opened || opened.error) throw new Error(`${tool.name}: the app could not open ${pty.path}: ${opened && opened.error}`)
      out.acquires = opened.ttyNr !== 0
    } finally {
      await pty.hangUp()
    }
    await sleep(300)
    out.survivesHangUp = !exited(marker.pid)
    return out
  } finally {
    cleanUp(dir)
    removeDir(dir)
  }
}

function fdRun(tool) {
  const dir = tempDir(`fds-${tool.name}`)
  const opened = []
  try {
    const files = {
      stdin: path.join(dir, 'launcher-stdin'),
      stdout: path.join(dir, 'launcher-stdout'),
      stderr: path.join(dir, 'launcher-stderr'),
      extra: path.join(dir, 'launcher-extra-fd5'),
    }
    fs.writeFileSync(files.stdin, '')
    const fd = {
      stdin: fs.openSync(files.stdin, 'r'),
      stdout: fs.openSync(files.stdout, 'w'),
      stderr: fs.openSync(files.stderr, 'w'),
      extra: fs.openSync(files.extra, 'w'),
    }
    opened.push(...Object.values(fd))
    const r = runLauncher(tool.cmd(dir), { cwd: dir, stdio: [fd.stdin, fd.stdout, fd.stderr, 'ignore', 'ignore', fd.extra] })
    if (r.status !== 0) throw new Error(`${tool.name} (fds): exit ${r.status ?? r.signal}: ${fs.readFileSync(files.stderr, 'utf8')}`)
    const marker = readJsonWait(path.join(dir, 'ready.json'), 10_000)
    if (!marker) throw new Error(`${tool.name} (fds): no ready marker`)
    const { pidFilePid } = daemonPids(dir)
    const name = Object.fromEntries(Object.entries(files).map(([k, v]) => [v, k]))
    const leaks = new Set()
    const pids = [marker.pid, ...(pidFilePid && pidFilePid !== marker.pid ? [pidFilePid] : [])]
    for (const pid of pids) {
      for (const target of Object.values(procFds(pid) ?? {})) {
        if (name[target] === 'extra') leaks.add('fd 5 (open file)')
        else if (name[target]) leaks.add(`its ${name[target]}`)
      }
    }
    const fds = procFds(marker.pid) ?? {}
    const stdio = ['0', '1', '2']
      .filter((fd) => fd in fds)
      .map((fd) => (fds[fd] === '/dev/null' ? 'null' : name[fds[fd]] ? `launcher ${name[fds[fd]]}` : fds[fd]))
    const pidFile = pidPath(dir)
    const locked = !fs.existsSync(pidFile) ? 'no pidfile' : isLocked(pidFile) ? 'yes' : 'no'
    let cwd
    try {
      cwd = fs.readlinkSync(`/proc/${marker.pid}/cwd`)
    } catch {
      cwd = '?'
    }
    return {
      leaks: [...leaks],
      stdio: stdio.every((s) => s === 'null') ? '/dev/null' : stdio.join(', '),
      locked,
      cwd: cwd === dir ? 'launcher\'s cwd' : cwd,
      umask: procStatus(marker.pid)?.Umask,
    }
  } finally {
    for (const f of opened) fs.closeSync(f)
    cleanUp(dir)
    removeDir(dir)
  }
}

async function crashRun(tool) {
  const dir = tempDir(`crash-${tool.name}`)
  try {
    const r = runLauncher(tool.cmd(dir), { cwd: dir, env: { ...process.env, BENCH_CRASH: '1' }, timeout: 30_000 })
    const elapsed = ms(r.t1 - r.t0)
    await sleep(500) // a launcher that did not wait: let the daemon crash
    const pidFile = pidPath(dir)
    const pid = readPid(pidFile)
    const left = []
    if (fs.existsSync(pidFile)) left.push('pidfile')
    if (pid !== undefined && pid > 1 && !exited(pid) && cmdlineHas(pid, dir)) left.push(`process ${pid}`)
    return {
      status: r.timedOut ? 'timeout' : (r.status ?? r.signal),
      elapsed,
      showsError: /start-up failed/.test(r.stderr),
      left,
    }
  } finally {
    cleanUp(dir)
    removeDir(dir)
  }
}

/** Returns { [tool]: { pty, fds, crash } }. */
async function benchCorrectness({ tools, probe, log }) {
  const out = {}
  for (const t of tools) {
    const t0 = now()
    out[t.name] = { pty: await ptyRun(t, probe), fds: fdRun(t), crash: await crashRun(t) }
    log(`  correctness: ${t.name} (${ms(now() - t0).toFixed(0)} ms)`)
  }
  return out
}

module.exports = { benchCorrectness }
