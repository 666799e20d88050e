'use strict'
// Restarts under load: an HTTP server that takes 300 ms to start, under steady autocannon load
// (10 connections), restarted BENCH_RESTARTS times (default 20) by:
//   - daemonkit restart --graceful, for a daemonize() app,
//   - daemonkit restart --graceful, for `node server.js` under the supervisor (--wait-ready),
//   - pm2 reload in cluster mode (2 instances) and in fork mode (where reload is a restart).
// Reports failed requests (errors and timeouts), connection resets, non-2xx, p99 latency during
// the restarts against a steady-state run, and the time per restart. pm2 runs with a scratch
// PM2_HOME and is killed at the end; nothing is left running.
//
// `node bench/restarts.js` prints the table and updates its section of bench/RESULTS.md
// (between the restarts markers) and bench/restarts.svg; `npm run bench` runs it last.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const PKG_ROOT = path.join(__dirname, '..')
const SERVER = path.join(__dirname, 'fixtures', 'restart-server.js')
const CLI = path.join(PKG_ROOT, 'dist', 'cli.js')
const PM2 = path.join(PKG_ROOT, 'node_modules', 'pm2', 'bin', 'pm2')
const NODE = process.execPath
const RESTARTS = Number(process.env.BENCH_RESTARTS ?? 20)
const STEADY_S = Number(process.env.BENCH_STEADY_SECONDS ?? 5)
const log = (line) => process.stderr.write(`${line}\n`)

function sh(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 120_000 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr}`)
  return r.stdout
}

/** `sh` without blocking the event loop, which autocannon shares: for what runs under load. */
function shAsync(cmd, args, env = process.env) {
  return new Promise((resolve, reject) => {
    require('node:child_process').execFile(cmd, args, { env, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message} ${stderr}`))
      else resolve(stdout)
    })
  })
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** A free port on 127.0.0.1 (bound and closed: the kernel does not hand it out again at once). */
async function freePort() {
  const net = require('node:net')
  const s = net.createServer()
  await new Promise((r) => s.listen(0, '127.0.0.1', r))
  const { port } = s.address()
  await new Promise((r) => s.close(r))
  return port
}

/** Autocannon at 10 connections until `until` resolves; counts errors by code. */
async function cannon(port, until) {
  const autocannon = require('autocannon')
  const codes = {}
  const instance = autocannon({ url: `http://127.0.0.1:${port}/`, connections: 10, duration: 3600, timeout: 10 })
  instance.on('reqError', (err) => {
    const code = err.code ?? err.message
    codes[code] = (codes[code] ?? 0) + 1
  })
  const done = new Promise((resolve) => instance.on('done', resolve))
  await until
  instance.stop()
  const r = await done
  return {
    requests: r.requests.total,
    failed: r.errors + r.timeouts + r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    resets: codes.ECONNRESET ?? 0,
    refused: codes.ECONNREFUSED ?? 0,
    codes,
    p50: r.latency.p50,
    p99: r.latency.p99,
    max: r.latency.max,
  }
}

/** One path: start, steady state, restarts under load, stop. */
async function measure(name, { start, restart, stop }) {
  log(`restarts: ${name}`)
  const port = await freePort()
  await start(port)
  try {
    await sleep(500)
    const steady = await cannon(port, sleep(STEADY_S * 1000))
    const times = []
    const during = await cannon(
      port,
      (async () => {
        await sleep(500)
        for (let i = 0; i < RESTARTS; i++) {
          const t0 = process.hrtime.bigint()
          await restart()
          times.push(Number(process.hrtime.bigint() - t0) / 1e6)
          await sleep(100)
        }
        await sleep(500)
      })(),
    )
    times.sort((a, b) => a - b)
    return { name, steady, during, restartMs: times[Math.floor(times.length / 2)], restartMaxMs: times[times.length - 1] }
  } finally {
    await stop()
  }
}

async function benchRestarts() {
  if (!fs.existsSync(path.join(PKG_ROOT, 'node_modules', 'autocannon'))) throw new Error('the devDependency autocannon is missing: npm ci')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-bench-restarts-'))
  const results = []
  const pm2Env = { ...process.env, PM2_HOME: path.join(dir, 'pm2'), PM2_DISABLE_VERSION_CHECK: 'true' }
  try {
    const pidFile = path.join(dir, 'app.pid')
    results.push(
      await measure('daemonkit, daemonize() app (restart --graceful)', {
        start: async (port) => sh(NODE, [SERVER, 'daemonize', pidFile, `127.0.0.1:${port}`]),
        restart: () => shAsync(NODE, [CLI, 'restart', '--graceful', '-p', pidFile]),
        stop: async () => sh(NODE, [CLI, 'stop', '-p', pidFile]),
      }),
    )
    const supPid = path.join(dir, 'sup.pid')
    results.push(
      await measure('daemonkit, supervised node server.js (restart --graceful)', {
        start: async (port) => sh(NODE, [CLI, 'start', '-p', supPid, '--wait-ready', '--listen', `127.0.0.1:${port}`, '--', NODE, SERVER, 'supervised']),
        restart: () => shAsync(NODE, [CLI, 'restart', '--graceful', '-p', supPid]),
        stop: async () => sh(NODE, [CLI, 'stop', '-p', supPid]),
      }),
    )
    if (fs.existsSync(PM2)) {
      for (const [mode, extra] of [['cluster', ['-i', '2']], ['fork', []]]) {
        const name = `app-${mode}`
        results.push(
          await measure(`pm2 7 ${mode} mode (pm2 reload)`, {
            start: async (port) =>
              sh(NODE, [PM2, 'start', SERVER, '--name', name, ...extra, '--wait-ready', '--listen-timeout', '10000', '--', 'pm2'], { ...pm2Env, PORT: String(port) }),
            restart: () => shAsync(NODE, [PM2, 'reload', name], pm2Env),
            stop: async () => sh(NODE, [PM2, 'delete', name], pm2Env),
          }),
        )
      }
    } else log('restarts: pm2 is missing (npm ci): skipped')
  } finally {
    if (fs.existsSync(PM2)) spawnSync(NODE, [PM2, 'kill'], { env: pm2Env, stdio: 'ignore', timeout: 60_000 })
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return { restarts: RESTARTS, steadySeconds: STEADY_S, results }
}

function section(r) {
  const rows = r.results.map(
    (x) =>
      `| ${x.name} | ${x.during.requests} | **${x.during.failed}** | ${x.during.resets} | ${x.during.refused} | ${x.during.timeouts} | ${x.steady.p99} ms | ${x.during.p99} ms | ${x.during.max} ms | ${x.restartMs.toFixed(0)} ms |`,
  )
  return [
    '<!-- restarts -->',
    '## Restarts under load',
    '',
    `An HTTP server that takes 300 ms to start, under autocannon at 10 connections, restarted ${r.restarts} times ` +
      `(one after another, 100 ms apart); steady state measured first for ${r.steadySeconds} s (bench/restarts.js, ` +
      'fixture bench/fixtures/restart-server.js). Failed = errors + timeouts + non-2xx as autocannon counts them; ' +
      'resets and refused are the errors with ECONNRESET / ECONNREFUSED. Time per restart: median, until the command returned ' +
      '(for daemonkit: the new process is ready; the old one may still be finishing its requests).',
    '',
    '| Restarted by | requests | failed | resets | refused | timeouts | p99 steady | p99 during restarts | max during | time per restart |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    '![failed requests across the restarts](restarts.svg)',
    '<!-- /restarts -->',
  ].join('\n')
}

function svg(r) {
  const W = 760
  const rowH = 34
  const H = 70 + r.results.length * rowH
  const max = Math.max(1, ...r.results.map((x) => x.during.failed))
  const scale = (v) => (v === 0 ? 0 : Math.max(2, (Math.log10(v + 1) / Math.log10(max + 1)) * 300))
  const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const bars = r.results.map((x, i) => {
    const y = 50 + i * rowH
    const w = scale(x.during.failed)
    return (
      `<text x="10" y="${y + 16}" font-size="12">${esc(x.name)}</text>` +
      `<rect x="400" y="${y + 4}" width="${w}" height="18" fill="${x.name.startsWith('daemonkit') ? '#2a7' : '#c44'}"/>` +
      `<text x="${406 + w}" y="${y + 17}" font-size="12">${x.during.failed} failed</text>`
    )
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="10" y="24" font-size="15" font-weight="bold">Failed requests across ${r.restarts} restarts under load (10 connections; log scale, fewer is better)</text>`,
    ...bars,
    '</svg>',
  ].join('\n')
}

/** Puts the section into bench/RESULTS.md (replacing the previous one) and writes the chart. */
function write(r) {
  const file = path.join(__dirname, 'RESULTS.md')
  const md = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# daemonkit benchmarks\n'
  const text = section(r)
  const re = /<!-- restarts -->[\s\S]*<!-- \/restarts -->/
  fs.writeFileSync(file, re.test(md) ? md.replace(re, text) : `${md.trimEnd()}\n\n${text}\n`)
  fs.writeFileSync(path.join(__dirname, 'restarts.svg'), `${svg(r)}\n`)
}

function table(r) {
  return r.results
    .map((x) => `${x.name.padEnd(60)} failed ${String(x.during.failed).padStart(6)}  resets ${String(x.during.resets).padStart(5)}  p99 ${x.steady.p99} -> ${x.during.p99} ms  restart ${x.restartMs.toFixed(0)} ms`)
    .join('\n')
}

module.exports = { benchRestarts, section, write, table }

if (require.main === module) {
  benchRestarts().then(
    (r) => {
      write(r)
      process.stdout.write(`${table(r)}\n`)
      process.stdout.write(`${JSON.stringify(r)}\n`)
    },
    (err) => {
      log(err.stack)
      process.exit(1)
    },
  )
}
