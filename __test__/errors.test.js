'use strict'
// Error objects and the loader as code around them sees them: what survives serialisation, and a
// build from source for a platform without a published binary.
const test = require('ava')
const fs = require('node:fs')
const path = require('node:path')
const h = require('./helpers')

const { ReadinessError, GracefulRestartError, HelperError } = require('../dist')

test('kind and its former name reason are own properties: JSON loggers and structuredClone keep both', (t) => {
  const errors = [
    new ReadinessError(7, 'exited', 3, 'boom\n', 'exited with status 3', 'app'),
    new GracefulRestartError('busy', 7, 'a graceful restart is already running'),
    new HelperError('timeout', 'the helper was not ready in time'),
  ]
  t.deepEqual(errors.map((e) => e.kind), ['exited', 'busy', 'timeout'])
  for (const e of errors) {
    const json = JSON.parse(JSON.stringify(e))
    t.is(json.kind, e.kind, e.name)
    t.is(json.reason, e.kind, `${e.name}: reason in JSON`)
    t.is(structuredClone({ ...e }).reason, e.kind, `${e.name}: reason in a clone`)
  }
})

const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64' ? test : test.skip

onLinuxX64('the loader loads a build from source for a platform without a published binary', async (t) => {
  const dir = h.tempDir(t)
  const addon = path.join(__dirname, '..', 'binding', 'daemonkit.linux-x64-gnu.node')
  if (!fs.existsSync(addon)) return t.fail(`no ${addon}: npm run build first`)
  fs.copyFileSync(path.join(__dirname, '..', 'binding', 'index.js'), path.join(dir, 'index.js'))
  // What a riscv64 machine would have after `npm run build`: the addon named for its platform.
  fs.copyFileSync(addon, path.join(dir, 'daemonkit.linux-riscv64-gnu.node'))
  const preload = path.join(dir, 'arch.js')
  fs.writeFileSync(preload, "Object.defineProperty(process, 'arch', { value: 'riscv64' })\n")
  const r = await h.run(process.execPath, ['-r', preload, '-e', `
    const b = require(${JSON.stringify(path.join(dir, 'index.js'))})
    console.log(typeof b.supervisorDefaults, b[Symbol.for('daemonkit.loader')].platform)`])
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout.trim(), 'function linux-riscv64-gnu')
})
