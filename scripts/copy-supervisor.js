// Puts the freshly built supervisor next to the binding, where src/supervisor.ts looks first.
const fs = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
const built = path.join(root, 'target', 'release', 'daemonkit-supervise')
const dest = path.join(root, 'binding', 'daemonkit-supervise')
fs.copyFileSync(built, dest)
fs.chmodSync(dest, 0o755)
console.log(`copied ${path.relative(root, built)} -> ${path.relative(root, dest)}`)
