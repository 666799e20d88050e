'use strict'
// Number formats and labels shared by bench/report.js and bench/report-svg.js.

const f0 = (x) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a')
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a')
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')
/** A duration in ms with a sensible number of digits. */
const fms = (x) => (!Number.isFinite(x) ? 'n/a' : x >= 100 ? f0(x) : x >= 10 ? f1(x) : f2(x))
const mrange = (s) => `${fms(s.median)} (${fms(s.min)}–${fms(s.max)})`
const mib = (kib) => (kib / 1024).toFixed(1)
const smib = (kib) => `${kib >= 0 ? '+' : '−'}${(Math.abs(kib) / 1024).toFixed(2)}`
const yesNo = (b) => (b ? 'yes' : 'no')

const BLOCK_LABELS = {
  daemonkit: 'daemonkit: native launch (inside daemonize(), Daemon#start(), spawnDaemon())',
  spawn: 'child_process.spawn({ detached: true })',
  daemon: 'npm daemon: daemon.daemon()',
  daemonize2: 'npm daemonize2: start()',
}

const BLOCK_SHORT = {
  daemonkit: 'daemonkit native launch',
  spawn: 'child_process.spawn({ detached })',
  daemon: 'npm daemon: daemon.daemon()',
  daemonize2: 'npm daemonize2: start()',
}

module.exports = { f0, f1, f2, fms, mrange, mib, smib, yesNo, BLOCK_LABELS, BLOCK_SHORT }
