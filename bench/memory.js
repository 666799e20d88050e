'use strict'
// Benchmark 4: resident memory of an idle daemon, per tool, against a bare Node process running
// the same app; and the RSS of daemonkit's native supervisor.
//
// In each batch: one daemon per tool (each in its own temp dir), a bare `node app-plain.js`
// started directly by the harness, and `daemonkit start -p F -- sleep 1000`; all settle
// together, then VmRSS is read from /proc/PID/status; then everything is stopped by pid.
// Batches repeat; the report takes medians.

const { spawn } = require('node:child_process')
const path = require('node:path')

const { NODE, fixture, procStatus, exited, readJsonWait, readPid, tempDir, removeDir, sleep, summary, stopAndReap, procChildren } = require('./lib')
const { runLauncher, daemonPids, cleanUp, pidPath, CLI } = require('./tools')

const SETTLE_MS = 1500

async function batch(tools) {
  const dirs = []
  const started = []
  let bare
  try {
    // The bare reference: the same app, no daemonizing code, a plain child of the harness.
    const bareDir = tempDir('rss-bare')
    dirs.push(bareDir)
    bare = spawn(NODE, [fixture('app-plain.js'), bareDir], { stdio: 'ignore' })
    const bareExit = new Promise((resolve) => bare.once('exit', resolve))
    if (!readJsonWait(path.join(bareDir, 'ready.json'), 10_000)) throw new Error('the bare node process did not start')

    for (const t of tools) {
      const dir = tempDir(`rss-${t.name}`)
      dirs.push(dir)
      const r = runLauncher(t.cmd(dir), { cwd: dir })
      if (r.status !== 0) throw new Error(`${t.name}: launcher exited with ${r.status ?? r.signal}: ${r.stderr}`)
      if (!readJsonWait(path.join(dir, 'ready.json'), 10_000)) throw new Error(`${t.name}: no ready marker`)
      started.push({ tool: t, dir })
    }
    const supDir = tempDir('rss-supervisor')
    dirs.push(supDir)
    const r = runLauncher([NODE, CLI, 'start', '-p', pidPath(supDir), '--', 'sleep', '1000'], { cwd: supDir })
    if (r.status !== 0) throw new Error(`daemonkit start -- sleep: exited with ${r.status}: ${r.stderr}`)
    const supervisor = readPid(pidPath(supDir))

    await sleep(SETTLE_MS)

    const rss = (pid) => {
      const s = procStatus(pid)
      const kib = s && Number.parseInt(s.VmRSS, 10)
      if (!(kib > 0)) throw new Error(`no VmRSS for pid ${pid}`)
      return kib
    }
    const out = { bare: rss(bare.pid), tools: {}, supervisor: rss(supervisor), extra: {} }
    for (const { tool, dir } of started) {
      const { appPid, pidFilePid } = daemonPids(dir)
      out.tools[tool.name] = rss(appPid)
      if (tool.supervised) out.extra[tool.name] = rss(pidFilePid)
    }

    // Stop: the supervisor's `sleep` is its child; SIGTERM to the supervisor ends both.
    const sleepPid = procChildren(supervisor)[0]
    stopAndReap(supervisor, { mention: supDir })
    if (sleepPid && !exited(sleepPid)) throw new Error(`the supervised sleep ${sleepPid} outlived its supervisor`)
    stopAndReap(bare.pid, { mention: bareDir })
    await bareExit
    return out
  } finally {
    for (const { dir } of started) cleanUp(dir)
    if (bare && !exited(bare.pid)) stopAndReap(bare.pid)
    for (const d of dirs) removeDir(d)
  }
}

/** Returns { bare, tools: { name: summary }, supervisor: summary, extra: { name: summary } } in KiB. */
async function benchMemory({ tools, batches, log }) {
  const all = []
  for (let i = 0; i < batches; i++) {
    all.push(await batch(tools))
    log(`  memory: batch ${i + 1}/${batches}`)
  }
  const pick = (f) => summary(all.map(f))
  return {
    settleMs: SETTLE_MS,
    batches,
    bare: pick((b) => b.bare),
    tools: Object.fromEntries(tools.map((t) => [t.name, pick((b) => b.tools[t.name])])),
    added: Object.fromEntries(tools.map((t) => [t.name, pick((b) => b.tools[t.name] - b.bare)])),
    extra: Object.fromEntries(tools.filter((t) => t.supervised).map((t) => [t.name, pick((b) => b.extra[t.name])])),
    supervisor: pick((b) => b.supervisor),
  }
}

module.exports = { benchMemory }
