'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const test = require('ava')

const FIXTURES = path.join(__dirname, 'fixtures')
const DAEMON = path.join(FIXTURES, 'daemon.js')

/** A fresh temp directory for one test. */
function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-test-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A copy of the built package (package.json, dist/, binding/) and of `fixture` inside `dir`, for
 * tests that run the fixture as another user, who may not be able to reach the checkout itself
 * (a clone under a 0700 directory). Returns the copied fixture's path.
 */
function readableCopy(dir, fixture) {
  const root = path.join(dir, 'pkg')
  for (const entry of ['package.json', 'dist', 'binding']) {
    fs.cpSync(path.join(__dirname, '..', entry), path.join(root, entry), { recursive: true })
  }
  const copy = path.join(root, '__test__', 'fixtures', path.basename(fixture))
  fs.mkdirSync(path.dirname(copy), { recursive: true })
  fs.copyFileSync(fixture, copy)
  fs.chmodSync(dir, 0o755)
  if (spawnSync('chmod', ['-R', 'a+rX', root]).status !== 0) throw new Error(`chmod -R a+rX ${root} failed`)
  return copy
}

/**
 * Where each system tool the tests drive comes from (Debian / Ubuntu package). A test that needs
 * one declares it with `needs('tool')`; where it is missing, the test is skipped with a title that
 * names the tool and how to install it, and the skip is recorded for the run's summary.
 */
const TOOL_PACKAGES = {
  script: 'bsdutils',
  flock: 'util-linux',
  setpriv: 'util-linux',
  prlimit: 'util-linux',
  unshare: 'util-linux',
  mount: 'mount',
  'start-stop-daemon': 'dpkg',
  strace: 'strace',
  logrotate: 'logrotate',
  gcc: 'gcc libc6-dev',
  pkill: 'procps',
  umount: 'mount',
  python3: 'python3',
  curl: 'curl',
}

const toolCache = new Map()

/** Whether `tool` is on PATH. */
function hasTool(tool) {
  if (!toolCache.has(tool)) {
    toolCache.set(tool, spawnSync('sh', ['-c', 'command -v "$1"', 'sh', tool], { stdio: 'ignore' }).status === 0)
  }
  return toolCache.get(tool)
}

/**
 * Appends one skipped test to the file `$SKIPPED_TESTS_FILE` names (set by `npm test`, see
 * __test__/run.js), one JSON object a line: { file, title, kind: 'tool' | 'root', missing, install }.
 */
function recordSkip(entry) {
  const file = process.env.SKIPPED_TESTS_FILE
  if (!file) return
  // The test file that registered the test: the first *.test.js on the stack.
  const caller = /(\/[^\s():]+\.test\.[cm]?js)/.exec(new Error().stack ?? '')
  const testFile = caller ? path.relative(path.join(__dirname, '..'), caller[1]) : '(unknown)'
  fs.appendFileSync(file, `${JSON.stringify({ file: testFile, ...entry })}\n`)
}

/**
 * `test` when every requirement holds, else a `test.skip` whose title says what is missing.
 * Requirements are tool names (see TOOL_PACKAGES) and `'root'`. The result also has `.serial`.
 *
 *     needs('logrotate')('a real logrotate run …', async (t) => { … })
 *     needs('root', 'setpriv').serial('…', async (t) => { … })
 */
function needs(...requirements) {
  const isRoot = Boolean(process.getuid && process.getuid() === 0)
  const missing = requirements.filter((r) => (r === 'root' ? !isRoot : !hasTool(r)))
  if (missing.length === 0) return test
  const tools = missing.filter((r) => r !== 'root')
  const packages = [...new Set(tools.map((tool) => TOOL_PACKAGES[tool] ?? tool))]
  const install = packages.length ? `apt-get install ${packages.join(' ')}` : undefined
  const why = [
    ...(missing.includes('root') ? ['needs root'] : []),
    ...(tools.length ? [`needs ${tools.join(', ')}: ${install}`] : []),
  ].join('; ')
  const skipper = (base) => (title, ...rest) => {
    recordSkip({ title, kind: tools.length ? 'tool' : 'root', missing, install })
    return base(`${title} [skipped: ${why}]`, ...rest)
  }
  const fn = skipper(test.skip)
  fn.serial = skipper(test.serial.skip)
  return fn
}

/**
 * `test` when running as root, else a skipped test (recorded in the summary): privilege drops,
 * chroot, chown and running fixtures as `nobody` need root (.ci/run and the GitHub workflow run
 * the suite as root).
 */
const rootTest = needs('root')

/** Runs a command to completion; resolves with { code, signal, stdout, stderr }. */
function run(command, args, { cwd, env, timeout = 30_000, stdio } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: env ?? process.env, stdio: stdio ?? ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (d) => (stdout += d))
    child.stderr?.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${command} ${args.join(' ')} timed out; stderr: ${stderr}`))
    }, timeout)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Launches the fixture daemon with `spec`; resolves with the launcher's result. */
function launch(spec, { execArgv = [], cwd, env, stdio, timeout } = {}) {
  return run(process.execPath, [...execArgv, DAEMON, JSON.stringify(spec)], { cwd, env, stdio, timeout })
}

/** Fields of /proc/PID/stat, or undefined if the process is gone. */
function procStat(pid) {
  let text
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return {
    state: rest[0],
    ppid: Number(rest[1]),
    pgrp: Number(rest[2]),
    session: Number(rest[3]),
    ttyNr: Number(rest[4]),
  }
}

/** /proc/PID/status as a map of field -> value. */
function procStatus(pid) {
  const out = {}
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim()
  }
  return out
}

/** The open descriptors of PID: { fd: target }. */
function procFds(pid) {
  const out = {}
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      out[fd] = fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
    } catch {
      // closed meanwhile
    }
  }
  return out
}

/** Running = exists and is not a zombie (pid 1 here reaps orphans late). */
function isRunning(pid) {
  const st = procStat(pid)
  return st !== undefined && st.state !== 'Z' && st.state !== 'X'
}

async function waitFor(predicate, { timeout = 30_000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  let lastError
  for (;;) {
    try {
      const value = await predicate()
      if (value) return value
    } catch (err) {
      // Not there yet (a file still to be written, a /proc entry that went away meanwhile).
      lastError = err
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? ` (last error: ${lastError.message})` : ''}`)
    }
    await new Promise((r) => setTimeout(r, interval))
  }
}

/**
 * Waits until `predicate` holds or `timeout` passes, without failing: the caller asserts afterwards.
 * For "nothing is left" checks, where a process that is on its way out may need a moment on a
 * loaded machine.
 */
function settle(predicate, { timeout = 5_000 } = {}) {
  return waitFor(predicate, { timeout }).catch(() => {})
}

/** Whether process `pid` ignores signal number `signo` (its SigIgn mask in /proc/PID/status). */
function ignoresSignal(pid, signo) {
  return ((BigInt(`0x${procStatus(pid).SigIgn}`) >> BigInt(signo - 1)) & 1n) === 1n
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

function readPid(file) {
  return Number(fs.readFileSync(file, 'utf8').trim())
}

/**
 * Registers `pid` for killing at teardown. Only a process whose command line mentions `dir`
 * (the test's own temp directory) is ever signalled, so a recycled pid is never hit.
 */
function cleanupPid(t, pid, dir) {
  t.teardown(async () => {
    let cmdline = ''
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    } catch {
      return
    }
    if (!cmdline.includes(dir) || !isRunning(pid)) return
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      return
    }
    await waitFor(() => !isRunning(pid), { what: `pid ${pid} to die` })
  })
}

/** Pids of running processes whose command line mentions `needle`. For counting only. */
function processesMentioning(needle) {
  const pids = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle) && isRunning(Number(entry))) pids.push(Number(entry))
    } catch {
      // gone
    }
  }
  return pids
}

module.exports = {
  DAEMON, FIXTURES, tempDir, run, launch, procStat, procStatus, procFds, isRunning, waitFor, settle, ignoresSignal, isLocked, readPid,
  cleanupPid, processesMentioning, readableCopy, rootTest, needs, hasTool, TOOL_PACKAGES,
}

// systemd-analyze (verifying generated units) comes with Debian's systemd package; install it
// with --no-install-recommends so it does not pull systemd-sysv and try to become init.
TOOL_PACKAGES['systemd-analyze'] = 'systemd'
