'use strict'
// Benchmark 2: how long a launch blocks the launching process, as its memory grows.
//
// Run as its own process by run.js (`node --expose-gc bench/blocking.js [runs]`); prints one
// JSON object on stdout. In this one process it grows resident memory to 0, 1 and 4 GiB of
// Buffers (off the V8 heap, every page written so that it is really resident), and at each size
// times, with process.hrtime.bigint() around the synchronous call:
//   - the native launch of /bin/true (double clone + execve; returns once the grandchild exec'd)
//   - child_process.spawn('/bin/true') (libuv forks; the call returns once the child exec'd)
// The two alternate run by run. The /bin/true grandchildren of the native launch are orphans;
// whoever reaps orphans here does so late, which is harmless for /bin/true.

const { spawn } = require('node:child_process')
const { once } = require('node:events')

const { PKG_ROOT, now, ms, summary, sleep } = require('./lib')

const binding = require(`${PKG_ROOT}/binding`)

const GiB = 2 ** 30
const CHUNK = 256 * 2 ** 20
const SIZES_GIB = [0, 1, 4]
const RUNS = Number(process.argv[2] ?? 15)
/** Quiet time after growing memory: V8 answers new external memory with GCs for a while. */
const SETTLE_MS = 1500

const held = []
let heldBytes = 0

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

function timeNative() {
  const spec = { program: '/bin/true', args: ['true'], env: [], passFds: [] }
  const t0 = now()
  const r = binding.launch(spec)
  const t1 = now()
  if (!(r.pid > 1)) throw new Error(`launch returned ${JSON.stringify(r)}`)
  return ms(t1 - t0)
}

async function timeSpawn() {
  const t0 = now()
  const child = spawn('/bin/true', [], { stdio: 'ignore' })
  const t1 = now()
  const [code] = await once(child, 'exit') // reap it before the next run
  if (code !== 0) throw new Error(`/bin/true exited with ${code}`)
  return ms(t1 - t0)
}

async function main() {
  const results = []
  for (const gib of SIZES_GIB) {
    growTo(gib * GiB)
    if (typeof global.gc === 'function') global.gc() // run with --expose-gc: one GC now, not during timing
    await sleep(SETTLE_MS)
    const rss = process.memoryUsage().rss
    if (rss < gib * GiB) throw new Error(`RSS is ${(rss / GiB).toFixed(2)} GiB, expected at least ${gib} GiB`)
    // One untimed call of each first: page in the binding's code paths and libuv's.
    timeNative()
    await timeSpawn()
    const native = []
    const spawned = []
    for (let i = 0; i < RUNS; i++) {
      native.push(timeNative())
      await sleep(10) // let the /bin/true grandchild finish
      spawned.push(await timeSpawn())
      await sleep(10)
    }
    results.push({ gib, rssBytes: rss, native: { times: native, ...summary(native) }, spawn: { times: spawned, ...summary(spawned) } })
  }
  process.stdout.write(`${JSON.stringify({ runs: RUNS, settleMs: SETTLE_MS, results })}\n`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
