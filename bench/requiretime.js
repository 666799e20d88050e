'use strict'
// Benchmark 5: require() time of each package, in fresh Node processes (fixtures/require-time.js
// times require() of the module paths it is given with process.hrtime.bigint()). Packages
// alternate process by process.

const path = require('node:path')

const { PKG_ROOT, NODE, fixture, summary, ms } = require('./lib')
const { runLauncher } = require('./tools')

const nm = (name) => path.join(PKG_ROOT, 'node_modules', name)

function modules(versions) {
  return [
    { name: 'daemonkit', label: `daemonkit ${versions.daemonkit}`, paths: [PKG_ROOT] },
    {
      name: 'daemonkit+binding',
      label: 'daemonkit, then its native binding (loaded on first use: daemonize(), status(), …)',
      paths: [PKG_ROOT, path.join(PKG_ROOT, 'binding')],
      sum: true,
    },
    { name: 'daemon', label: `daemon ${versions.daemon}`, paths: [nm('daemon')] },
    { name: 'daemonize2', label: `daemonize2 ${versions.daemonize2}`, paths: [nm('daemonize2')] },
    { name: 'child_process', label: 'node:child_process (built in: the spawn approach)', paths: ['node:child_process'] },
  ]
}

/** Returns [{ name, label, summary (ms) }]. */
function benchRequire({ versions, runs, log }) {
  const mods = modules(versions)
  const acc = new Map(mods.map((m) => [m.name, []]))
  for (let round = 0; round < runs + 1; round++) {
    for (let i = 0; i < mods.length; i++) {
      const m = mods[(i + round) % mods.length]
      const r = runLauncher([NODE, fixture('require-time.js'), ...m.paths], { stdio: ['ignore', 'pipe', 'pipe'] })
      if (r.status !== 0) throw new Error(`require-time.js ${m.name} exited with ${r.status}: ${r.stderr}`)
      const ns = r.stdout.toString().trim().split(' ').map(BigInt)
      const total = m.sum ? ns.reduce((a, b) => a + b, 0n) : ns[0]
      if (round > 0) acc.get(m.name).push(ms(total)) // round 0 warms the file cache
    }
  }
  log(`  require: ${runs} fresh processes per package`)
  return mods.map((m) => ({ name: m.name, label: m.label, summary: summary(acc.get(m.name)) }))
}

module.exports = { benchRequire }
