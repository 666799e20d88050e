'use strict'
// The launchers compared, each as a command line that starts the same app (fixtures/app.js) as
// a daemon in a run directory `dir`, with its pidfile at dir/daemon.pid when there is one.
// Shared by the launch, memory and correctness benchmarks.

const { spawnSync } = require('node:child_process')
const path = require('node:path')

const { PKG_ROOT, NODE, fixture, readPid, readJson, exited, stopAndReap, waitFor, now, cmdlineHas } = require('./lib')

const CLI = path.join(PKG_ROOT, 'dist', 'cli.js')
const pidPath = (dir) => path.join(dir, 'daemon.pid')

/** Whether systemd-notify(1) is installed (for start-stop-daemon --notify-await). */
function haveSystemdNotify() {
  const r = spawnSync('systemd-notify', ['--help'], { stdio: 'ignore' })
  return !r.error
}

/**
 * The launchers. `cmd(dir)` is the argv; `ready` says how the launcher learns that the daemon is
 * up (shown in RESULTS.md); `selfReexec`: a Node launcher that starts Node again.
 */
function launchers({ floor, versions }) {
  const list = [
    {
      name: 'floor',
      label: 'C double fork (floor)',
      ready: 'waits for one byte the app writes on an inherited pipe once it is up (EOF = died)',
      cmd: (dir) => [floor, pidPath(dir), NODE, fixture('app-plain.js'), dir],
    },
    {
      name: 'daemonkit',
      label: 'daemonkit daemonize()',
      ready: "waits for the daemon's READY (sent by daemon.ready() after the app's start-up code; ready: 'manual')",
      selfReexec: true,
      cmd: (dir) => [NODE, fixture('daemonkit.js'), dir],
    },
    {
      name: 'daemonkit-cli',
      label: 'daemonkit start (CLI, supervised)',
      ready: 'returns once the supervisor holds the lock and the command has exec\'d; the app itself is not asked',
      supervised: true,
      cmd: (dir) => [NODE, CLI, 'start', '-p', pidPath(dir), '--', NODE, fixture('app-plain.js'), dir],
    },
    {
      name: 'daemonkit-cli-ready',
      label: 'daemonkit start --wait-ready (CLI, supervised)',
      ready: "waits for the app's READY=1 on the supervisor's private NOTIFY_SOCKET (daemonize() in the app sends it after its start-up code, staying in place)",
      supervised: true,
      cmd: (dir) => [NODE, CLI, 'start', '--wait-ready', '-p', pidPath(dir), '--', NODE, fixture('daemonkit.js'), dir, '--no-pidfile'],
    },
    {
      name: 'spawn',
      label: 'spawn({ detached }) + IPC ready',
      ready: "waits for the child's 'ready' IPC message (sent after its start-up code), exits 1 if the child exits first",
      selfReexec: true,
      cmd: (dir) => [NODE, fixture('spawn-detached.js'), dir],
    },
    {
      name: 'daemon',
      label: `npm daemon ${versions.daemon}`,
      ready: 'none: the launcher exits right after spawn()',
      selfReexec: true,
      cmd: (dir) => [NODE, fixture('npm-daemon.js'), dir],
    },
    {
      name: 'daemonize2',
      label: `npm daemonize2 ${versions.daemonize2}`,
      ready: "waits until its wrapper closes the IPC channel (the main module has loaded), then 100 ms, then kill(pid, 0)",
      selfReexec: true,
      cmd: (dir) => [NODE, fixture('daemonize2-ctl.js'), dir],
    },
    {
      name: 'ssd',
      label: 'start-stop-daemon --background',
      ready: 'none: returns once it has forked (with --make-pidfile the pidfile already names the daemon)',
      cmd: (dir) => ['start-stop-daemon', '--start', '--background', '--make-pidfile', '--pidfile', pidPath(dir), '--exec', NODE, '--', fixture('app-plain.js'), dir],
    },
  ]
  if (haveSystemdNotify()) {
    list.push({
      name: 'ssd-notify',
      label: 'start-stop-daemon --notify-await',
      ready: 'waits for sd_notify READY=1 on its socket; the app runs systemd-notify --ready once up (Node cannot send it itself)',
      cmd: (dir) => [
        'start-stop-daemon', '--start', '--background', '--notify-await', '--notify-timeout', '5', '--make-pidfile',
        '--pidfile', pidPath(dir), '--exec', NODE, '--', fixture('app-plain.js'), dir,
      ],
    })
  }
  return list
}

/**
 * Runs argv to completion with stdin/stdout ignored and stderr kept (a daemon that kept the
 * launcher's stderr would hold us until the timeout: that is reported, not hidden).
 * Returns { status, signal, timedOut, t0, t1, stdout, stderr } (stdout a Buffer when piped).
 */
function runLauncher(argv, { cwd, env, stdio, timeout = 15_000 } = {}) {
  const t0 = now()
  const r = spawnSync(argv[0], argv.slice(1), { cwd, env, stdio: stdio ?? ['ignore', 'ignore', 'pipe'], timeout })
  const t1 = now()
  const stderr = r.stderr ? r.stderr.toString().trim() : ''
  if (r.error && r.error.code !== 'ETIMEDOUT') throw new Error(`${path.basename(argv[0])}: ${r.error.message}`)
  return { status: r.status, signal: r.signal, timedOut: Boolean(r.error), t0, t1, stdout: r.stdout, stderr }
}

/** The processes a run left: the pidfile's pid and the app's (from its ready marker). */
function daemonPids(dir) {
  const marker = readJson(path.join(dir, 'ready.json'))
  return { pidFilePid: readPid(pidPath(dir)), appPid: marker ? marker.pid : undefined, marker }
}

/**
 * Stops whatever a run started and confirms it is gone: the pidfile's process first (a
 * supervisor forwards the signal to its command), then the app. Waits `settle` ms for a late
 * app (a launcher that returned before the daemon was up) to show up first.
 */
function cleanUp(dir, settle = 0) {
  if (settle) waitFor(() => readJson(path.join(dir, 'ready.json')), settle, 2)
  const { pidFilePid, appPid } = daemonPids(dir)
  const how = {}
  for (const pid of [pidFilePid, appPid]) {
    if (Number.isInteger(pid) && pid > 1 && !exited(pid)) how[pid] = stopAndReap(pid, { mention: dir })
  }
  for (const pid of [pidFilePid, appPid]) {
    if (Number.isInteger(pid) && pid > 1 && !exited(pid) && cmdlineHas(pid, dir)) throw new Error(`process ${pid} of ${dir} is still running`)
  }
  return how
}

module.exports = { launchers, runLauncher, daemonPids, cleanUp, pidPath, CLI, haveSystemdNotify }
