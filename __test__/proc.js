'use strict'
// Process state as the kernel reports it (/proc, /proc/locks) and pidfile contents: the one set of
// readers the tests (__test__/helpers.js) and the benchmarks (bench/lib.js) share. A process or
// descriptor may vanish between two reads; the readers say so (undefined, false) instead of throwing.

const fs = require('node:fs')

/**
 * Fields of /proc/PID/stat: { state, ppid, pgrp, session, ttyNr }, or undefined when the process
 * is gone. The command name may hold spaces, parentheses and any byte, so the fields are read
 * from after the last ')'.
 */
function procStat(pid) {
  let text
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return undefined
  }
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { state: f[0], ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]), ttyNr: Number(f[4]) }
}

/** /proc/PID/status as a map of field -> value (e.g. Umask: '0022', VmRSS: '41236 kB'), or undefined when the process is gone. */
function procStatus(pid) {
  let text
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'latin1')
  } catch {
    return undefined
  }
  const out = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim()
  }
  return out
}

/**
 * The open descriptors of `pid` as { fd: target } (readlink of /proc/PID/fd/N; integer keys
 * enumerate in ascending order), or undefined when the process is gone. A descriptor closed
 * while it is read is left out.
 */
function procFds(pid) {
  let fds
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`)
  } catch {
    return undefined
  }
  const out = {}
  for (const fd of fds) {
    try {
      out[fd] = fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {
      // closed meanwhile
    }
  }
  return out
}

/** The children of `pid` (/proc/PID/task/PID/children), or [] when it is gone. */
function procChildren(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** Running = exists and is not a zombie (PID 1 on a test machine may reap orphans late). */
function isRunning(pid) {
  const st = procStat(pid)
  return st !== undefined && st.state !== 'Z' && st.state !== 'X'
}

/** Whether one argument of /proc/PID/cmdline contains `text`; false when the process is gone. */
function cmdlineHas(pid, text) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(text))
  } catch {
    return false
  }
}

/** Pids of running processes whose command line mentions `needle`. */
function processesMentioning(needle) {
  const pids = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (cmdlineHas(pid, needle) && isRunning(pid)) pids.push(pid)
  }
  return pids
}

/** Whether process `pid` ignores signal number `signo` (its SigIgn mask in /proc/PID/status). */
function ignoresSignal(pid, signo) {
  const status = procStatus(pid)
  if (status === undefined) throw new Error(`pid ${pid} is gone`)
  return ((BigInt(`0x${status.SigIgn}`) >> BigInt(signo - 1)) & 1n) === 1n
}

/**
 * Whether someone holds a flock(2) lock on `file`, read from /proc/locks (the kernel's own
 * list, so no flock(1) is needed): a lock line names the file's device and inode.
 */
function isLocked(file) {
  let st
  try {
    st = fs.statSync(file)
  } catch {
    return false
  }
  const major = Number((BigInt(st.dev) >> 8n) & 0xfffn) | Number((BigInt(st.dev) >> 32n) & ~0xfffn & 0xffffffffn)
  const minor = Number(BigInt(st.dev) & 0xffn) | Number((BigInt(st.dev) >> 12n) & 0xffffff00n)
  const hex = (n) => n.toString(16).padStart(2, '0')
  const id = `${hex(major)}:${hex(minor)}:${st.ino}`
  return fs.readFileSync('/proc/locks', 'utf8').split('\n').some((line) => {
    const f = line.trim().split(/\s+/)
    // "1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"; a lock still waited for has "->" first.
    return f[1] === 'FLOCK' && f[5] === id
  })
}

/** The pid a pidfile names, or undefined when it is missing or holds no decimal pid (yet). */
function readPid(file) {
  let text
  try {
    text = fs.readFileSync(file, 'latin1').trim()
  } catch {
    return undefined
  }
  return /^[0-9]+$/.test(text) ? Number(text) : undefined
}

module.exports = {
  procStat, procStatus, procFds, procChildren, isRunning, cmdlineHas, processesMentioning, ignoresSignal, isLocked, readPid,
}
