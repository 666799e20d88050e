#!/usr/bin/env node
// Writes package.json's version into the version checks of binding/index.js (daemonkit's own
// loader, which `napi version` leaves alone) and, inside a git work tree, stages
// the loader and npm/*/package.json, so that `npm version` commits them with package.json.
// Runs as part of the `version` script, after `napi version`.
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const root = path.join(__dirname, '..')
const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))
const loader = path.join(root, 'binding', 'index.js')
let count = 0
const text = fs
  .readFileSync(loader, 'utf8')
  .replace(/(bindingPackageVersion !== ')[^']*(')/g, (_, a, b) => (count++, `${a}${version}${b}`))
  .replace(/(version mismatch, expected )\S+( but got)/g, (_, a, b) => (count++, `${a}${version}${b}`))
if (count === 0) {
  console.error('sync-loader-version: no version check found in binding/index.js')
  process.exit(1)
}
fs.writeFileSync(loader, text)
console.log(`binding/index.js: ${count} version checks now say ${version}`)

const inGit = spawnSync('git', ['rev-parse', '--is-inside-work-tree'], { cwd: root, encoding: 'utf8' }).stdout.trim() === 'true'
if (inGit) {
  const r = spawnSync('git', ['add', 'binding/index.js', 'npm'], { cwd: root, stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
