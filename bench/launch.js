'use strict'
// Benchmark 1: launch-to-ready wall time.
//
// Each run: a fresh temp dir; the harness stamps t0 (CLOCK_MONOTONIC), runs the launcher to
// completion (spawnSync) and stamps t1; the app stamps the moment it is up in dir/ready.json
// (same clock). Ready = max(t1, app up): the launcher has returned AND the daemon is up. For a
// launcher that waits for readiness that is t1; for one that does not, it is the app's stamp.
// Then the daemon is checked (alive, session), stopped by pid and waited for. Tools run
// round-robin in a rotating order, so drift on the machine hits all of them alike.

const fs = require('node:fs')
const path = require('node:path')

const { NODE, fixture, now, ms, summary, procStat, exited, readJsonWait, tempDir, removeDir, sleepSync } = require('./lib')
const { runLauncher, daemonPids, cleanUp, pidPath } = require('./tools')

/** Reference rows: no daemon, only the Node start-ups a self-re-executing launcher cannot avoid. */
const REFERENCES = [
  {
    name: 'bare2',
    label: 'reference: 2 × bare node start-up',
    run: (dir, env) => twice(fixture('empty.js'), dir, env),
  },
  {
    name: 'require2',
    label: 'reference: 2 × (node start-up + require daemonkit)',
    run: (dir, env) => twice(fixture('require-only.js'), dir, env),
  },
]

function twice(script, dir, env) {
  const t0 = now()
  for (let i = 0; i < 2; i++) {
    const r = runLauncher([NODE, script], { cwd: dir, env })
    if (r.status !== 0) throw new Error(`${script} exited with ${r.status ?? r.signal}: ${r.stderr}`)
  }
  return { ready: ms(now() - t0) }
}

/** One launch of `tool` in `dir`: { ready, exit, beforeUp, sessionLeader, pidFileNames }. */
function launchOnce(tool, dir, env) {
  const r = runLauncher(tool.cmd(dir), { cwd: dir, env })
  if (r.status !== 0 || r.timedOut) {
    throw new Error(`${tool.name}: launcher exited with ${r.timedOut ? 'a timeout' : (r.status ?? r.signal)}${r.stderr ? `: ${r.stderr}` : ''}`)
  }
  const marker = readJsonWait(path.join(dir, 'ready.json'), 10_000)
  if (!marker) throw new Error(`${tool.name}: the daemon never wrote its ready marker`)
  const up = BigInt(marker.t)
  const st = procStat(marker.pid)
  if (!st || exited(marker.pid)) throw new Error(`${tool.name}: daemon ${marker.pid} is not running after it said it was up`)
  const { pidFilePid } = daemonPids(dir)
  let pidFileNames = 'no pidfile'
  if (pidFilePid === marker.pid) pidFileNames = 'the daemon'
  else if (pidFilePid !== undefined && st.ppid === pidFilePid) pidFileNames = "the daemon's supervisor"
  else if (pidFilePid !== undefined) pidFileNames = `another process (${pidFilePid})`
  return {
    ready: ms((r.t1 > up ? r.t1 : up) - r.t0),
    exit: ms(r.t1 - r.t0),
    beforeUp: r.t1 < up,
    sessionLeader: st.session === marker.pid,
    pidFileNames,
  }
}

/**
 * Runs every tool and reference `runs` times after `warmup` discarded rounds, with `env` as the
 * environment of every launcher (default: this process's).
 * Returns [{ name, label, ready: summary, exit: summary, beforeUp, runs, sessionLeader, pidFileNames }].
 */
function benchLaunch({ tools, runs, warmup, log, env }) {
  const all = [...tools, ...REFERENCES]
  const acc = new Map(all.map((t) => [t.name, { ready: [], exit: [], beforeUp: 0, leaders: new Set(), names: new Set() }]))
  for (let round = 0; round < warmup + runs; round++) {
    const order = all.map((_, i) => all[(i + round) % all.length])
    for (const t of order) {
      const dir = tempDir(t.name)
      try {
        let r
        try {
          r = t.run ? t.run(dir, env) : launchOnce(t, dir, env)
        } finally {
          if (!t.run) cleanUp(dir, 3000)
        }
        if (round >= warmup) {
          const a = acc.get(t.name)
          a.ready.push(r.ready)
          if (r.exit !== undefined) a.exit.push(r.exit)
          if (r.beforeUp) a.beforeUp++
          if (r.sessionLeader !== undefined) a.leaders.add(r.sessionLeader)
          if (r.pidFileNames) a.names.add(r.pidFileNames)
        }
      } finally {
        removeDir(dir)
      }
      sleepSync(5) // let the stopped daemon's exit settle before the next start
    }
    log(`  launch: round ${round + 1}/${warmup + runs}${round < warmup ? ' (warm-up)' : ''}`)
  }
  return all.map((t) => {
    const a = acc.get(t.name)
    return {
      name: t.name,
      label: t.label,
      reference: Boolean(t.run),
      ready: summary(a.ready),
      exit: a.exit.length ? summary(a.exit) : undefined,
      beforeUp: a.beforeUp,
      runs: a.ready.length,
      sessionLeader: [...a.leaders],
      pidFileNames: [...a.names],
    }
  })
}

// Where a daemonkit launch spends its time: the traced fixture (daemonkit.js with stamps).

/** The stages of a daemonkit launch, from the traced fixture's stamps (all ms). */
const STAGES = [
  ['launcher: harness spawn → script starts (Node start-up #1)', (h, l) => l.scriptStart - h.t0],
  ['launcher: require(daemonkit)', (h, l) => l.required - l.scriptStart],
  ['launcher: daemonize() → native launch call (binding load, options, lock, pipes, env)', (h, l) => l.launchCall - l.daemonizeCall],
  ['launcher: native launch (clone, setsid, clone, execve) — blocking', (h, l) => l.launchReturn - l.launchCall],
  ['daemon: execve → script starts (Node start-up #2)', (h, l, d) => d.scriptStart - l.launchReturn],
  ['daemon: require(daemonkit)', (h, l, d) => d.required - d.scriptStart],
  ['daemon: daemonize() adopts the hand-off (binding load, pid write), sends READY', (h, l, d) => d.readySent - d.daemonizeCall],
  ['launcher: READY sent → launcher sees it (onLaunched)', (h, l, d) => l.readySeen - d.readySent],
  ['launcher: onLaunched → process exited (harness sees it)', (h, l) => h.t1 - l.readySeen],
]

function readStamps(file) {
  const raw = readJsonWait(file, 3000)
  if (!raw) throw new Error(`no stamps in ${file}`)
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, BigInt(v)]))
}

/** Runs the traced fixture `runs` times; returns per-stage summaries (ms) and the total. */
function benchBreakdown({ runs, warmup, log }) {
  const perStage = STAGES.map(() => [])
  const totals = []
  for (let i = 0; i < warmup + runs; i++) {
    const dir = tempDir('traced')
    try {
      let h, l, d
      try {
        h = runLauncher([NODE, fixture('daemonkit-traced.js'), pidPath(dir), dir], { cwd: dir })
        if (h.status !== 0) throw new Error(`daemonkit-traced.js exited with ${h.status ?? h.signal}: ${h.stderr}`)
        l = readStamps(path.join(dir, 'launcher.json'))
        d = readStamps(path.join(dir, 'daemon.json'))
      } finally {
        cleanUp(dir)
      }
      if (i >= warmup) {
        STAGES.forEach(([, f], k) => {
          // A stamp the package no longer produces (e.g. launch() renamed) leaves that stage n/a.
          try {
            perStage[k].push(ms(f(h, l, d)))
          } catch {
            // BigInt minus undefined: skip.
          }
        })
        totals.push(ms(h.t1 - h.t0))
      }
    } finally {
      removeDir(dir)
    }
    sleepSync(5)
  }
  log(`  breakdown: ${runs} traced launches done`)
  return {
    stages: STAGES.map(([name], k) => ({ name, summary: perStage[k].length ? summary(perStage[k]) : undefined })),
    total: summary(totals),
  }
}

module.exports = { benchLaunch, benchBreakdown }

// Kept for a reader who wants to see one tool's launch by hand: node bench/launch.js TOOL
if (require.main === module) {
  const { compileHelpers, machine } = require('./lib')
  const { launchers } = require('./tools')
  const bin = compileHelpers(fs.mkdtempSync('/tmp/daemonkit-bench-bin-'))
  const tool = launchers({ floor: bin.floor, versions: machine().versions }).find((t) => t.name === process.argv[2])
  if (!tool) throw new Error('usage: node bench/launch.js TOOL')
  const dir = tempDir(tool.name)
  try {
    console.log(launchOnce(tool, dir))
  } finally {
    cleanUp(dir, 3000)
    removeDir(dir)
    removeDir(path.dirname(bin.floor))
  }
}
