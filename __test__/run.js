#!/usr/bin/env node
'use strict'
// `npm test`: runs ava (arguments passed through), then prints which tests were skipped and why,
// and writes the same as JSON to test-skips.json at the package root (or to
// $SKIPPED_TESTS_SUMMARY):
//   { "skipped": [{ "file", "title", "kind": "tool" | "root", "missing": [...], "install" }] }
// `node __test__/run.js --check-skips` exits 1 if the last run skipped a test for a missing tool
// or for not being root (.ci/run uses it: CI installs every tool and runs as root).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const ROOT = path.join(__dirname, '..')
const SUMMARY = process.env.SKIPPED_TESTS_SUMMARY || path.join(ROOT, 'test-skips.json')

if (process.argv[2] === '--check-skips') {
  const { skipped } = JSON.parse(fs.readFileSync(SUMMARY, 'utf8'))
  for (const s of skipped) console.error(`skipped in CI: ${s.file} › ${s.title} (${s.missing.join(', ')})`)
  if (skipped.length) process.exit(1)
  console.log('test-skips.json: no test was skipped')
  process.exit(0)
}

const records = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-skips-')), 'skips.jsonl')
fs.writeFileSync(records, '')
const ava = path.join(ROOT, 'node_modules', 'ava', 'entrypoints', 'cli.mjs')
const r = spawnSync(process.execPath, [ava, ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: { ...process.env, SKIPPED_TESTS_FILE: records },
})

const seen = new Set()
const skipped = []
for (const line of fs.readFileSync(records, 'utf8').split('\n')) {
  if (!line || seen.has(line)) continue
  seen.add(line)
  skipped.push(JSON.parse(line))
}
fs.rmSync(path.dirname(records), { recursive: true, force: true })
fs.writeFileSync(SUMMARY, `${JSON.stringify({ skipped }, null, 2)}\n`)

if (skipped.length) {
  console.log(`\n${skipped.length} test(s) skipped:`)
  const installs = new Set()
  for (const s of skipped) {
    console.log(`  ${s.file} › ${s.title}: needs ${s.missing.join(', ')}`)
    if (s.install) installs.add(s.install.replace(/^apt-get install /, ''))
  }
  if (installs.size) console.log(`To run them all (Debian / Ubuntu): sudo apt-get install ${[...installs].join(' ')}`)
  if (skipped.some((s) => s.kind === 'root')) console.log('Tests marked "needs root" run when the suite runs as root (as CI does).')
}
console.log(`daemonkit-test-skips: ${skipped.length} (details in test-skips.json)`)
process.exit(r.status ?? 1)
