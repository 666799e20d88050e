'use strict'
// Benchmark 1: launch-to-ready wall time.
//
// Each variant is timed from just before the harness starts `node <fixture> <pidfile>` until
// that launcher process has exited (spawnSync returns). For the daemon variants the daemon is
// then checked (alive, not a zombie), stopped by its pid and waited for before the next run.
// Variants run round-robin, in a rotating order, so drift on the machine hits all of them alike.

const { spawnSync } = require('node:child_process')
const path = require('node:path')
const fs = require('node:fs')

const { PKG_ROOT, now, ms, summary, procStat, exited, stopAndReap, readPid, tempDir, removeDir, sleepSync } = require('./lib')

const FIXTURES = path.join(__dirname, 'fixtures')
const fixture = (name) => path.join(FIXTURES, name)

/** Runs `node script ...args` to completion; returns elapsed ms. Throws on any failure. */
function runNode(script, args, cwd) {
  const t0 = now()
  const r = spawnSync(process.execPath, [script, ...args], {
    cwd,
    // stdout ignored; stderr kept for error messages. A daemon that kept the launcher's stderr
    // open would hold spawnSync until the timeout: that is reported, not hidden.
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 15_000,
  })
  const t1 = now()
  const stderr = r.stderr ? r.stderr.toString().trim() : ''
  if (r.error) throw new Error(`${path.basename(script)}: ${r.error.message}${stderr ? `\n${stderr}` : ''}`)
  if (r.status !== 0) {
    throw new Error(`${path.basename(script)} exited with ${r.status ?? r.signal}${stderr ? `\n${stderr}` : ''}`)
  }
  return { elapsed: ms(t1 - t0), t0, t1 }
}

/** After a launcher exited 0: find the daemon, check it runs, note its session, stop it. */
function checkAndStop(pidFile, name) {
  const pid = readPid(pidFile)
  if (pid === undefined) throw new Error(`${name}: no pid in ${pidFile} after the launcher exited`)
  const st = procStat(pid)
  if (!st || exited(pid)) throw new Error(`${name}: daemon ${pid} is not running after the launcher exited`)
  const sessionLeader = st.sid === pid
  const how = stopAndReap(pid)
  return { pid, sessionLeader, how }
}

/** After a failed run: stop a daemon the run's pidfile names, if it still runs. */
function stopLeftover(dir) {
  const pid = readPid(path.join(dir, 'daemon.pid'))
  if (pid !== undefined && pid > 1 && !exited(pid)) stopAndReap(pid)
}

function daemonVariant(name, script) {
  return {
    name,
    run(dir) {
      const pidFile = path.join(dir, 'daemon.pid')
      const { elapsed } = runNode(script, [pidFile], dir)
      const daemon = checkAndStop(pidFile, name)
      return { elapsed, daemon }
    },
  }
}

const VARIANTS = [
  {
    name: 'floor',
    label: 'floor: 2 × node start + require(pkg)',
    run(dir) {
      const t0 = now()
      runNode(fixture('floor.js'), [], dir)
      runNode(fixture('floor.js'), [], dir)
      return { elapsed: ms(now() - t0) }
    },
  },
  {
    name: 'bare',
    label: 'reference: 2 × bare node start (empty script)',
    run(dir) {
      const t0 = now()
      runNode(fixture('empty.js'), [], dir)
      runNode(fixture('empty.js'), [], dir)
      return { elapsed: ms(now() - t0) }
    },
  },
  {
    name: 'single',
    label: 'reference: 1 × node start + require(pkg)',
    run(dir) {
      return { elapsed: runNode(fixture('floor.js'), [], dir).elapsed }
    },
  },
  { ...daemonVariant('daemonkit', fixture('daemonkit.js')), label: 'daemonkit daemonize()' },
  { ...daemonVariant('peer-ipc', fixture('peer-ipc.js')), label: "peer: spawn detached + IPC 'ready'" },
  { ...daemonVariant('peer-pipe', fixture('peer-pipe.js')), label: "peer: spawn detached + pipe 'ready'" },
]

/**
 * Runs every variant `runs` times (after `warmup` discarded rounds).
 * Returns { variants: [{ name, label, times, summary, sessionLeader, stoppedBy }], ratio }.
 */
function benchLaunch({ runs, warmup, log }) {
  const times = new Map(VARIANTS.map((v) => [v.name, []]))
  const leaders = new Map(VARIANTS.map((v) => [v.name, new Set()]))
  const stops = new Map(VARIANTS.map((v) => [v.name, new Map()]))
  for (let round = 0; round < warmup + runs; round++) {
    const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length])
    for (const v of order) {
      const dir = tempDir(v.name)
      try {
        let r
        try {
          r = v.run(dir)
        } catch (err) {
          stopLeftover(dir)
          throw err
        }
        if (round >= warmup) {
          times.get(v.name).push(r.elapsed)
          if (r.daemon) {
            leaders.get(v.name).add(r.daemon.sessionLeader)
            const s = stops.get(v.name)
            s.set(r.daemon.how, (s.get(r.daemon.how) ?? 0) + 1)
          }
        }
      } finally {
        removeDir(dir)
      }
      sleepSync(5) // let the stopped daemon's exit settle before the next start
    }
    log(`  launch: round ${round + 1}/${warmup + runs}${round < warmup ? ' (warm-up)' : ''}`)
  }
  const variants = VARIANTS.map((v) => ({
    name: v.name,
    label: v.label,
    times: times.get(v.name),
    summary: summary(times.get(v.name)),
    sessionLeader: [...leaders.get(v.name)],
    stoppedBy: Object.fromEntries(stops.get(v.name)),
  }))
  const by = Object.fromEntries(variants.map((v) => [v.name, v.summary]))
  return {
    variants,
    ratio: by.daemonkit.median / by.floor.median,
    ratioPeer: by['peer-ipc'].median / by.floor.median,
    ratioPeerBare: by['peer-ipc'].median / by.bare.median,
  }
}

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

function readStamps(file, waitMs = 3000) {
  const deadline = Date.now() + waitMs
  for (;;) {
    try {
      const raw = JSON.parse(fs.readFileSync(file, 'utf8'))
      return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, BigInt(v)]))
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`no stamps in ${file}: ${err.message}`)
      sleepSync(2)
    }
  }
}

/** Runs the traced fixture `runs` times; returns per-stage medians (ms) and the total. */
function benchBreakdown({ runs, warmup, log }) {
  const perStage = STAGES.map(() => [])
  const totals = []
  for (let i = 0; i < warmup + runs; i++) {
    const dir = tempDir('traced')
    try {
      const pidFile = path.join(dir, 'daemon.pid')
      let h, l, d
      try {
        h = runNode(fixture('daemonkit-traced.js'), [pidFile, dir], dir)
        l = readStamps(path.join(dir, 'launcher.json'))
        d = readStamps(path.join(dir, 'daemon.json'))
      } catch (err) {
        stopLeftover(dir)
        throw err
      }
      checkAndStop(pidFile, 'traced')
      if (i >= warmup) {
        STAGES.forEach(([, f], k) => {
          // A stamp the package no longer produces (e.g. launch() renamed) leaves that stage n/a.
          try {
            perStage[k].push(ms(f(h, l, d)))
          } catch {
            // BigInt minus undefined: skip.
          }
        })
        totals.push(h.elapsed)
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

module.exports = { benchLaunch, benchBreakdown, PKG_ROOT }
