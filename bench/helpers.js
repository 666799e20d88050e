'use strict'
// `node bench/helpers.js`: ensureDaemon() for tool helpers, on this machine.
//   1. attach: ensureDaemon() to a running helper, inside the calling process after require()
//      (its first call in a fresh process, and later calls);
//   2. cold start: ensureDaemon() against the same helper started by hand (node helper.js, which
//      daemonizes and exits once it is ready);
//   3. 20 concurrent cold callers (separate processes), until the last has its answer.
// Writes bench/HELPERS.md. Knobs: BENCH_ATTACH_RUNS (200), BENCH_COLD_RUNS (10).
const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const HELPER = path.join(__dirname, 'fixtures', 'helper.js')
const PKG = path.join(__dirname, '..')
const home = fs.mkdtempSync(path.join(os.tmpdir(), 'dk-bench-helpers-'))
process.env.DAEMONKIT_HOME = home
const { ensureDaemon, stop } = require(PKG)

const now = () => Number(process.hrtime.bigint()) / 1e6
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const row = (name, xs) => `| ${name} | ${xs.length} | ${pct(xs, 50).toFixed(2)} | ${pct(xs, 95).toFixed(2)} | ${Math.max(...xs).toFixed(2)} |`

async function main() {
  const attachRuns = Number(process.env.BENCH_ATTACH_RUNS ?? 200)
  const coldRuns = Number(process.env.BENCH_COLD_RUNS ?? 10)
  const pidFile = path.join(home, 'helpers', 'bench.pid')

  // 1. attach
  const first = await ensureDaemon({ name: 'bench', script: HELPER })
  const attach = []
  for (let i = 0; i < attachRuns; i++) {
    const t0 = now()
    const r = await ensureDaemon({ name: 'bench', script: HELPER })
    attach.push(now() - t0)
    if (r.started || r.pid !== first.pid) throw new Error('attach started a helper')
  }
  // A tool calls it once per process: the first call after require(), in fresh processes.
  const firstCall = []
  const probe = `const t = process.hrtime.bigint(); const { ensureDaemon } = require(${JSON.stringify(PKG)}); const t0 = process.hrtime.bigint(); ensureDaemon({ name: 'bench', script: ${JSON.stringify(HELPER)} }).then((r) => console.log(r.started ? 'started' : Number(process.hrtime.bigint() - t0) / 1e6))`
  for (let i = 0; i < Math.max(10, coldRuns * 2); i++) {
    const out = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' }).stdout.trim()
    if (!/^[0-9.]+$/.test(out)) throw new Error(`first call: ${out}`)
    firstCall.push(Number(out))
  }
  await stop(pidFile)

  // 2. cold start, ensureDaemon() against by hand
  const cold = []
  const byHand = []
  const handPid = path.join(home, 'hand.pid')
  const handSock = path.join(home, 'hand.sock')
  for (let i = 0; i < coldRuns; i++) {
    let t0 = now()
    const r = await ensureDaemon({ name: 'bench', script: HELPER })
    cold.push(now() - t0)
    if (!r.started) throw new Error('cold run attached')
    await stop(pidFile)
    t0 = now()
    const out = spawnSync(process.execPath, [HELPER, handPid, handSock])
    byHand.push(now() - t0)
    if (out.status !== 0) throw new Error(`by hand: ${out.stderr}`)
    await stop(handPid)
  }

  // 3. twenty concurrent cold callers, each its own process
  const caller = `const { ensureDaemon } = require(${JSON.stringify(PKG)}); ensureDaemon({ name: 'crowd', script: ${JSON.stringify(HELPER)} }).then((r) => console.log(r.pid))`
  const crowd = []
  for (let i = 0; i < Math.max(3, Math.floor(coldRuns / 3)); i++) {
    const t0 = now()
    const pids = await Promise.all(
      Array.from({ length: 20 }, () => new Promise((resolve) => {
        const c = spawn(process.execPath, ['-e', caller], { stdio: ['ignore', 'pipe', 'inherit'] })
        let out = ''
        c.stdout.on('data', (d) => (out += d))
        c.on('close', () => resolve(out.trim()))
      })),
    )
    crowd.push(now() - t0)
    if (new Set(pids).size !== 1) throw new Error(`20 callers got ${new Set(pids).size} helpers: ${pids}`)
    await stop(path.join(home, 'helpers', 'crowd.pid'))
  }

  const lines = [
    '# ensureDaemon() on this machine',
    '',
    `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}, load ${os.loadavg()[0].toFixed(2)} at the end. Times in ms.`,
    '',
    '| what | runs | median | p95 | max |',
    '| --- | --- | --- | --- | --- |',
    row('attach: first call in a fresh process, after require()', firstCall),
    row('attach: later calls in the same process', attach),
    row('cold start with ensureDaemon()', cold),
    row('the same helper started by hand (node helper.js)', byHand),
    row('20 concurrent cold callers (processes), until the last answers', crowd),
    '',
  ]
  fs.writeFileSync(path.join(__dirname, 'HELPERS.md'), lines.join('\n'))
  process.stdout.write(lines.join('\n'))
  fs.rmSync(home, { recursive: true, force: true })
}
main().catch((err) => {
  console.error(err)
  process.exit(1)
})
