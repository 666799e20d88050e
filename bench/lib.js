'use strict'
// Helpers shared by the benchmark scripts: clocks, statistics, process state from /proc (the
// readers of __test__/proc.js, shared with the tests), stopping daemons by pid, temp dirs, the C
// helpers, tables.

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const proc = require('../__test__/proc')

const { isRunning, cmdlineHas } = proc

/** The package under test (package.json "main" = dist/index.js). */
const PKG_ROOT = path.resolve(__dirname, '..')
const FIXTURES = path.join(__dirname, 'fixtures')
const fixture = (name) => path.join(FIXTURES, name)
const NODE = process.execPath

/** Nanoseconds (bigint) on CLOCK_MONOTONIC: one clock for every process on the machine. */
const now = () => process.hrtime.bigint()

/** bigint nanoseconds -> milliseconds as a number. */
const ms = (ns) => Number(ns) / 1e6

function sorted(xs) {
  return [...xs].sort((a, b) => a - b)
}

function median(xs) {
  const s = sorted(xs)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** { n, median, min, max } of a list of numbers. */
function summary(xs) {
  if (!xs.length) return { n: 0, median: NaN, min: NaN, max: NaN }
  const s = sorted(xs)
  return { n: s.length, median: median(s), min: s[0], max: s[s.length - 1] }
}

const sleep = (t) => new Promise((resolve) => setTimeout(resolve, t))

/** Blocks the calling thread for `t` ms without burning CPU. */
function sleepSync(t) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, t)
}

/** Polls `fn` every `every` ms until it returns a value other than undefined, or `limit` ms pass. */
function waitFor(fn, limit = 5000, every = 1) {
  const deadline = Date.now() + limit
  for (;;) {
    const v = fn()
    if (v !== undefined) return v
    if (Date.now() > deadline) return undefined
    sleepSync(every)
  }
}

/** Has the process exited? A zombie has (PID 1 here reaps orphans late); a vanished one too. */
const exited = (pid) => !isRunning(pid)

/**
 * Stops the daemon `pid` and waits until it has exited: SIGTERM, then SIGKILL after `graceMs`.
 * Signals that one pid only (never a group, never by name), and only while it runs and, given
 * `mention`, only if its command line mentions it (a recycled pid is left alone). Returns how
 * it ended.
 */
function stopAndReap(pid, { graceMs = 3000, mention } = {}) {
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`refusing to signal pid ${pid}`)
  if (pid === process.pid) throw new Error('refusing to signal the harness itself')
  if (exited(pid)) return 'already exited'
  if (mention !== undefined && !cmdlineHas(pid, mention)) return 'not ours (pid reused)'
  const waitGone = (limit) => waitFor(() => (exited(pid) ? true : undefined), limit, 2) === true
  try {
    process.kill(pid, 'SIGTERM')
  } catch {
    return 'already exited'
  }
  if (waitGone(graceMs)) return 'SIGTERM'
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    return 'SIGTERM'
  }
  if (waitGone(graceMs)) return 'SIGKILL'
  throw new Error(`daemon ${pid} survived SIGKILL`)
}


/** Reads a JSON file, or undefined if it is missing or incomplete. */
function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
}

/** Waits up to `limit` ms for a JSON file to appear. */
const readJsonWait = (file, limit = 5000) => waitFor(() => readJson(file), limit, 1)

/** A fresh private temp dir for one run. */
function tempDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `daemonkit-bench-${tag}-`))
}

function removeDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true })
}

/** Quotes `s` for sh -c. */
const shq = (s) => (/^[A-Za-z0-9_/.,:=@%+-]+$/.test(s) ? s : `'${String(s).replace(/'/g, `'\\''`)}'`)

/** Compiles bench/fixtures/{floor,probe}.c with gcc into `dir`; returns the binaries' paths. */
function compileHelpers(dir) {
  const out = {}
  for (const name of ['floor', 'probe']) {
    const bin = path.join(dir, name)
    const r = spawnSync('gcc', ['-O2', '-Wall', '-o', bin, fixture(`${name}.c`)], { encoding: 'utf8' })
    if (r.error) throw new Error(`gcc is needed to build the C floor: ${r.error.message}`)
    if (r.status !== 0) throw new Error(`gcc failed on bench/fixtures/${name}.c:\n${r.stderr}`)
    out[name] = bin
  }
  return out
}

/** The first line a command prints on stdout (or stderr), or 'n/a'. */
function versionOf(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 })
  if (r.error) return 'n/a'
  return `${r.stdout || r.stderr}`.split('\n')[0].trim() || 'n/a'
}

/** Facts about this machine for the report. */
function machine() {
  const read = (f) => {
    try {
      return fs.readFileSync(f, 'utf8').trim()
    } catch {
      return 'n/a'
    }
  }
  const cpus = os.cpus()
  const pkgVersion = (name) => {
    try {
      return require(path.join(PKG_ROOT, 'node_modules', name, 'package.json')).version
    } catch {
      return 'not installed'
    }
  }
  return {
    kernel: os.release(),
    cpu: cpus.length ? cpus[0].model.trim() : 'unknown',
    cores: cpus.length,
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    thp: read('/sys/kernel/mm/transparent_hugepage/enabled'),
    date: new Date().toISOString(),
    pid1: read('/proc/1/comm'),
    versions: {
      daemonkit: require(path.join(PKG_ROOT, 'package.json')).version,
      daemon: pkgVersion('daemon'),
      daemonize2: pkgVersion('daemonize2'),
      ssd: versionOf('start-stop-daemon', ['--version']),
      gcc: versionOf('gcc', ['--version']),
      script: versionOf('script', ['--version']),
    },
  }
}

/** A fixed-width text table: `rows` are arrays of cells; numbers are right-aligned. */
function textTable(header, rows) {
  const cells = [header, ...rows].map((r) => r.map(String))
  const width = header.map((_, i) => Math.max(...cells.map((r) => r[i].length)))
  const right = header.map((_, i) => rows.every((r) => typeof r[i] === 'number' || /^[0-9.x×%<>~ ()–-]+$/.test(String(r[i]))))
  const line = (r) => r.map((c, i) => (right[i] ? c.padStart(width[i]) : c.padEnd(width[i]))).join('  ')
  return [line(cells[0]), width.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n')
}

/** The same table in Markdown. */
function markdownTable(header, rows) {
  const esc = (c) => String(c).replace(/\|/g, '\\|')
  const right = header.map((_, i) => rows.every((r) => typeof r[i] === 'number' || /^[0-9.x×%<>~ ()–-]+$/.test(String(r[i]))))
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `|${header.map((_, i) => (right[i] && i > 0 ? ' ---: ' : ' --- ')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n')
}

module.exports = {
  ...proc,
  PKG_ROOT,
  FIXTURES,
  fixture,
  NODE,
  now,
  ms,
  median,
  summary,
  sleep,
  sleepSync,
  waitFor,
  exited,
  stopAndReap,
  readJson,
  readJsonWait,
  tempDir,
  removeDir,
  shq,
  compileHelpers,
  machine,
  textTable,
  markdownTable,
}
