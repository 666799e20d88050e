'use strict'
// `npm run bench`: daemonkit side by side with what users would pick instead — the npm packages
// `daemon` and `daemonize2`, child_process.spawn detached, Debian's start-stop-daemon, and a
// plain C double fork as the floor — in one run on this machine:
//
//   1. launch-to-ready wall time (launch.js), and where a daemonkit launch spends it;
//   2. how long the launch call blocks the launching process at 0, 1 and 4 GiB (blocking.js);
//   3. stop latency and start -> status -> stop round trips (stop.js);
//   4. idle daemon memory over a bare Node process, and the supervisor's (memory.js);
//   5. require() time (requiretime.js);
//   6. correctness properties, observed (correctness.js);
//   7. restarts under load: daemonkit's graceful restarts against pm2 reloads (restarts.js).
// Section 8, the start (require, launch to ready, the hand-off from a big launcher), is
// bench/startup.js, run on its own: `node bench/startup.js`.
//
// Prints the tables and writes bench/RESULTS.md and bench/results.svg (report.js). Needs Linux,
// gcc, start-stop-daemon, util-linux script and flock. Knobs (environment): BENCH_RUNS (launch runs
// per launcher, default 15), BENCH_TRACE_RUNS (10), BENCH_BLOCK_RUNS (per size, 12),
// BENCH_STOP_RUNS (10), BENCH_STOP_PID1_RUNS (3; 0 skips), BENCH_MEM_BATCHES (5),
// BENCH_REQUIRE_RUNS (15), BENCH_RESTARTS (20), BENCH_STEADY_SECONDS (5).

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const lib = require('./lib')
const { PKG_ROOT, NODE, now, ms, compileHelpers, machine, removeDir, procStat, processesMentioning, stopAndReap } = lib

const intEnv = (name, dflt, min) => {
  const v = process.env[name] === undefined ? dflt : Number(process.env[name])
  if (!Number.isInteger(v) || v < min) throw new Error(`${name} must be an integer >= ${min}`)
  return v
}
const config = {
  runs: intEnv('BENCH_RUNS', 15, 10),
  traceRuns: intEnv('BENCH_TRACE_RUNS', 10, 5),
  blockRuns: intEnv('BENCH_BLOCK_RUNS', 12, 10),
  stopRuns: intEnv('BENCH_STOP_RUNS', 10, 5),
  stopPid1Runs: intEnv('BENCH_STOP_PID1_RUNS', 3, 0),
  memBatches: intEnv('BENCH_MEM_BATCHES', 5, 3),
  requireRuns: intEnv('BENCH_REQUIRE_RUNS', 15, 10),
}

const loadavg = () => os.loadavg().map((x) => x.toFixed(2)).join(' / ')
const log = (line) => process.stderr.write(`${line}\n`)

function preflight() {
  if (process.platform !== 'linux') throw new Error('the benchmarks need Linux (/proc, clone, pidfd)')
  const dist = path.join(PKG_ROOT, 'dist')
  if (!fs.existsSync(path.join(dist, 'index.js'))) throw new Error('dist/ is missing: build the package first (npm run build)')
  // Throws, saying why, where the loader finds no binding for this machine.
  require(path.join(PKG_ROOT, 'binding'))
  for (const name of ['daemon', 'daemonize2']) {
    if (!fs.existsSync(path.join(PKG_ROOT, 'node_modules', name, 'package.json'))) {
      throw new Error(`the devDependency ${name} is missing: npm ci`)
    }
  }
  for (const [cmd, args, pkg] of [
    ['gcc', ['--version'], 'gcc'],
    ['start-stop-daemon', ['--version'], 'dpkg'],
    ['script', ['--version'], 'util-linux (bsdutils)'],
    ['flock', ['--version'], 'util-linux'],
  ]) {
    const r = spawnSync(cmd, args, { stdio: 'ignore' })
    if (r.error) throw new Error(`${cmd} is needed (Debian package ${pkg})`)
  }
  // Benchmarking stale JavaScript would mislead: say so loudly.
  const src = path.join(PKG_ROOT, 'src')
  const stale = fs
    .readdirSync(src)
    .filter((f) => f.endsWith('.ts'))
    .filter((f) => {
      const js = path.join(dist, f.replace(/\.ts$/, '.js'))
      return !fs.existsSync(js) || fs.statSync(js).mtimeMs < fs.statSync(path.join(src, f)).mtimeMs
    })
  if (!stale.length) return undefined
  const warning = `dist/ is older than src/ (${stale.join(', ')}): the figures are for the last build; run npm run build:ts`
  log(`WARNING: ${warning}`)
  return warning
}

/** A child's CLOCK_MONOTONIC stamp must fall between the harness's stamps around it. */
function clockCheck() {
  let worst = 0
  for (let i = 0; i < 3; i++) {
    const t0 = now()
    const r = spawnSync(NODE, ['-e', 'process.stdout.write(String(process.hrtime.bigint()))'], { encoding: 'utf8' })
    const t1 = now()
    const child = BigInt(r.stdout)
    if (!(child > t0 && child < t1)) throw new Error('process.hrtime.bigint() is not one clock across processes here: the cross-process stamps would be wrong')
    worst = Math.max(worst, ms(t1 - t0))
  }
  return `passed: 3 children, each inside a ≤ ${worst.toFixed(0)} ms window`
}

function runChild(argv, what, timeout) {
  const r = spawnSync(argv[0], argv.slice(1), { cwd: PKG_ROOT, stdio: ['ignore', 'pipe', 'inherit'], timeout, maxBuffer: 64 * 2 ** 20 })
  if (r.error) throw new Error(`${what}: ${r.error.message}`)
  if (r.status !== 0) throw new Error(`${what} exited with ${r.status ?? r.signal}`)
  const lines = r.stdout.toString().trim().split('\n')
  return JSON.parse(lines[lines.length - 1])
}

/** Processes whose command line names one of the bench's temp dirs (none should outlive it). */
function leftovers() {
  const marker = path.join(os.tmpdir(), 'daemonkit-bench-')
  const found = []
  for (const pid of processesMentioning(marker)) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      if (pid !== process.pid) found.push({ pid, cmd: cmd.split('\0').join(' ').trim(), state: procStat(pid).state })
    } catch {
      // gone meanwhile
    }
  }
  return found
}

async function main() {
  const started = now()
  const staleWarning = preflight()
  const { launchers } = require('./tools')
  const { benchLaunch, benchBreakdown } = require('./launch')
  const { benchMemory } = require('./memory')
  const { benchRequire } = require('./requiretime')
  const { benchCorrectness } = require('./correctness')
  const { render } = require('./report')

  const m = { ...machine(), loadBefore: loadavg() }
  const binDir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-bench-bin-'))
  try {
    const bin = compileHelpers(binDir)
    const tools = launchers({ floor: bin.floor, versions: m.versions })
    const check = clockCheck()
    log(`daemonkit bench: ${tools.map((t) => t.name).join(', ')}; clock check ${check}`)

    log('1. launch to ready')
    const launch = benchLaunch({ tools, runs: config.runs, warmup: 2, log })
    const breakdown = benchBreakdown({ runs: config.traceRuns, warmup: 2, log })

    log(`2. blocking: growing to 0, 1, 4 GiB in a child process, ${config.blockRuns} calls per tool and size`)
    const blocking = runChild([NODE, '--expose-gc', path.join(__dirname, 'blocking.js'), String(config.blockRuns)], 'bench/blocking.js', 300_000)

    log('3. stop latency and round trips (under a reaping subreaper)')
    const stop = runChild([bin.probe, 'subreaper', NODE, path.join(__dirname, 'stop.js'), bin.probe, String(config.stopRuns), 'subreaper'], 'bench/stop.js', 300_000)
    let stopPid1
    if (config.stopPid1Runs > 0) {
      log(`   and ${config.stopPid1Runs} stops each as this machine is (PID 1 reaps late)`)
      stopPid1 = runChild([NODE, path.join(__dirname, 'stop.js'), bin.probe, String(config.stopPid1Runs), 'pid1'], 'bench/stop.js pid1', 300_000)
    }

    log('4. memory')
    const memory = await benchMemory({ tools, batches: config.memBatches, log })

    log('5. require time')
    const required = benchRequire({ versions: m.versions, runs: config.requireRuns, log })

    log('6. correctness')
    const correctness = await benchCorrectness({ tools, probe: bin.probe, log })

    log(`7. restarts under load (${process.env.BENCH_RESTARTS ?? 20} per path; daemonkit graceful, pm2 reload)`)
    const restarts = runChild([NODE, path.join(__dirname, 'restarts.js')], 'bench/restarts.js', 900_000)

    const left = leftovers()
    for (const p of left) {
      log(`WARNING: left behind: pid ${p.pid} (${p.state}) ${p.cmd}: stopping it`)
      stopAndReap(p.pid, { mention: path.join(os.tmpdir(), 'daemonkit-bench-') })
    }
    if (left.length) throw new Error(`${left.length} process(es) outlived their run: a bug in the bench`)

    const seconds = ms(now() - started) / 1000
    const results = {
      machine: m,
      config,
      staleWarning,
      clockCheck: check,
      launch,
      breakdown,
      blocking,
      stop,
      stopPid1,
      memory,
      require: required,
      correctness,
      seconds,
      loadAfter: loadavg(),
    }
    const out = render(results, tools)
    process.stdout.write(out.console)
    // Section 8 (bench/startup.js, run on its own) stays as it was.
    const previous = fs.existsSync(path.join(__dirname, 'RESULTS.md')) ? fs.readFileSync(path.join(__dirname, 'RESULTS.md'), 'utf8') : ''
    const startup = /<!-- startup -->[\s\S]*<!-- \/startup -->/.exec(previous)?.[0]
    fs.writeFileSync(path.join(__dirname, 'RESULTS.md'), startup ? `${out.md.trimEnd()}\n\n${startup}\n` : out.md)
    fs.writeFileSync(path.join(__dirname, 'results.svg'), out.svg)
    const restartsReport = require('./restarts')
    restartsReport.write(restarts) // its own section of RESULTS.md, and restarts.svg
    process.stdout.write(`\nRestarts under load:\n${restartsReport.table(restarts)}\n`)
  } finally {
    removeDir(binDir)
  }
}

main().catch((err) => {
  console.error(`bench failed: ${err && err.stack ? err.stack : err}`)
  process.exit(1)
})
