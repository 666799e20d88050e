'use strict'
const test = require('ava')
const fs = require('node:fs')
const http = require('node:http')
const net = require('node:net')
const path = require('node:path')
const h = require('./helpers')
const daemonkit = require('..')

const SERVER = path.join(h.FIXTURES, 'http-server.js')
const CLI = path.join(__dirname, '..', 'dist', 'cli.js')

/** One request on a fresh connection; resolves with the body, rejects on any error. */
function get(target, { timeout = 20_000, urlPath = '/' } = {}) {
  return new Promise((resolve, reject) => {
    const where = typeof target === 'number' ? { host: '127.0.0.1', port: target } : { socketPath: target }
    const req = http.request({ ...where, path: urlPath, agent: false, timeout }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}`))))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end()
  })
}

function events(file) {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n') : []
}

/** The port (or path) the server with `pid` said it listens on. */
function listening(file, pid) {
  const line = events(file).find((l) => l.startsWith(`listening ${pid} `))
  return line && (/^\d+$/.test(line.split(' ')[2]) ? Number(line.split(' ')[2]) : line.split(' ')[2])
}

/** The socket inode behind /proc/PID/fd/FD, or undefined. */
function socketInode(pid, fd) {
  try {
    return /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1]
  } catch {
    return undefined
  }
}

function server(spec, options) {
  return h.run(process.execPath, [SERVER, JSON.stringify(spec)], options)
}

test('daemonize({ listen }): the daemon serves on the sockets its launcher bound; listenFds() names them and clears LISTEN_*', async (t) => {
  const dir = h.tempDir(t)
  const spec = {
    pidFile: path.join(dir, 'app.pid'),
    events: path.join(dir, 'events'),
    listen: ['127.0.0.1:0', { address: `unix:${path.join(dir, 'admin.sock')}`, name: 'admin' }],
  }
  const r = await server(spec)
  t.is(r.code, 0, r.stderr)
  const pid = h.readPid(spec.pidFile)
  h.cleanupPid(t, pid, dir)
  const fdsLine = events(spec.events).find((l) => l.startsWith(`fds ${pid} `))
  t.is(fdsLine, `fds ${pid} [{"fd":6,"name":"unknown"},{"fd":7,"name":"admin"}] `, 'after the hand-off fds 3-5; no LISTEN_* left in process.env')
  t.truthy(socketInode(pid, 6))
  t.truthy(socketInode(pid, 7))
  t.is(await get(listening(spec.events, pid)), `v1 ${pid}\n`)
  t.is(await get(path.join(dir, 'admin.sock')), `v1 ${pid}\n`)
  process.kill(pid, 'SIGTERM')
  await h.waitFor(() => !h.isLocked(spec.pidFile), { what: 'the daemon to stop' })
})

test('bad listen addresses: a typed error naming the address, and nothing started, no pidfile, no socket file left', async (t) => {
  const dir = h.tempDir(t)
  const busy = net.createServer()
  await new Promise((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const plainFile = path.join(dir, 'not-a-socket')
  fs.writeFileSync(plainFile, 'data\n')
  const cases = [
    ['999.1.1.1:80', /not an address/],
    [`127.0.0.1:${busy.address().port}`, /in use/],
    [`unix:${path.join(dir, 'missing', 's.sock')}`, /folder .*missing does not exist/],
    [`unix:${plainFile}`, /not a socket/],
  ]
  for (const [bad, why] of cases) {
    const spec = { pidFile: path.join(dir, 'app.pid'), events: path.join(dir, 'events'), listen: [`unix:${path.join(dir, 'first.sock')}`, bad] }
    const r = await server(spec)
    t.is(r.code, 1, bad)
    t.true(r.stderr.includes(`cannot listen on ${bad}: `), r.stderr)
    t.regex(r.stderr, why)
    t.false(fs.existsSync(spec.pidFile), `${bad}: no pidfile`)
    t.false(fs.existsSync(spec.events), `${bad}: no daemon started`)
    t.false(fs.existsSync(path.join(dir, 'first.sock')), `${bad}: the socket bound before it is removed`)
  }
  t.is(fs.readFileSync(plainFile, 'utf8'), 'data\n', 'the file in the way is left alone')

  const err = await t.throwsAsync(daemonkit.spawnDaemon('/bin/sleep', ['30'], { pidFile: path.join(dir, 's.pid'), listen: ['999.1.1.1:80'] }))
  t.true(err instanceof daemonkit.ListenError)
  t.is(err.code, 'ELISTEN')
  t.is(err.address, '999.1.1.1:80')
  t.false(fs.existsSync(path.join(dir, 's.pid')))

  const cli = await h.run(process.execPath, [CLI, 'start', '-p', path.join(dir, 'c.pid'), '--listen', `127.0.0.1:${busy.address().port}`, '--', '/bin/sleep', '30'])
  t.is(cli.code, 1)
  t.regex(cli.stderr, /cannot listen on 127\.0\.0\.1:\d+: port \d+ is in use/)
  t.false(fs.existsSync(path.join(dir, 'c.pid')))
})

test('spawnDaemon({ listen }): the supervisor holds the sockets; a command restarted after a crash gets the same ones, and a request made meanwhile is served', async (t) => {
  const dir = h.tempDir(t)
  const ev = path.join(dir, 'events')
  const pidFile = path.join(dir, 'sup.pid')
  const r = await daemonkit.spawnDaemon(process.execPath, [SERVER, JSON.stringify({ supervised: true, events: ev })], {
    pidFile,
    listen: [{ address: '127.0.0.1:0', name: 'web' }],
    waitReady: true,
    restart: 'always',
  })
  h.cleanupPid(t, r.pid, dir)
  h.cleanupPid(t, r.commandPid, dir)
  t.true(events(ev).includes(`fds ${r.commandPid} [{"fd":3,"name":"web"}] `), 'fd 3 as in systemd; LISTEN_* removed from process.env')
  const port = listening(ev, r.commandPid)
  t.is(await get(port), `v1 ${r.commandPid}\n`)
  const held = socketInode(r.pid, fs.readdirSync(`/proc/${r.pid}/fd`).find((fd) => socketInode(r.pid, fd) === socketInode(r.commandPid, 3)))
  t.truthy(held, 'the supervisor holds the socket itself')

  process.kill(r.commandPid, 'SIGKILL')
  const body = await get(port) // waits in the backlog while the command is down
  const newPid = Number(body.split(' ')[1])
  t.not(newPid, r.commandPid)
  h.cleanupPid(t, newPid, dir)
  t.is(socketInode(newPid, 3), held, 'the restarted command serves on the same socket')
  process.kill(r.pid, 'SIGTERM')
  await h.waitFor(() => !h.isLocked(pidFile), { what: 'the supervisor to stop' })
})

h.rootTest('spawnDaemon({ listen, user }): root binds a privileged port for a command run as nobody', async (t) => {
  const dir = h.tempDir(t)
  const fixture = h.readableCopy(dir, SERVER)
  const evDir = path.join(dir, 'ev')
  fs.mkdirSync(evDir, { mode: 0o777 })
  fs.chmodSync(evDir, 0o777)
  const ev = path.join(evDir, 'events')
  const port = 600 + Math.floor(Math.random() * 300)
  const r = await daemonkit.spawnDaemon(process.execPath, [fixture, JSON.stringify({ supervised: true, events: ev })], {
    pidFile: path.join(dir, 'sup.pid'),
    listen: [`127.0.0.1:${port}`],
    waitReady: true,
    user: 'nobody',
  })
  h.cleanupPid(t, r.pid, dir)
  h.cleanupPid(t, r.commandPid, dir)
  t.not(h.procStatus(r.commandPid).Uid.split('\t')[0], '0')
  t.is(await get(port), `v1 ${r.commandPid}\n`)
})
