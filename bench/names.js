'use strict'
// `node bench/names.js`: start, list and stop 50 named daemons with daemonkit and with pm2, in
// the same run on this machine. pm2 (a pinned version) is installed on first use into a cache
// folder with npm. Knobs: BENCH_NAMES (50), BENCH_LIST_RUNS (15). Writes bench/NAMES.md.
// Target: `daemonkit list` for 50 daemons within 150 ms (median, whole CLI process).

const { spawnSync, execFileSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const ROOT = path.resolve(__dirname, '..')
const CLI = path.join(ROOT, 'dist', 'cli.js')
const N = Number(process.env.BENCH_NAMES ?? 50)
const LIST_RUNS = Number(process.env.BENCH_LIST_RUNS ?? 15)
const PM2_VERSION = '7.0.4'

function pm2Bin() {
  const local = path.join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2')
  if (fs.existsSync(local)) return local
  const cache = path.join(os.tmpdir(), `daemonkit-bench-pm2-${PM2_VERSION}`)
  const bin = path.join(cache, 'node_modules', 'pm2', 'bin', 'pm2')
  if (!fs.existsSync(bin)) {
    process.stderr.write(`installing pm2@${PM2_VERSION} into ${cache} …\n`)
    fs.mkdirSync(cache, { recursive: true })
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', cache, `pm2@${PM2_VERSION}`], { stdio: 'inherit' })
  }
  return bin
}

function timed(cmd, args, env) {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(cmd, args, { env, encoding: 'utf8' })
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`)
  return { ms, stdout: r.stdout }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

function bench(name, { start, list, stop, count }) {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) start(i)
  const startMs = Number(process.hrtime.bigint() - t0) / 1e6
  const listMs = []
  for (let i = 0; i < LIST_RUNS; i++) {
    const r = list()
    listMs.push(r.ms)
    if (i === 0 && count(r.stdout) !== N) throw new Error(`${name} list shows ${count(r.stdout)} daemons, not ${N}`)
  }
  const t1 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) stop(i)
  const stopMs = Number(process.hrtime.bigint() - t1) / 1e6
  return { name, startMs, listMedian: median(listMs), listMin: Math.min(...listMs), stopMs }
}

function main() {
  if (!fs.existsSync(CLI)) throw new Error('dist/ is missing: npm run build')
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-bench-names-'))
  const script = path.join(home, 'idle.js')
  fs.writeFileSync(script, 'setInterval(() => {}, 1 << 30)\n')
  const results = []
  const dkEnv = { ...process.env, DAEMONKIT_HOME: path.join(home, 'dk') }
  try {
    results.push(bench('daemonkit', {
      // --settle 0: pm2 start does not wait for the process to stay up either.
      start: (i) => timed(process.execPath, [CLI, 'start', '-q', '--settle', '0', '--name', `w${i}`, '--', process.execPath, script], dkEnv),
      list: () => timed(process.execPath, [CLI, 'list', '--json'], dkEnv),
      stop: (i) => timed(process.execPath, [CLI, 'stop', '-q', `w${i}`], dkEnv),
      count: (out) => JSON.parse(out).filter((d) => d.state === 'running').length,
    }))
  } finally {
    for (let i = 0; i < N; i++) spawnSync(process.execPath, [CLI, 'stop', '-q', '-t', '0', `w${i}`], { env: dkEnv })
  }
  const pm2 = pm2Bin()
  const pmEnv = { ...process.env, PM2_HOME: path.join(home, 'pm2') }
  try {
    results.push(bench(`pm2 ${PM2_VERSION}`, {
      start: (i) => timed(process.execPath, [pm2, 'start', script, '--name', `w${i}`, '-s'], pmEnv),
      list: () => timed(process.execPath, [pm2, 'jlist'], pmEnv),
      stop: (i) => timed(process.execPath, [pm2, 'stop', `w${i}`, '-s'], pmEnv),
      count: (out) => JSON.parse(out.slice(out.indexOf('['))).filter((d) => d.pm2_env.status === 'online').length,
    }))
  } finally {
    spawnSync(process.execPath, [pm2, 'kill'], { env: pmEnv })
    fs.rmSync(home, { recursive: true, force: true })
  }
  const rows = results.map((r) => `| ${r.name} | ${r.startMs.toFixed(0)} | ${r.listMedian.toFixed(0)} (min ${r.listMin.toFixed(0)}) | ${r.stopMs.toFixed(0)} |`)
  const dk = results[0]
  const text = `# ${N} named daemons: daemonkit and pm2

Measured by \`node bench/names.js\` on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, load ${os.loadavg().map((x) => x.toFixed(2)).join(' / ')}.
Each command is a whole CLI process, as a user types it; the daemons are idle Node processes.
pm2's first \`start\` also starts its resident God daemon; daemonkit has none.

| tool | start ${N}, one by one (ms) | list (ms, median of ${LIST_RUNS}) | stop ${N}, one by one (ms) |
| --- | --- | --- | --- |
${rows.join('\n')}

Target: \`daemonkit list\` for ${N} daemons within 150 ms: ${dk.listMedian <= 150 ? 'met' : 'NOT met'} (${dk.listMedian.toFixed(0)} ms).
`
  process.stdout.write(text)
  fs.writeFileSync(path.join(__dirname, 'NAMES.md'), text)
}

main()
