'use strict'
// Benchmark 3: stop latency, and start -> status -> stop round trips.
//
// Run as its own process by run.js:  probe subreaper node bench/stop.js PROBE RUNS subreaper
// (every daemon it starts is re-parented to that subreaper, which reaps it at once, as systemd or
// tini would), and  node bench/stop.js PROBE RUNS pid1  (as this machine is: orphans go to PID 1,
// which reaps them late). Prints one JSON object on stdout.
//
// One stop: start a daemonkit daemon (fixtures/daemonkit.js: its SIGTERM handler stamps
// CLOCK_MONOTONIC into dir/exit.json just before process.exit), then run the stopper under
// `probe stopwatch PID`, which notes when the daemon's pidfd becomes readable (the kernel's exit:
// the process is a zombie, whoever reaps it) and when the stopper's process exits. Function
// stoppers (daemonkit's stop(), daemonize2's stop()) stamp their own return in-process.
//   latency        = stopper returns − the daemon's last stamp (from inside, before process.exit)
//   from kernel    = stopper returns − the kernel's exit
//   teardown       = the kernel's exit − the daemon's last stamp (Node's exit path; the same
//                    daemon for every stopper, so not the stopper's doing)

const { spawnSync } = require('node:child_process')
const path = require('node:path')

const { NODE, fixture, now, ms, summary, exited, readJsonWait, readPid, tempDir, removeDir, sleepSync } = require('./lib')
const { runLauncher, cleanUp, pidPath, CLI } = require('./tools')

const [PROBE, RUNS_ARG, MODE] = process.argv.slice(2)
const RUNS = Number(RUNS_ARG)
const log = (line) => process.stderr.write(`${line}\n`)

const STOPPERS = [
  {
    name: 'daemonkit-fn',
    label: 'daemonkit stop(pidFile)',
    short: 'daemonkit stop()',
    returns: 'promise resolves',
    cmd: (pidFile) => [NODE, fixture('stop-daemonkit.js'), pidFile],
  },
  {
    name: 'daemonkit-cli',
    label: 'daemonkit stop -p F (CLI)',
    short: 'daemonkit stop (CLI)',
    returns: 'process exits',
    cmd: (pidFile) => [NODE, CLI, 'stop', '-p', pidFile],
  },
  {
    name: 'ssd',
    label: 'start-stop-daemon --stop --retry TERM/30/KILL/5',
    short: 'start-stop-daemon --stop --retry',
    returns: 'process exits',
    cmd: (pidFile) => ['start-stop-daemon', '--stop', '--pidfile', pidFile, '--retry', 'TERM/30/KILL/5'],
  },
  {
    name: 'daemonize2',
    label: 'daemonize2 stop()',
    short: 'daemonize2 stop()',
    returns: 'callback called',
    cmd: (pidFile) => [NODE, fixture('stop-daemonize2.js'), pidFile],
  },
  {
    name: 'ssd-own',
    label: 'start-stop-daemon --stop, on a daemon it started (plain Node app)',
    short: 'start-stop-daemon, its own daemon',
    returns: 'process exits',
    start: 'ssd',
    cmd: (pidFile) => ['start-stop-daemon', '--stop', '--pidfile', pidFile, '--retry', 'TERM/30/KILL/5'],
  },
]

/** Starts the daemon a stopper will stop; returns its pid once it is up. */
function startDaemon(kind, dir) {
  const argv =
    kind === 'ssd'
      ? ['start-stop-daemon', '--start', '--background', '--make-pidfile', '--pidfile', pidPath(dir), '--exec', NODE, '--', fixture('app-plain.js'), dir]
      : [NODE, fixture('daemonkit.js'), dir]
  const r = runLauncher(argv, { cwd: dir })
  if (r.status !== 0) throw new Error(`starting the daemon failed (${r.status ?? r.signal}): ${r.stderr}`)
  const marker = readJsonWait(path.join(dir, 'ready.json'), 10_000)
  if (!marker || readPid(pidPath(dir)) !== marker.pid) throw new Error(`the daemon did not come up in ${dir}`)
  return marker.pid
}

function measure(stopper, dir) {
  const pidFile = pidPath(dir)
  const pid = startDaemon(stopper.start, dir)
  sleepSync(20) // let the daemon go idle
  const r = spawnSync(PROBE, ['stopwatch', String(pid), '--', ...stopper.cmd(pidFile)], { cwd: dir, encoding: 'utf8', timeout: 60_000 })
  if (r.error) throw r.error
  const lines = r.stdout.split('\n')
  const probeLine = lines.find((l) => l.startsWith('probe '))
  if (!probeLine) throw new Error(`${stopper.name}: no stopwatch result: ${r.stdout} ${r.stderr}`)
  const p = JSON.parse(probeLine.slice(6))
  if (p.status !== 0) throw new Error(`${stopper.name}: the stopper exited with ${p.status}: ${r.stderr}`)
  const own = lines.find((l) => l.startsWith('{'))
  const fn = own ? JSON.parse(own) : undefined
  const exit = readJsonWait(path.join(dir, 'exit.json'), 1000)
  const gone = exited(pid)
  if (!gone) throw new Error(`${stopper.name}: daemon ${pid} still runs after the stopper returned`)
  if (!exit || p.daemonExit === null) throw new Error(`${stopper.name}: no exit stamp from daemon ${pid}`)
  const tStamp = BigInt(exit.t)
  const tKernel = BigInt(p.daemonExit)
  const tRet = fn ? BigInt(fn.tRet) : BigInt(p.cmdExit)
  const tCall = fn ? BigInt(fn.tCall) : BigInt(p.start)
  return {
    latency: ms(tRet - tStamp),
    fromKernel: ms(tRet - tKernel),
    teardown: ms(tKernel - tStamp),
    total: ms(tRet - tCall),
    pidFileLeft: readPid(pidFile) !== undefined,
  }
}

function benchStop(stoppers, runs, warmup) {
  const acc = new Map(stoppers.map((s) => [s.name, { latency: [], fromKernel: [], teardown: [], total: [], pidFileLeft: 0 }]))
  for (let round = 0; round < warmup + runs; round++) {
    for (let i = 0; i < stoppers.length; i++) {
      const s = stoppers[(i + round) % stoppers.length]
      const dir = tempDir(`stop-${s.name}`)
      try {
        let m
        try {
          m = measure(s, dir)
        } finally {
          cleanUp(dir)
        }
        if (round >= warmup) {
          const a = acc.get(s.name)
          for (const k of ['latency', 'fromKernel', 'teardown', 'total']) a[k].push(m[k])
          if (m.pidFileLeft) a.pidFileLeft++
        }
      } finally {
        removeDir(dir)
      }
    }
    log(`  stop (${MODE}): round ${round + 1}/${warmup + runs}${round < warmup ? ' (warm-up)' : ''}`)
  }
  return stoppers.map((s) => {
    const a = acc.get(s.name)
    return {
      name: s.name,
      label: s.label,
      short: s.short,
      returns: s.returns,
      runs: a.latency.length,
      latency: summary(a.latency),
      fromKernel: summary(a.fromKernel),
      teardown: summary(a.teardown),
      total: summary(a.total),
      pidFileLeft: a.pidFileLeft,
    }
  })
}

/** start -> status -> stop, three ways. Each returns { start, status, stop } in ms. */
const ROUND_TRIPS = [
  {
    name: 'daemonkit-class',
    label: 'daemonkit Daemon: await start(), status(), stop() in one process',
    run(dir) {
      const r = runLauncher([NODE, fixture('roundtrip.js'), dir], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
      if (r.status !== 0) throw new Error(`roundtrip.js exited with ${r.status ?? r.signal}: ${r.stderr}`)
      return JSON.parse(r.stdout.toString())
    },
  },
  {
    name: 'daemonkit-cli',
    label: 'daemonkit start / status / stop (three CLI commands)',
    run(dir) {
      const pidFile = pidPath(dir)
      return commands(dir, [
        [NODE, CLI, 'start', '-p', pidFile, '--', NODE, fixture('app-plain.js'), dir],
        [NODE, CLI, 'status', '-p', pidFile],
        [NODE, CLI, 'stop', '-p', pidFile],
      ])
    },
  },
  {
    name: 'ssd',
    label: 'start-stop-daemon --start --background / --status / --stop --retry',
    run(dir) {
      const pidFile = pidPath(dir)
      return commands(dir, [
        ['start-stop-daemon', '--start', '--background', '--make-pidfile', '--pidfile', pidFile, '--exec', NODE, '--', fixture('app-plain.js'), dir],
        ['start-stop-daemon', '--status', '--pidfile', pidFile],
        ['start-stop-daemon', '--stop', '--pidfile', pidFile, '--retry', 'TERM/30/KILL/5', '--remove-pidfile'],
      ])
    },
  },
]

function commands(dir, argvs) {
  const [start, status, stop] = argvs.map((argv) => {
    const r = runLauncher(argv, { cwd: dir })
    if (r.status !== 0) throw new Error(`${argv.slice(0, 3).join(' ')} exited with ${r.status ?? r.signal}: ${r.stderr}`)
    return ms(r.t1 - r.t0)
  })
  return { start, status, stop }
}

function benchRoundTrips(runs, warmup) {
  const acc = new Map(ROUND_TRIPS.map((t) => [t.name, { start: [], status: [], stop: [], total: [] }]))
  for (let round = 0; round < warmup + runs; round++) {
    for (let i = 0; i < ROUND_TRIPS.length; i++) {
      const t = ROUND_TRIPS[(i + round) % ROUND_TRIPS.length]
      const dir = tempDir(`rt-${t.name}`)
      try {
        let r
        try {
          r = t.run(dir)
        } finally {
          cleanUp(dir, 0)
        }
        if (round >= warmup) {
          const a = acc.get(t.name)
          a.start.push(r.start)
          a.status.push(r.status)
          a.stop.push(r.stop)
          a.total.push(r.start + r.status + r.stop)
        }
      } finally {
        removeDir(dir)
      }
    }
    log(`  round trip: round ${round + 1}/${warmup + runs}${round < warmup ? ' (warm-up)' : ''}`)
  }
  return ROUND_TRIPS.map((t) => {
    const a = acc.get(t.name)
    return { name: t.name, label: t.label, start: summary(a.start), status: summary(a.status), stop: summary(a.stop), total: summary(a.total) }
  })
}

function main() {
  if (!PROBE || !(RUNS >= 1) || !['subreaper', 'pid1'].includes(MODE)) throw new Error('usage: node bench/stop.js PROBE RUNS subreaper|pid1')
  const t0 = now()
  if (MODE === 'subreaper') {
    const stop = benchStop(STOPPERS, RUNS, 1)
    const roundTrips = benchRoundTrips(RUNS, 1)
    process.stdout.write(`${JSON.stringify({ mode: MODE, stop, roundTrips, seconds: ms(now() - t0) / 1000 })}\n`)
  } else {
    const stop = benchStop(STOPPERS.filter((s) => ['daemonkit-fn', 'ssd', 'daemonize2'].includes(s.name)), RUNS, 0)
    process.stdout.write(`${JSON.stringify({ mode: MODE, stop, seconds: ms(now() - t0) / 1000 })}\n`)
  }
}

try {
  main()
} catch (err) {
  console.error(`bench/stop.js failed: ${err && err.stack ? err.stack : err}`)
  process.exit(1)
}
