'use strict'
const test = require('ava')
const fs = require('node:fs')
const http = require('node:http')
const net = require('node:net')
const path = require('node:path')
const h = require('./helpers')
const daemonkit = require('..')

const SERVER = path.join(h.FIXTURES, 'http-server.js')
const { CLI, cli } = h

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

// ---- graceful restarts ----

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The pids of every copy the events file saw start. */
function started(ev) {
  return events(ev).filter((l) => l.startsWith('start ')).map((l) => Number(l.split(' ')[1]))
}

/**
 * Starts the HTTP fixture as a daemonize() app ('app') or as a command under the supervisor
 * ('supervised'), listening on a port of the kernel's choice. Every process it ever starts is
 * killed at teardown (by pid, only if its command line names the test's directory).
 */
async function startServer(t, dir, kind, { startDelay = 0, readyTimeout, orphan } = {}) {
  const ev = path.join(dir, 'events')
  const pidFile = path.join(dir, 'app.pid')
  const versionFile = path.join(dir, 'version')
  fs.writeFileSync(versionFile, 'v1\n')
  const log = path.join(dir, 'log')
  t.teardown(async () => {
    const pids = [...started(ev), h.readPid(pidFile) ?? 0]
    h.killMentioning(pids, dir)
    await h.settle(() => pids.every((pid) => !h.isRunning(pid)))
  })
  let supervisor
  if (kind === 'app') {
    const r = await server({ pidFile, events: ev, versionFile, startDelay, readyTimeout, log, listen: ['127.0.0.1:0'] })
    t.is(r.code, 0, r.stderr)
  } else {
    const spec = { supervised: true, events: ev, versionFile, startDelay, orphan }
    const r = await cli(['start', '-p', pidFile, '-l', log, '--listen', '127.0.0.1:0', '--wait-ready', '--', process.execPath, SERVER, JSON.stringify(spec)])
    t.is(r.code, 0, r.stderr)
    supervisor = h.readPid(pidFile)
  }
  const first = started(ev)[0]
  const port = listening(ev, first)
  t.truthy(port)
  return { ev, pidFile, versionFile, log, port, first, supervisor }
}

/** A few clients, each sending one request after another on fresh connections until stopped. */
/** Load stops by itself after this long, or this many requests, should a failed test not stop it. */
const LOAD_LIMIT_MS = 90_000
const LOAD_LIMIT_REQUESTS = 50_000

function load(t, port, clients = 3) {
  let stopping = false
  t.teardown(() => {
    stopping = true
  })
  let ok = 0
  const failed = []
  const versions = new Set()
  const until = Date.now() + LOAD_LIMIT_MS
  const loops = Array.from({ length: clients }, async () => {
    while (!stopping && Date.now() < until && ok + failed.length < LOAD_LIMIT_REQUESTS) {
      try {
        const body = await get(port)
        ok++
        versions.add(body.split(' ')[0])
      } catch (err) {
        failed.push(err.message)
      }
      await sleep(5)
    }
  })
  return {
    stop: async () => {
      stopping = true
      await Promise.all(loops)
      return { ok, failed, versions }
    },
  }
}

/** Polls status() until stopped; returns every state seen other than "running". */
function watchStatus(t, pidFile) {
  let stopping = false
  t.teardown(() => {
    stopping = true
  })
  const other = []
  const until = Date.now() + LOAD_LIMIT_MS
  const loop = (async () => {
    while (!stopping && Date.now() < until) {
      const s = await daemonkit.status(pidFile)
      if (s.state !== 'running' || s.unverified) other.push(JSON.stringify(s))
      await sleep(10)
    }
  })()
  return {
    stop: async () => {
      stopping = true
      await loop
      return other
    },
  }
}

for (const kind of ['app', 'supervised']) {
  test.serial(`graceful restart (${kind}) under load: no failed request, status() always running, the new code served, the old copy gone`, async (t) => {
    const dir = h.tempDir(t)
    const s = await startServer(t, dir, kind, { startDelay: 300 })
    const traffic = load(t, s.port)
    const watch = watchStatus(t, s.pidFile)
    await sleep(200)
    let previous = s.first
    for (let v = 2; v <= 4; v++) {
      fs.writeFileSync(s.versionFile, `v${v}\n`)
      const r = await cli(['restart', '--graceful', '-p', s.pidFile])
      t.is(r.code, 0, r.stderr)
      const newPid = Number(/now serving: pid (\d+)/.exec(r.stdout)[1])
      t.not(newPid, previous)
      t.is(h.readPid(s.pidFile), kind === 'app' ? newPid : s.supervisor, 'the pidfile names the new copy (or the supervisor, unchanged)')
      // The old copy shares the listening socket until its SIGTERM handler closes its server.
      await h.waitFor(() => !h.isRunning(previous), { what: `the old copy ${previous} to exit` })
      t.is(await get(s.port), `v${v} ${newPid}\n`, 'the new code answers')
      t.true(events(s.ev).includes(`stopped ${previous}`), 'the old copy ran its SIGTERM handler: in-flight requests finished')
      previous = newPid
    }
    await sleep(100)
    const result = await traffic.stop()
    const notRunning = await watch.stop()
    t.deepEqual(result.failed, [], 'no request failed')
    t.true(result.ok > 0)
    t.deepEqual(notRunning, [], 'status() said "running" (proven) all along')
    t.true(h.isLocked(s.pidFile))
    const stop = await cli(['stop', '-p', s.pidFile])
    t.is(stop.code, 0, stop.stderr)
    t.false(fs.existsSync(s.pidFile), 'the last copy removes the pidfile when it stops')
  })

  test.serial(`graceful restart (${kind}): a new version that throws at start is rolled back; the old one serves on, its message is shown`, async (t) => {
    const dir = h.tempDir(t)
    const s = await startServer(t, dir, kind)
    const traffic = load(t, s.port)
    fs.writeFileSync(s.versionFile, 'throw\n')
    const r = await cli(['restart', '--graceful', '-p', s.pidFile])
    t.is(r.code, 1)
    t.regex(r.stderr, /graceful restart failed, pid \d+ keeps serving: .*before it was ready:\nversion throw: refusing to start/s)
    const result = await traffic.stop()
    t.deepEqual(result.failed, [])
    t.deepEqual([...result.versions], ['v1'])
    t.true(h.isRunning(s.first), 'the old copy is untouched')
    t.is(h.readPid(s.pidFile), kind === 'app' ? s.first : s.supervisor)
    const failedCopy = started(s.ev)[1]
    t.truthy(failedCopy)
    await h.waitFor(() => !h.isRunning(failedCopy), { what: 'the failed copy to be gone' })
    t.is(await get(s.port), `v1 ${s.first}\n`)
    const e = await t.throwsAsync(daemonkit.gracefulRestart(s.pidFile))
    t.true(e instanceof daemonkit.GracefulRestartError)
    t.is(e.reason, 'exited')
  })

  test.serial(`graceful restart (${kind}): a second one asked meanwhile fails with a clear error and starts nothing`, async (t) => {
    const dir = h.tempDir(t)
    const s = await startServer(t, dir, kind)
    fs.writeFileSync(s.versionFile, 'v2 hold\n')
    const first = cli(['restart', '--graceful', '-p', s.pidFile])
    await h.waitFor(() => started(s.ev).length === 2, { what: 'the new copy to start' })
    const second = await cli(['restart', '--graceful', '-p', s.pidFile])
    t.is(second.code, 1)
    t.regex(second.stderr, /a graceful restart is already in progress/)
    fs.writeFileSync(`${s.versionFile}.go`, '')
    const r = await first
    t.is(r.code, 0, r.stderr)
    t.is(started(s.ev).length, 2, 'the refused request started nothing')
    await h.waitFor(() => !h.isRunning(s.first), { what: 'the old copy to exit' })
    t.regex(await get(s.port), /^v2 /)
  })
}

test.serial('graceful restart: descriptors and memory do not grow over 20 restarts (app and supervisor)', async (t) => {
  t.timeout(240_000)
  for (const kind of ['app', 'supervised']) {
    const dir = h.tempDir(t)
    const s = await startServer(t, dir, kind)
    const holder = () => (kind === 'app' ? h.readPid(s.pidFile) : s.supervisor)
    const measure = () => ({ fds: Object.keys(h.procFds(holder())).length, rss: Number(h.procStatus(holder()).VmRSS.split(' ')[0]) })
    let pid = s.first
    const restart = async () => {
      const r = await cli(['restart', '--graceful', '-p', s.pidFile])
      t.is(r.code, 0, r.stderr)
      const old = pid
      pid = Number(/now serving: pid (\d+)/.exec(r.stdout)[1])
      await h.waitFor(() => !h.isRunning(old), { what: `the old copy ${old} to exit` })
    }
    await restart() // the first one warms up what is made once
    const before = measure()
    for (let i = 0; i < 20; i++) await restart()
    const after = measure()
    t.true(after.fds <= before.fds, `${kind}: descriptors ${before.fds} -> ${after.fds}`)
    t.true(after.rss < before.rss + 8 * 1024, `${kind}: RSS ${before.rss} kB -> ${after.rss} kB`)
    t.is(await get(s.port), `v1 ${pid}\n`)
    if (kind === 'supervised') {
      const children = fs.readFileSync(`/proc/${s.supervisor}/task/${s.supervisor}/children`, 'utf8').trim().split(/\s+/).map(Number)
      t.true(children.includes(pid))
    }
    await cli(['stop', '-p', s.pidFile])
  }
})

test.serial('graceful restart: SIGUSR2 asks for it too; a supervisor without --wait-ready takes none (clear error)', async (t) => {
  const dir = h.tempDir(t)
  const s = await startServer(t, dir, 'app')
  process.kill(s.first, 'SIGUSR2')
  await h.waitFor(() => h.readPid(s.pidFile) !== s.first && !h.isRunning(s.first), { what: 'the new copy to take over' })
  t.is(await get(s.port), `v1 ${h.readPid(s.pidFile)}\n`)

  const pidFile = path.join(dir, 'plain.pid')
  const r = await cli(['start', '-p', pidFile, '--', '/bin/sleep', '30'])
  t.is(r.code, 0, r.stderr)
  h.cleanupPid(t, h.readPid(pidFile), dir)
  const g = await cli(['restart', '--graceful', '-p', pidFile])
  t.is(g.code, 1)
  t.regex(g.stderr, /takes no graceful restarts: a supervised command needs --wait-ready/)
  await cli(['stop', '-p', pidFile])
})

test.serial('graceful restart (app): a pidfile path relative to where the app was started means the same for the new copy', async (t) => {
  const dir = h.tempDir(t)
  const ev = path.join(dir, 'events')
  fs.mkdirSync(path.join(dir, 'run'))
  fs.writeFileSync(path.join(dir, 'version'), 'v1\n')
  const pidFile = path.join(dir, 'run', 'app.pid')
  t.teardown(async () => {
    const pids = [...started(ev), h.readPid(pidFile) ?? 0]
    h.killMentioning(pids, dir)
    await h.settle(() => pids.every((pid) => !h.isRunning(pid)))
  })
  // Relative in the spec; the daemon itself runs in / (daemonize()'s default cwd), and its next
  // copy is started where it was, so that the two resolve the pidfile alike.
  const r = await server({ pidFile: 'run/app.pid', versionFile: path.join(dir, 'version'), events: ev, listen: ['127.0.0.1:0'] }, { cwd: dir })
  t.is(r.code, 0, r.stderr)
  const first = h.readPid(pidFile)
  t.is(first, started(ev)[0])
  t.is(fs.readlinkSync(`/proc/${first}/cwd`), '/')
  fs.writeFileSync(path.join(dir, 'version'), 'v2\n')
  const g = await cli(['restart', '--graceful', '-p', pidFile])
  t.is(g.code, 0, g.stderr)
  const second = h.readPid(pidFile)
  t.is(second, started(ev)[1], 'the pidfile names the new copy')
  t.not(second, first)
  await h.waitFor(() => !h.isRunning(first), { what: 'the old copy to end' })
  t.is(await get(listening(ev, second)), `v2 ${second}\n`)
})

test.serial('control socket: an app and a supervisor answer a request that is not one with the same line, and serve on', async (t) => {
  const binding = require('../binding')
  for (const kind of ['app', 'supervised']) {
    const dir = h.tempDir(t)
    const s = await startServer(t, dir, kind)
    const owner = kind === 'app' ? s.first : s.supervisor
    const answer = await new Promise((resolve, reject) => {
      // Node cannot name an abstract socket by its exact length: the binding connects.
      const socket = new net.Socket({ fd: binding.connectControl(owner), readable: true, writable: true })
      let text = ''
      socket.setEncoding('utf8')
      socket.write('HELLO\n')
      socket.on('data', (d) => (text += d))
      socket.on('end', () => resolve(text))
      socket.on('error', reject)
    })
    t.is(answer, binding.controlUnknownRequestReply(), kind)
    t.is(await get(s.port), `v1 ${s.first}\n`, kind)
    // The socket still takes a real request afterwards.
    const g = await cli(['restart', '--graceful', '-p', s.pidFile])
    t.is(g.code, 0, `${kind}: ${g.stderr}`)
    await h.waitFor(() => !h.isRunning(s.first), { what: `the old ${kind} copy to end` })
    t.is(await get(s.port), `v1 ${started(s.ev).at(-1)}\n`, kind)
  }
})

test('daemonize({ listen }) in place (detach: false, as under systemd without a socket unit) binds its sockets itself', async (t) => {
  const dir = h.tempDir(t)
  const ev = path.join(dir, 'events')
  const spec = { pidFile: path.join(dir, 'app.pid'), events: ev, listen: [{ address: '127.0.0.1:0', name: 'web' }], detach: false }
  const child = require('node:child_process').spawn(process.execPath, [SERVER, JSON.stringify(spec)], { stdio: 'ignore' })
  t.teardown(() => child.kill('SIGKILL'))
  await h.waitFor(() => listening(ev, child.pid), { what: 'the server to listen' })
  t.true(events(ev).some((l) => l.startsWith(`fds ${child.pid} [{"fd":`) && l.includes('"name":"web"')))
  t.is(await get(listening(ev, child.pid)), `v1 ${child.pid}\n`)
})

// Binds `daemonkit-control/<pid>` for the next few thousand pids (the names are predictable) and
// answers every request with a forged success. Run as nobody.
const IMPOSTOR = `
import resource, selectors, socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
last = int(open('/proc/sys/kernel/ns_last_pid').read())
pid_max = int(open('/proc/sys/kernel/pid_max').read())
sel = selectors.DefaultSelector()
for i in range(1, min(hard - 50, 4000)):
    pid = last + i
    if pid >= pid_max:
        pid = pid - pid_max + 300
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(b'\\0daemonkit-control/%d' % pid)
        s.listen(8)
    except OSError:
        s.close()
        continue
    sel.register(s, selectors.EVENT_READ)
print('bound', flush=True)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept()
        try:
            c.recv(64)
            c.sendall(b'OK 4242\\n')
        except OSError:
            pass
        c.close()
`

for (const kind of ['app', 'supervised']) {
  // A private network namespace keeps the impostor's names away from every other test's daemons.
  h.needs('root', 'unshare', 'setpriv').serial(`graceful restart (${kind}): a control socket name another user bound first is refused with a clear error; the daemon serves on`, async (t) => {
    const dir = h.tempDir(t)
    fs.chmodSync(dir, 0o755)
    const pidFile = path.join(dir, 'app.pid')
    const ev = path.join(dir, 'events')
    const log = path.join(dir, 'log')
    const versionFile = path.join(dir, 'version')
    fs.writeFileSync(versionFile, 'v1\n')
    const spec = kind === 'app' ? { pidFile, events: ev, versionFile, log, listen: ['127.0.0.1:0'] } : { supervised: true, events: ev, versionFile }
    const startCommand =
      kind === 'app'
        ? [process.execPath, SERVER, JSON.stringify(spec)]
        : [process.execPath, CLI, 'start', '-p', pidFile, '-l', log, '--listen', '127.0.0.1:0', '--wait-ready', '--', process.execPath, SERVER, JSON.stringify(spec)]
    const q = (a) => `'${a.replace(/'/g, `'\\''`)}'`
    fs.writeFileSync(path.join(dir, 'impostor.py'), IMPOSTOR)
    fs.chmodSync(path.join(dir, 'impostor.py'), 0o644)
    const script = [
      'ip link set lo up 2>/dev/null',
      `setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 ${q(path.join(dir, 'impostor.py'))} > ${q(path.join(dir, 'impostor.out'))} 2>&1 &`,
      `echo $! > ${q(path.join(dir, 'impostor.pid'))}`,
      `i=0; until grep -q bound ${q(path.join(dir, 'impostor.out'))}; do i=$((i+1)); [ $i -gt 300 ] && exit 90; sleep 0.1; done`,
      `${startCommand.map(q).join(' ')} > ${q(path.join(dir, 'start.out'))} 2>&1 || exit 91`,
      `${[process.execPath, CLI, 'restart', '--graceful', '-p', pidFile].map(q).join(' ')} > ${q(path.join(dir, 'restart.out'))} 2>&1; echo $? > ${q(path.join(dir, 'restart.rc'))}`,
    ].join('\n')
    t.teardown(async () => {
      const pids = [...started(ev), ...['impostor.pid', 'app.pid'].map((name) => h.readPid(path.join(dir, name)) ?? 0)]
      h.killMentioning(pids, dir, 'impostor')
      await h.settle(() => pids.every((pid) => !(pid > 1) || !h.isRunning(pid)))
    })
    const r = await h.run('unshare', ['--net', '--', 'sh', '-c', script], { timeout: 90_000 })
    const read = (name) => (fs.existsSync(path.join(dir, name)) ? fs.readFileSync(path.join(dir, name), 'utf8') : '')
    t.is(r.code, 0, `${r.stderr}\nimpostor: ${read('impostor.out')}\nstart: ${read('start.out')}`)
    const pid = h.readPid(pidFile)
    t.regex(read('log') + read('start.out'), /graceful restarts are off/, `the impostor held the name of pid ${pid} first`)
    const out = read('restart.out')
    t.not(read('restart.rc').trim(), '0', out)
    t.regex(out, new RegExp(`refusing the graceful restart of pid ${pid}: its control socket is held by pid \\d+, not by the daemon`))
    t.notRegex(out, /4242/)
    t.true(h.isLocked(pidFile), 'the daemon still holds its pidfile')
    t.is(h.readPid(pidFile), pid)
    const s = await daemonkit.status(pidFile)
    t.is(s.state, 'running')
    t.is(s.pid, pid)
    t.is(started(ev).length, 1, 'no new copy was started')
  })
}

test.serial('graceful restart (supervised): status names the new command, not an orphan of the old one that leads a group of its own', async (t) => {
  const dir = h.tempDir(t)
  const orphanFile = path.join(dir, 'orphan.pid')
  const s = await startServer(t, dir, 'supervised', { orphan: orphanFile })
  const orphan = await h.waitFor(() => h.readPid(orphanFile), { what: 'the orphan' })
  h.cleanupPid(t, orphan, dir)
  t.like(await daemonkit.status(s.pidFile), { state: 'running', pid: s.supervisor, commandPid: s.first })
  fs.writeFileSync(s.versionFile, 'v2\n')
  const r = await cli(['restart', '--graceful', '-p', s.pidFile])
  t.is(r.code, 0, r.stderr)
  const newPid = Number(/now serving: pid (\d+)/.exec(r.stdout)[1])
  await h.waitFor(() => !h.isRunning(s.first), { what: 'the old command to exit' })
  // Now a child of the supervisor (a subreaper) too, leading its own group, and older than the
  // new command: what once made status name it.
  t.like(h.procStat(orphan), { ppid: s.supervisor, pgrp: orphan })
  t.like(await daemonkit.status(s.pidFile), { state: 'running', pid: s.supervisor, commandPid: newPid })
  t.regex((await cli(['status', '-p', s.pidFile])).stdout, new RegExp(`command pid ${newPid}\\)`))
  // The published pid counts only for a child of the supervisor that leads its own group.
  const published = `${s.pidFile}.command`
  t.is(fs.readFileSync(published, 'utf8'), `${newPid}\n`)
  t.is(fs.statSync(published).mode & 0o777, 0o644, 'a pid is no secret')
  fs.writeFileSync(published, `${process.pid}\n`)
  t.is((await daemonkit.status(s.pidFile)).commandPid, undefined)
  // Nor does a file others may write, whatever it names; and neither makes status guess (the
  // guess would be the orphan).
  fs.writeFileSync(published, `${newPid}\n`)
  fs.chmodSync(published, 0o666)
  t.is((await daemonkit.status(s.pidFile)).commandPid, undefined)
  fs.chmodSync(published, 0o644)
  t.is((await daemonkit.status(s.pidFile)).commandPid, newPid)
  t.is((await cli(['stop', '-p', s.pidFile])).code, 0)
  t.false(fs.existsSync(published), 'the supervisor removes it when it ends')
})

test.serial('graceful restart (app): stop while the new copy is starting leaves no copy running; status says stopped', async (t) => {
  const dir = h.tempDir(t)
  // A readiness deadline far beyond this test's waits: the new copy must end because the old
  // one did, not because its deadline passed.
  const s = await startServer(t, dir, 'app', { readyTimeout: 300_000 })
  // The new copy never gets ready: it waits for versionFile.go, which is never written.
  fs.writeFileSync(s.versionFile, 'v2 hold\n')
  const restarting = cli(['restart', '--graceful', '-p', s.pidFile])
  await h.waitFor(() => started(s.ev).length === 2, { what: 'the new copy to start' })
  const stopped = await cli(['stop', '-p', s.pidFile])
  t.is(stopped.code, 0, stopped.stderr)
  const r = await restarting
  t.not(r.code, 0, 'the restart did not complete')
  const copies = started(s.ev)
  t.is(copies.length, 2)
  const gone = (pid) => {
    const stat = h.procStat(pid)
    return stat === undefined || stat.state === 'Z'
  }
  await h.waitFor(() => copies.every(gone), { what: `copies ${copies.join(', ')} to end` })
  t.regex(h.readText(s.log), new RegExp(`the old copy ended before this new one \\(pid ${copies[1]}\\) was ready; ending too`))
  await h.waitFor(() => !h.isLocked(s.pidFile), { what: 'the pidfile lock to be released' })
  t.is((await daemonkit.status(s.pidFile)).state, 'stopped')
  t.false(fs.existsSync(s.pidFile), 'no pidfile is left behind')
})

test.serial('graceful restart (Daemon): the old copy gets its shutdownTimeout to finish, not a fixed 10 s', async (t) => {
  const dir = h.tempDir(t)
  const pidFile = path.join(dir, 'app.pid')
  const ev = path.join(dir, 'events')
  const app = path.join(dir, 'app.js')
  fs.writeFileSync(
    app,
    `const fs = require('node:fs')
const { Daemon } = require(${JSON.stringify(path.join(__dirname, '..'))})
const note = (l) => fs.appendFileSync(${JSON.stringify(ev)}, l + '\\n')
const daemon = new Daemon({
  pidFile: ${JSON.stringify(pidFile)},
  stderr: ${JSON.stringify(path.join(dir, 'log'))},
  shutdownTimeout: 30_000,
  run: (ctx) => {
    note('start ' + process.pid)
    setInterval(() => {}, 1 << 30)
    ctx.onShutdown(() => new Promise((resolve) => setTimeout(() => { note('done ' + process.pid); resolve() }, 12_000)))
  },
})
daemon.cli(process.argv[2])
`,
  )
  t.teardown(() => h.killMentioning(started(ev), dir))
  const r = await h.run(process.execPath, [app, 'start'])
  t.is(r.code, 0, r.stderr)
  const first = started(ev)[0]
  const g = await cli(['restart', '--graceful', '-p', pidFile])
  t.is(g.code, 0, g.stderr)
  await h.waitFor(() => { const s = h.procStat(first); return s === undefined || s.state === 'Z' }, { timeout: 60_000, what: 'the old copy to end' })
  t.true(events(ev).includes(`done ${first}`), 'the old copy finished its 12 s shutdown hook')
})

h.needs('root', 'setpriv').serial('graceful restart asked by another user: a clear "permission denied", and the daemon serves on', async (t) => {
  const dir = h.tempDir(t)
  fs.chmodSync(dir, 0o755)
  const s = await startServer(t, dir, 'supervised')
  const r = await h.run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'restart', '--graceful', '-p', s.pidFile])
  t.not(r.code, 0, r.stdout)
  t.regex(r.stderr, /cannot ask pid \d+ for a graceful restart: permission denied/)
  t.notRegex(r.stderr, /EPIPE/)
  t.is(h.readPid(s.pidFile), s.supervisor)
  t.deepEqual(started(s.ev), [s.first])
})
