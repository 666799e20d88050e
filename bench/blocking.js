'use strict'
// Benchmark 2: how long the launch call blocks the launching Node process, as its memory grows.
//
// Run as its own process by run.js (`node --expose-gc bench/blocking.js RUNS`); prints one JSON
// object on stdout. In this one process it grows resident memory to 0, 1 and 4 GiB of Buffers
// (off the V8 heap, every page written so that it is really resident), and at each size times,
// with process.hrtime.bigint() around the synchronous call, each launcher starting a real Node
// daemon (node bench/fixtures/empty.js, which exits at once):
//   - daemonkit: the binding's launch(), the synchronous call inside daemonize(), Daemon#start()
//     and spawnDaemon() (double clone(CLONE_VM|CLONE_VFORK) + execve; returns once it exec'd);
//   - child_process.spawn(node, [script], { detached: true, stdio: 'ignore' }) (libuv forks);
//   - the `daemon` package's daemon(script, args, opts), the call its daemon() makes before
//     process.exit() (spawn detached);
//   - daemonize2's start() (constructed beforehand): pidfile checks and writes, spawn detached
//     with an IPC channel, the init message.
// start-stop-daemon and the C floor are not calls in a Node process: a Node program that wants
// them runs them with child_process.spawn, which is the spawn row.
// Tools alternate run by run; between calls the harness waits for the Node daemon to finish.

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const { PKG_ROOT, fixture, now, ms, summary, sleep } = require('./lib')

const binding = require(`${PKG_ROOT}/binding`)
const daemonPkg = require('daemon')
const daemonize2 = require('daemonize2')

const GiB = 2 ** 30
const CHUNK = 256 * 2 ** 20
const SIZES_GIB = [0, 1, 4]
const RUNS = Number(process.argv[2] ?? 15)
/** Quiet time after growing memory: V8 answers new external memory with GCs for a while. */
const SETTLE_MS = 1500
/** Time for the started Node process (~40 ms of CPU) to be done before the next call. */
const GAP_MS = 120

const TARGET = fixture('empty.js')
const held = []
let heldBytes = 0
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-bench-blocking-'))
let serial = 0

/** Grows the held Buffers to `bytes`, writing every page (a fresh mapping is not resident). */
function growTo(bytes) {
  while (heldBytes < bytes) {
    const size = Math.min(CHUNK, bytes - heldBytes)
    const buf = Buffer.allocUnsafeSlow(size)
    buf.fill(0xa5)
    held.push(buf)
    heldBytes += size
  }
}

const ENV = Object.entries(process.env).map(([k, v]) => `${k}=${v}`)

/** Each tool: a function that prepares (untimed), then times the synchronous call; returns ms. */
const TOOLS = {
  daemonkit() {
    const spec = { program: process.execPath, args: [process.execPath, TARGET], env: ENV, passFds: [], cwd: '/' }
    const t0 = now()
    const r = binding.launch(spec)
    const t1 = now()
    if (!(r.pid > 1)) throw new Error(`launch returned ${JSON.stringify(r)}`)
    return ms(t1 - t0)
  },
  spawn() {
    const t0 = now()
    const child = spawn(process.execPath, [TARGET], { detached: true, stdio: 'ignore' })
    child.unref()
    const t1 = now()
    if (!(child.pid > 1)) throw new Error('spawn failed')
    return ms(t1 - t0)
  },
  daemon() {
    const t0 = now()
    const child = daemonPkg.daemon(TARGET, [], { cwd: '/' })
    const t1 = now()
    if (!(child.pid > 1)) throw new Error('daemon() failed')
    return ms(t1 - t0)
  },
  daemonize2() {
    const d = daemonize2.setup({ main: TARGET, pidfile: path.join(scratch, `d2-${serial++}.pid`), silent: true })
    d.on('error', () => {}) // "Daemon failed to start": the target exits at once, by design
    const t0 = now()
    d.start()
    const t1 = now()
    return ms(t1 - t0)
  },
}

async function main() {
  const names = Object.keys(TOOLS)
  const results = []
  try {
    for (const gib of SIZES_GIB) {
      growTo(gib * GiB)
      if (typeof global.gc === 'function') global.gc() // run with --expose-gc: one GC now, not during timing
      await sleep(SETTLE_MS)
      const rss = process.memoryUsage().rss
      if (rss < gib * GiB) throw new Error(`RSS is ${(rss / GiB).toFixed(2)} GiB, expected at least ${gib} GiB`)
      // One untimed call of each first: page in the code paths.
      for (const n of names) {
        TOOLS[n]()
        await sleep(GAP_MS)
      }
      const times = Object.fromEntries(names.map((n) => [n, []]))
      for (let i = 0; i < RUNS; i++) {
        for (let k = 0; k < names.length; k++) {
          const n = names[(k + i) % names.length]
          times[n].push(TOOLS[n]())
          await sleep(GAP_MS)
        }
      }
      results.push({ gib, rssBytes: rss, tools: Object.fromEntries(names.map((n) => [n, { times: times[n], ...summary(times[n]) }])) })
    }
  } finally {
    await sleep(300) // daemonize2's 100 ms readiness timers
    fs.rmSync(scratch, { recursive: true, force: true })
  }
  process.stdout.write(`${JSON.stringify({ runs: RUNS, settleMs: SETTLE_MS, gapMs: GAP_MS, results })}\n`)
  process.exit(0) // daemonize2's objects keep handles on their children's exit
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
