'use strict'
// Benchmark 8: the start, three ways.
//   1. require() time of daemonkit against the one-file `daemon` package (requiretime.js);
//   2. launch-to-ready of daemonize() against two bare Node start-ups (launch.js);
//   3. the hand-off from a launcher holding 0 and 2 GiB of Buffers (fixtures/handoff-traced.js):
//      daemonize() → the daemon's exec, the daemon's own Node start-up (with its CPU time and
//      run-queue wait from /proc/self/schedstat), what the launcher does meanwhile (CPU of all
//      its threads, page faults), READY → the launcher has exited; and child_process.spawn()
//      from the same launcher → its child's first line, for comparison.
//
// `node bench/startup.js` prints the tables and updates its section of bench/RESULTS.md
// (between the startup markers). Knobs: BENCH_STARTUP_RUNS (per row, default 11).

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { NODE, fixture, ms, summary, machine, readJsonWait, tempDir, removeDir, sleepSync } = require('./lib')
const { launchers, runLauncher, cleanUp } = require('./tools')
const { benchRequire } = require('./requiretime')
const { benchLaunch } = require('./launch')

const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 11)
const SIZES_GIB = [0, 2]
const log = (line) => process.stderr.write(`${line}\n`)
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')

function readStamps(file) {
  const raw = readJsonWait(file, 10_000)
  if (!raw) throw new Error(`no stamps in ${file}`)
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, BigInt(v)]))
}

/** One hand-off (`daemonize` or `spawn`) from a launcher holding `gib` GiB; returns its stages in ms. */
function handoffOnce(mode, gib) {
  const dir = tempDir(`handoff-${mode}-${gib}`)
  try {
    const h = runLauncher([NODE, fixture('handoff-traced.js'), mode, String(gib), dir], { cwd: dir, timeout: 60_000 })
    if (h.status !== 0) throw new Error(`handoff-traced.js ${mode} ${gib} exited with ${h.status ?? h.signal}: ${h.stderr}`)
    const l = readStamps(path.join(dir, 'launcher.json'))
    const d = readStamps(path.join(dir, 'daemon.json'))
    const row = {
      nodeStart: ms(d.scriptStart - l.launchReturn),
      nodeStartCpu: Number(d.cpu) / 1e6,
      nodeStartWait: Number(d.wait) / 1e6,
    }
    if (mode === 'spawn') return { ...row, toExec: ms(l.launchReturn - l.launchCall) }
    return {
      ...row,
      toExec: ms(l.launchReturn - l.daemonizeCall),
      daemonToReady: ms(d.readySent - d.scriptStart),
      launcherCpu: Number(l.launcherCpu) / 1000,
      launcherFaults: Number(l.launcherFaults),
      launcherExit: ms(h.t1 - l.readySeen),
      total: ms(h.t1 - h.t0),
    }
  } finally {
    if (mode === 'daemonize') cleanUp(dir)
    removeDir(dir)
  }
}

function benchHandoff() {
  const acc = new Map()
  for (let round = 0; round < RUNS + 1; round++) {
    for (const mode of ['daemonize', 'spawn']) {
      for (const gib of round % 2 ? [...SIZES_GIB].reverse() : SIZES_GIB) {
        const r = handoffOnce(mode, gib)
        if (round === 0) continue // warms the file cache
        const key = `${mode} ${gib}`
        if (!acc.has(key)) acc.set(key, {})
        for (const [k, v] of Object.entries(r)) (acc.get(key)[k] ??= []).push(v)
        sleepSync(5)
      }
    }
    log(`  hand-off: round ${round + 1}/${RUNS + 1}${round === 0 ? ' (warm-up)' : ''}`)
  }
  return Object.fromEntries([...acc].map(([key, cols]) => [key, Object.fromEntries(Object.entries(cols).map(([k, v]) => [k, summary(v)]))]))
}

function section(r) {
  const req = Object.fromEntries(r.require.map((x) => [x.name, x.summary]))
  const launch = Object.fromEntries(r.launch.map((x) => [x.name, x.ready]))
  const clean = r.launchClean && Object.fromEntries(r.launchClean.map((x) => [x.name, x.ready]))
  const H = r.handoff
  const cell = (key, col) => (H[key]?.[col] ? f2(H[key][col].median) : '-')
  const rows = [
    ['daemonize() → the daemon\'s exec (launcher: options, lock, pipes, clone, clone, execve)', 'toExec'],
    ['the daemon\'s Node start-up (exec → its first line)', 'nodeStart'],
    ['… of which the daemon\'s own CPU time', 'nodeStartCpu'],
    ['… of which the daemon waited for a CPU', 'nodeStartWait'],
    ['the daemon: first line → READY sent (require, daemonize())', 'daemonToReady'],
    ['the launcher meanwhile (launch → READY seen): CPU of all its threads', 'launcherCpu'],
    ['the launcher meanwhile: minor page faults (count)', 'launcherFaults'],
    ['READY seen → the launcher has exited (the shell gets its prompt)', 'launcherExit'],
    ['the whole launch (harness: start → exit)', 'total'],
  ]
  return [
    '<!-- startup -->',
    '## 8. The start: require(), launch to ready, and the hand-off from a big launcher',
    '',
    `\`node bench/startup.js\` (${r.date}, Node ${process.version}, ${os.cpus().length} CPUs, load ${r.loadBefore} before, ${r.loadAfter} after;`,
    `medians of ${RUNS} runs per row, rows alternating${r.launchClean ? '; the rows without NODE_EXTRA_CA_CERTS alternate among themselves, in a second batch' : ''}).`,
    '',
    '| what | median ms | min ms | max ms |',
    '| --- | ---: | ---: | ---: |',
    ...r.require.filter((x) => x.name === 'daemonkit' || x.name === 'daemon').map((x) => `| require(): ${x.label} | ${f2(x.summary.median)} | ${f2(x.summary.min)} | ${f2(x.summary.max)} |`),
    ...r.launch.map((x) => `| launch to ready: ${x.label} | ${f2(x.ready.median)} | ${f2(x.ready.min)} | ${f2(x.ready.max)} |`),
    ...(r.launchClean ?? []).map((x) => `| launch to ready, without NODE_EXTRA_CA_CERTS: ${x.label} | ${f2(x.ready.median)} | ${f2(x.ready.min)} | ${f2(x.ready.max)} |`),
    '',
    `require('daemonkit') / require('daemon'): ${f2(req.daemonkit.median / req.daemon.median)}x; ` +
      `daemonize() launch to ready / 2 bare Node start-ups: ${f2(launch.daemonkit.median / launch.bare2.median)}x` +
      (clean
        ? ` with this machine's environment, ${f2(clean.daemonkit.median / clean.bare2.median)}x without NODE_EXTRA_CA_CERTS ` +
          `(2 Node start-ups that load daemonkit and do nothing else: ${f2(launch.require2.median / launch.bare2.median)}x and ${f2(clean.require2.median / clean.bare2.median)}x).`
        : ` (2 Node start-ups that load daemonkit and do nothing else: ${f2(launch.require2.median / launch.bare2.median)}x).`),
    ...(clean
      ? [
          '',
          `This machine sets NODE_EXTRA_CA_CERTS to its system CA bundle (${r.extraCaCerts}), which every Node process reads and parses at start-up: ` +
            `it makes a bare Node start-up ${f2((launch.bare2.median - clean.bare2.median) / 2)} ms slower, so the same launch reads as a smaller ratio with it. ` +
            'Both are shown; the one without it is the cost of daemonkit itself against a plain Node.',
        ]
      : []),
    '',
    'The hand-off from a launcher holding 0 and 2 GiB of Buffers (every page written, then 1.5 s of quiet),',
    'daemonize() with ready: \'auto\', and child_process.spawn() of a Node child from the same launcher:',
    '',
    '| stage (ms; medians) | daemonize, 0 GiB | daemonize, 2 GiB | spawn, 0 GiB | spawn, 2 GiB |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map(([label, col]) => `| ${label} | ${cell('daemonize 0', col)} | ${cell('daemonize 2', col)} | ${cell('spawn 0', col)} | ${cell('spawn 2', col)} |`),
    '',
    'For spawn, the first row is the spawn() call itself (libuv forks the whole launcher).',
    '',
    '**What a 2 GiB launcher changes, and why.** The daemon\'s own CPU time from its exec to its first line ' +
      `(${cell('daemonize 0', 'nodeStartCpu')} ms from a small launcher, ${cell('daemonize 2', 'nodeStartCpu')} ms from a 2 GiB one) ` +
      `and the launcher's CPU while the daemon starts (${cell('daemonize 0', 'launcherCpu')} vs ${cell('daemonize 2', 'launcherCpu')} ms, ` +
      `with ${cell('daemonize 0', 'launcherFaults')} vs ${cell('daemonize 2', 'launcherFaults')} page faults) do not grow with the launcher's memory: ` +
      'the children of clone(CLONE_VM | CLONE_VFORK) copy no page tables, and the launcher waits in its event loop until READY. ' +
      'What grows is the launcher\'s exit: the kernel frees its 2 GiB (every page was written) before the shell sees the exit status, ' +
      `${cell('daemonize 2', 'launcherExit')} ms after READY against ${cell('daemonize 0', 'launcherExit')} ms for a small launcher, and on two CPUs that ` +
      'teardown takes a CPU from the daemon just after it said ready. spawn() from the same launcher shows no such cost because its ' +
      'launcher is not the one that exits. The other size effect is V8\'s: growing external memory (Buffers) sets off ' +
      '"external memory pressure" GCs (a scavenge and a mark-compact on the main thread every few hundred ms while memory grows, ' +
      'seen with --trace-gc); a daemonize() called in that window pays for them, hence the 1.5 s of quiet above. ' +
      'The \'waited for a CPU\' rows are the machine\'s load, not the launcher\'s.',
    '<!-- /startup -->',
  ].join('\n')
}

/** Puts the section into bench/RESULTS.md, replacing the previous one. */
function write(r) {
  const file = path.join(__dirname, 'RESULTS.md')
  const md = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# daemonkit benchmarks\n'
  const text = section(r)
  const re = /<!-- startup -->[\s\S]*<!-- \/startup -->/
  fs.writeFileSync(file, re.test(md) ? md.replace(re, text) : `${md.trimEnd()}\n\n${text}\n`)
}

function benchStartup() {
  const loadBefore = os.loadavg().map((x) => x.toFixed(2)).join(' / ')
  const m = machine()
  log('8. the start: require() time')
  const required = benchRequire({ versions: m.versions, runs: RUNS, log })
  log('8. the start: launch to ready')
  const tools = launchers({ floor: '/bin/false', versions: m.versions }).filter((t) => t.name === 'daemonkit')
  const launch = benchLaunch({ tools, runs: RUNS, warmup: 1, log })
  // Measured again without the variable when it is set: see section().
  const extraCaCerts = process.env.NODE_EXTRA_CA_CERTS
  let launchClean
  if (extraCaCerts) {
    log('8. the start: launch to ready without NODE_EXTRA_CA_CERTS')
    const env = { ...process.env }
    delete env.NODE_EXTRA_CA_CERTS
    launchClean = benchLaunch({ tools, runs: RUNS, warmup: 1, log, env })
  }
  log('8. the start: the hand-off from 0 and 2 GiB launchers')
  const handoff = benchHandoff()
  return { date: new Date().toISOString(), loadBefore, loadAfter: os.loadavg().map((x) => x.toFixed(2)).join(' / '), require: required, launch, launchClean, extraCaCerts, handoff }
}

module.exports = { benchStartup, section, write }

if (require.main === module) {
  const r = benchStartup()
  write(r)
  process.stdout.write(`${section(r)}\n`)
}
