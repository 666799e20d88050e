// The README's quick start, end to end: start the example server as a daemon, query it, stop it.
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const { status } = require('..')

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'daemonkit-demo-'))
const pidFile = path.join(dir, 'server.pid')
const portFile = path.join(dir, 'server.port')

function get(port) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d)).on('end', () => resolve(body))
    }).on('error', reject)
  })
}

// daemonkit's own status() asks the lock (no flock(1) needed, e.g. on macOS).
async function lockHeld() {
  return (await status(pidFile)).state === 'running'
}

async function main() {
  console.log(`$ node examples/server.js ${pidFile} ${portFile}`)
  execFileSync(process.execPath, [path.join(__dirname, 'server.js'), pidFile, portFile], { stdio: 'inherit' })
  const pid = Number(fs.readFileSync(pidFile, 'utf8'))
  console.log(`started: pid ${pid}, pidfile locked: ${await lockHeld()}`)
  const reply = await get(Number(fs.readFileSync(portFile, 'utf8')))
  console.log(`GET / -> ${reply.trim()}`)
  process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + 10_000
  while (fs.existsSync(pidFile) || (await lockHeld())) {
    if (Date.now() > deadline) throw new Error('the daemon did not stop')
    await new Promise((r) => setTimeout(r, 20))
  }
  console.log('stopped: pidfile removed, lock released')
  console.log(`log:\n${fs.readFileSync(`${pidFile}.log`, 'utf8')}`)
  fs.rmSync(dir, { recursive: true, force: true })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
