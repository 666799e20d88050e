'use strict'
// The newcomer's path: every code block of README.md and docs/*.md runs as written, the README's
// test command passes without the optional system tools, the demo runs without flock(1), an error
// before ready is shown once, and the supervisor's path can be overridden.
//
// How a fenced block is treated, by its info string (documented in docs/newcomer.md):
//   ```js / ```javascript   run with node: as an ES module if it has an import statement, else CommonJS
//   ```sh / ```bash         run with bash -euo pipefail
//   ```text, ```ini, ```conf, … (any other language)   shown only: listings, outputs, configuration
//   a missing info string   an error: say what the block is
// Words after the language: `no-run` (shown only), `needs=root,curl,…` (skipped where missing),
// `file=NAME` (not run: written as NAME into the directory of every later block of the document).
// `<!-- docs-test file=NAME ... -->` writes a file the reader need not see (e.g. worker.py).
// Each block runs in its own temp dir where `daemonkit` is installed (node_modules/daemonkit and
// node_modules/.bin), with examples/ linked; every process it leaves (found by an environment
// marker) is killed by pid afterwards.
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const test = require('ava')
const h = require('./helpers')

const ROOT = path.join(__dirname, '..')
const DOCS = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)]
const RUNNABLE = { js: 'node', javascript: 'node', sh: 'bash', bash: 'bash' }
const MARKER = 'DOCS_TEST_BLOCK'

/** Fenced blocks and hidden files of one markdown document, in order. */
function parse(doc) {
  return parseText(fs.readFileSync(path.join(ROOT, doc), 'utf8'))
}

function parseText(markdown) {
  const lines = markdown.split('\n')
  const items = []
  for (let i = 0; i < lines.length; i++) {
    const hidden = /^<!--\s*docs-test\s+file=(\S+)\s*$/.exec(lines[i])
    if (hidden) {
      const end = lines.indexOf('-->', i + 1)
      items.push({ kind: 'file', name: hidden[1], text: `${lines.slice(i + 1, end).join('\n')}\n`, line: i + 1 })
      i = end
      continue
    }
    const open = /^(\s*)(```+|~~~+)\s*(.*)$/.exec(lines[i])
    if (!open) continue
    const [, indent, fence, info] = open
    let end = i + 1
    while (end < lines.length && !new RegExp(`^\\s*${fence[0]}{${fence.length},}\\s*$`).test(lines[end])) end++
    const body = lines.slice(i + 1, end).map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
    const [lang = '', ...words] = info.trim().split(/\s+/).filter(Boolean)
    const attrs = Object.fromEntries(words.map((w) => (w.includes('=') ? w.split('=') : [w, true])))
    items.push({ kind: 'block', lang, attrs, info: info.trim(), text: `${body.join('\n')}\n`, line: i + 1 })
    i = end
  }
  return items
}

/** A directory where `daemonkit` is installed the way `npm install daemonkit` would have it. */
function project(t, files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-docs-'))
  fs.chmodSync(dir, 0o755)
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.mkdirSync(path.join(dir, 'node_modules', '.bin'), { recursive: true })
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'daemonkit'))
  fs.symlinkSync(path.join(ROOT, 'dist', 'cli.js'), path.join(dir, 'node_modules', '.bin', 'daemonkit'))
  fs.symlinkSync(path.join(ROOT, 'examples'), path.join(dir, 'examples'))
  fs.writeFileSync(path.join(dir, 'package.json'), '{ "private": true }\n')
  for (const [name, text] of files) fs.writeFileSync(path.join(dir, name), text)
  return dir
}

/** Pids of processes whose environment carries `MARKER=dir`. */
function processesOf(dir) {
  const needle = `${MARKER}=${dir}\0`
  const pids = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      if (fs.readFileSync(`/proc/${entry}/environ`, 'latin1').includes(needle) && h.isRunning(Number(entry))) pids.push(Number(entry))
    } catch {
      // gone, or not ours to read
    }
  }
  return pids
}

async function killAll(dir) {
  const killed = processesOf(dir)
  for (const pid of killed) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // exited meanwhile
    }
  }
  // By pid too: an exiting process loses its environ (so processesOf no longer names it) before its
  // state turns to zombie.
  await h.waitFor(() => processesOf(dir).length === 0 && !killed.some(h.isRunning), { what: `the processes of ${dir} to end` })
}

async function runBlock(t, block, files) {
  const dir = project(t, files)
  t.teardown(() => killAll(dir))
  let command
  let args
  if (RUNNABLE[block.lang] === 'bash') {
    fs.writeFileSync(path.join(dir, 'block.sh'), block.text)
    command = 'bash'
    args = ['-euo', 'pipefail', 'block.sh']
  } else {
    const esm = /^\s*import\s/m.test(block.text) || /^\s*export\s/m.test(block.text)
    const file = esm ? 'block.mjs' : 'block.cjs'
    fs.writeFileSync(path.join(dir, file), block.text)
    command = process.execPath
    args = [file]
  }
  // PORT=0: examples that listen on $PORT take any free port, so parallel runs cannot collide.
  const env = { ...process.env, [MARKER]: dir, PORT: '0', PATH: `${path.join(dir, 'node_modules', '.bin')}:${process.env.PATH}` }
  delete env.SKIPPED_TESTS_FILE
  const r = await h.run(command, args, { cwd: dir, env, timeout: 60_000 })
  t.is(r.code, 0, `exit ${r.code} ${r.signal ?? ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`)
  return r
}

for (const doc of DOCS) {
  const files = []
  for (const item of parse(doc)) {
    if (item.kind === 'file' || (item.kind === 'block' && item.attrs.file)) {
      files.push([item.kind === 'file' ? item.name : item.attrs.file, item.text])
      continue
    }
    const title = `${doc}:${item.line} \`\`\`${item.info}`
    if (!item.lang) {
      test(`${title}: every block says what it is`, (t) => t.fail(`${doc}:${item.line}: a fenced block without an info string; use \`\`\`text for listings (see docs/newcomer.md)`))
      continue
    }
    if (!RUNNABLE[item.lang] || item.attrs['no-run']) continue
    const needs = typeof item.attrs.needs === 'string' ? item.attrs.needs.split(',') : []
    const known = [...files]
    // One block at a time: each starts real daemons, and the machine is shared.
    h.needs(...needs).serial(`${title} runs`, (t) => runBlock(t, item, known))
  }
}

test('the docs runner: info strings, attributes and hidden files are read as documented', (t) => {
  const md = [
    'text', '```js', 'console.log(1)', '```', '```sh no-run', 'rm -rf /', '```', '```', 'a listing', '```',
    '<!-- docs-test file=w.py', 'print(1)', '-->', '```js file=s.mjs needs=root,curl', 'export {}', '```',
    '- a list item:', '', '  ```sh', '  echo indented', '  ```', '',
  ].join('\n')
  const items = parseText(md)
  t.like(items[0], { kind: 'block', lang: 'js', text: 'console.log(1)\n', line: 2 })
  t.like(items[1], { kind: 'block', lang: 'sh', attrs: { 'no-run': true } })
  t.like(items[2], { kind: 'block', lang: '', text: 'a listing\n' })
  t.like(items[3], { kind: 'file', name: 'w.py', text: 'print(1)\n' })
  t.like(items[4], { kind: 'block', lang: 'js', attrs: { file: 's.mjs', needs: 'root,curl' } })
  t.like(items[5], { kind: 'block', lang: 'sh', text: 'echo indented\n' })
  t.is(items.length, 6)
})

test('the docs runner: a daemon a block leaves behind is found by its environment and killed', async (t) => {
  const dir = project(t, [])
  const pidFile = path.join(dir, 'left.pid')
  const code = `require('daemonkit').daemonize(${JSON.stringify(pidFile)}).then(() => setInterval(() => {}, 1000))`
  const r = await h.run(process.execPath, ['-e', code], { cwd: dir, env: { ...process.env, [MARKER]: dir } })
  t.is(r.code, 0, r.stderr)
  const pid = h.readPid(pidFile)
  t.deepEqual(processesOf(dir), [pid])
  await killAll(dir)
  t.false(h.isRunning(pid))
  await h.waitFor(() => !h.isLocked(pidFile), { what: 'the lock to be released' })
})

// ------------------------------------------------------------------------------------------
// The newcomer's path beyond the docs
// ------------------------------------------------------------------------------------------

/** A directory for PATH holding only `tools` (links to the real ones): everything else is missing. */
function pathWith(t, tools) {
  const bin = h.tempDir(t)
  fs.symlinkSync(process.execPath, path.join(bin, 'node'))
  for (const tool of tools) {
    const real = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', tool], { encoding: 'utf8' }).stdout.trim()
    if (real) fs.symlinkSync(real, path.join(bin, tool))
  }
  return bin
}

test.serial('npm test without logrotate: the test is skipped naming the tool and its package, and the run ends with a summary', async (t) => {
  const dir = h.tempDir(t)
  const summary = path.join(dir, 'skips.json')
  const env = { ...process.env, PATH: pathWith(t, ['sh', 'python3']), SKIPPED_TESTS_SUMMARY: summary }
  delete env.SKIPPED_TESTS_FILE
  const r = await h.run(process.execPath, [path.join(__dirname, 'run.js'), '__test__/cli.test.js', '--match', '*logrotate*'], { cwd: ROOT, env, timeout: 120_000 })
  t.is(r.code, 0, r.stdout + r.stderr)
  t.regex(r.stdout, /a real logrotate run .*\[skipped: needs logrotate: apt-get install logrotate\]/)
  t.regex(r.stdout, /To run them all \(Debian \/ Ubuntu\): sudo apt-get install .*logrotate/)
  t.regex(r.stdout, /daemonkit-test-skips: \d+ \(details in test-skips\.json\)\n$/)
  const { skipped } = JSON.parse(fs.readFileSync(summary, 'utf8'))
  t.like(skipped.find((s) => s.title.startsWith('a real logrotate run')), { file: '__test__/cli.test.js', kind: 'tool', missing: ['logrotate'], install: 'apt-get install logrotate' })
  // What .ci/run checks after npm test: any skip fails CI.
  const check = await h.run(process.execPath, [path.join(__dirname, 'run.js'), '--check-skips'], { cwd: ROOT, env })
  t.is(check.code, 1)
  t.regex(check.stderr, /skipped in CI: __test__\/cli\.test\.js › a real logrotate run/)
})

test.serial('npm run demo works without flock(1)', async (t) => {
  const marker = h.tempDir(t)
  t.teardown(() => killAll(marker))
  const env = { ...process.env, PATH: pathWith(t, []), [MARKER]: marker }
  const r = await h.run(process.execPath, [path.join(ROOT, 'examples', 'demo.js')], { cwd: ROOT, env, timeout: 60_000 })
  t.is(r.code, 0, r.stdout + r.stderr)
  t.regex(r.stdout, /pidfile locked: true/)
  t.regex(r.stdout, /stopped: pidfile removed, lock released/)
})

test('an error before ready is shown once, in the daemon\'s words, then one line from daemonkit', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'd.pid')
  const r = await h.launch({ options: { pidFile }, fail: 'throw', message: 'config file is broken (xyzzy)' })
  t.is(r.code, 1)
  t.is(r.stderr.split('xyzzy').length - 1, 1, r.stderr)
  const last = r.stderr.trimEnd().split('\n').at(-1)
  t.regex(last, /^daemonkit: daemon \(pid \d+\) exited with code 1 before it was ready$/)
  const pid = Number(/pid (\d+)/.exec(last)[1])
  t.false(h.isRunning(pid))
  t.false(fs.existsSync(pidFile))
})

test('Daemon#cli(\'start\'): an error in run() is shown once, then "start failed" with the exit status and pid', async (t) => {
  const dir = h.tempDir(t)
  const script = path.join(dir, 'service.js')
  fs.writeFileSync(script, `const { Daemon } = require(${JSON.stringify(ROOT)})
const why = ['cannot read settings', '(xyzzy)'].join(' ')
new Daemon({ pidFile: ${JSON.stringify(path.join(dir, 's.pid'))}, run() { throw new Error(why) } }).cli('start')
`)
  const r = await h.run(process.execPath, [script])
  t.is(r.code, 1)
  t.is(r.stderr.split('xyzzy').length - 1, 1, r.stderr)
  t.regex(r.stderr.trimEnd().split('\n').at(-1), /^start failed: daemon \(pid \d+\) exited with code \d+ before it was ready$/)
  t.false(fs.existsSync(path.join(dir, 's.pid')))
})

test('DAEMONKIT_SUPERVISOR_PATH names the supervisor to run; one that is not executable is an error that says so', async (t) => {
  const dir = h.tempDir(t)
  const copy = path.join(dir, 'my-supervise')
  fs.copyFileSync(path.join(ROOT, 'binding', 'daemonkit-supervise'), copy)
  fs.chmodSync(copy, 0o755)
  const cli = path.join(ROOT, 'dist', 'cli.js')
  const pidFile = path.join(dir, 'w.pid')
  const env = { ...process.env, DAEMONKIT_SUPERVISOR_PATH: copy }
  const r = await h.run(process.execPath, [cli, 'start', '--json', '-p', pidFile, '--', process.execPath, '-e', 'setInterval(() => {}, 1000)', dir], { env })
  t.is(r.code, 0, r.stderr)
  const started = JSON.parse(r.stdout)
  h.cleanupPid(t, started.pid, dir)
  h.cleanupPid(t, started.commandPid, dir)
  t.is(fs.readlinkSync(`/proc/${started.pid}/exe`), copy)
  t.is((await h.run(process.execPath, [cli, 'stop', '-p', pidFile])).code, 0)

  const missing = path.join(dir, 'nope')
  const bad = await h.run(process.execPath, [cli, 'start', '-p', path.join(dir, 'x.pid'), '--', process.execPath, '-e', 'setInterval(() => {}, 1000)', dir], { env: { ...process.env, DAEMONKIT_SUPERVISOR_PATH: missing } })
  t.not(bad.code, 0)
  t.regex(bad.stderr, /DAEMONKIT_SUPERVISOR_PATH=".*nope" does not name an executable file \(ENOENT\)/)
  t.false(fs.existsSync(path.join(dir, 'x.pid')))
})

test('package.json says what a package registry and publint look for', (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  t.is(pkg.type, 'commonjs')
  t.is(pkg.scripts.test, 'node __test__/run.js')
})
