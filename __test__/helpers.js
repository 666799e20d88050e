'use strict'
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawn, spawnSync } = require('node:child_process')
const test = require('ava')
const proc = require('./proc')

const { isRunning, cmdlineHas } = proc

const FIXTURES = path.join(__dirname, 'fixtures')
const DAEMON = path.join(FIXTURES, 'daemon.js')
const CLI = path.join(__dirname, '..', 'dist', 'cli.js')

/** A fresh temp directory for one test. */
function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-test-'))
  t.teardown(() => {
    // A test that failed before it learnt its daemon's pid (a command that timed out on a loaded
    // machine) still leaves nothing: every process whose command line names this test's own
    // folder is killed, by pid.
    killMentioning(proc.processesMentioning(dir), dir)
    fs.rmSync(dir, { recursive: true, force: true })
  })
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

/**
 * Polls `predicate` (sync or async) every `interval` ms until it returns a truthy value, and
 * resolves with it; rejects after `timeout` ms. A predicate that throws has not held yet.
 */
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

/**
 * SIGKILLs each of `pids` that runs and has an argument mentioning one of `needles` (a test's
 * own temp directory), so a recycled pid is never hit. Does not wait for them to go.
 */
function killMentioning(pids, ...needles) {
  for (const pid of pids) {
    if (!(pid > 1) || !needles.some((needle) => cmdlineHas(pid, needle)) || !isRunning(pid)) continue
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
  }
}

/** SIGKILLs `pid` if it runs and its command line mentions `dir`, and waits until it is gone. */
async function killIfMentions(pid, dir) {
  if (!cmdlineHas(pid, dir) || !isRunning(pid)) return
  killMentioning([pid], dir)
  await waitFor(() => !isRunning(pid), { what: `pid ${pid} to die` })
}

/**
 * Registers `pid` for killing at teardown. Only a process whose command line mentions `dir`
 * (the test's own temp directory) is ever signalled, so a recycled pid is never hit.
 */
function cleanupPid(t, pid, dir) {
  t.teardown(() => killIfMentions(pid, dir))
}

/** Runs the built CLI (dist/cli.js) with `args`; resolves like run(). */
function cli(args, options) {
  return run(process.execPath, [CLI, ...args], options)
}

/** Checks that a `start --json` succeeded and registers both of its pids for teardown; returns the parsed result. */
function started(t, dir, r) {
  t.is(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout)
  cleanupPid(t, s.pid, dir)
  cleanupPid(t, s.commandPid, dir)
  return s
}

/** `daemonkit start --json ...args` through the CLI, checked and registered as by started(). */
async function startJson(t, dir, args, options) {
  return started(t, dir, await cli(['start', '--json', ...args], options))
}

/**
 * A python command whose command line mentions `dir`, so teardown may kill it by pid. The
 * system's python: the one on PATH may live under /root, where other users cannot reach it.
 */
function sleeper(dir, extra = '') {
  return ['/usr/bin/python3', '-c', `import time, sys${extra}\nwhile True: time.sleep(1)`, dir]
}

/** The text of `file`, or '' while it does not exist. */
function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

module.exports = {
  ...proc, DAEMON, FIXTURES, CLI, tempDir, run, launch, cli, started, startJson, sleeper, readText, waitFor, settle,
  killMentioning, killIfMentions, cleanupPid, readableCopy, rootTest, needs, hasTool, TOOL_PACKAGES,
}

// systemd-analyze (verifying generated units) comes with Debian's systemd package; install it
// with --no-install-recommends so it does not pull systemd-sysv and try to become init.
TOOL_PACKAGES['systemd-analyze'] = 'systemd'
