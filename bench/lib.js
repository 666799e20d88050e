'use strict'
// Small helpers shared by the benchmark scripts: statistics, process state, temp dirs.

const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

/** The package under test (package.json "main" = dist/index.js). */
const PKG_ROOT = path.resolve(__dirname, '..')

/** Nanoseconds (bigint) since an arbitrary point; CLOCK_MONOTONIC, so comparable across processes. */
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
  const s = sorted(xs)
  return { n: s.length, median: median(s), min: s[0], max: s[s.length - 1] }
}

const sleep = (t) => new Promise((resolve) => setTimeout(resolve, t))

/** Blocks the calling thread for `t` ms without burning CPU. */
function sleepSync(t) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, t)
}

/**
 * Reads /proc/PID/stat: { state, ppid, pgrp, sid }, or undefined when the process is gone.
 * The command name may contain spaces and parentheses, so parse from the last ')'.
 */
function procStat(pid) {
  let raw
  try {
    raw = fs.readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined
  }
  const fields = raw.slice(raw.lastIndexOf(')') + 2).split(' ')
  return { state: fields[0], ppid: Number(fields[1]), pgrp: Number(fields[2]), sid: Number(fields[3]) }
}

/** Has the process exited? A zombie has (PID 1 here reaps orphans late); a vanished one too. */
function exited(pid) {
  const st = procStat(pid)
  return st === undefined || st.state === 'Z' || st.state === 'X'
}

/**
 * Stops the daemon `pid` and waits until it has exited: SIGTERM, then SIGKILL after `graceMs`.
 * Signals that one pid only (never a group, never by name). Returns how it ended.
 */
function stopAndReap(pid, graceMs = 3000) {
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`refusing to signal pid ${pid}`)
  if (exited(pid)) return 'already exited'
  const waitGone = (limit) => {
    const deadline = Date.now() + limit
    while (Date.now() < deadline) {
      if (exited(pid)) return true
      sleepSync(2)
    }
    return exited(pid)
  }
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

/** Reads a pidfile's decimal pid, or undefined. */
function readPid(file) {
  try {
    const text = fs.readFileSync(file, 'latin1').trim()
    return /^[0-9]+$/.test(text) ? Number(text) : undefined
  } catch {
    return undefined
  }
}

/** A fresh private temp dir for one run. */
function tempDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `daemonkit-bench-${tag}-`))
}

function removeDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true })
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
  return {
    kernel: os.release(),
    cpu: cpus.length ? cpus[0].model.trim() : 'unknown',
    cores: cpus.length,
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    thp: read('/sys/kernel/mm/transparent_hugepage/enabled'),
    date: new Date().toISOString(),
  }
}

/** A fixed-width text table: `rows` are arrays of cells; numbers are right-aligned. */
function textTable(header, rows) {
  const cells = [header, ...rows].map((r) => r.map(String))
  const width = header.map((_, i) => Math.max(...cells.map((r) => r[i].length)))
  const right = header.map((_, i) => rows.every((r) => typeof r[i] === 'number' || /^[0-9.x×%<>~ -]+$/.test(String(r[i]))))
  const line = (r) => r.map((c, i) => (right[i] ? c.padStart(width[i]) : c.padEnd(width[i]))).join('  ')
  return [line(cells[0]), width.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n')
}

/** The same table in Markdown. */
function markdownTable(header, rows) {
  const esc = (c) => String(c).replace(/\|/g, '\\|')
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n')
}

module.exports = {
  PKG_ROOT,
  now,
  ms,
  median,
  summary,
  sleep,
  sleepSync,
  procStat,
  exited,
  stopAndReap,
  readPid,
  tempDir,
  removeDir,
  machine,
  textTable,
  markdownTable,
}
