'use strict'
// The binding's typed handles: the pidfile lock (PidfileLock) and the pidfile states.
const test = require('ava')
const fs = require('node:fs')
const path = require('node:path')
const h = require('./helpers')

const n = require('../binding')

test('a PidfileLock writes, removes and releases; release is idempotent and ends the lock', (t) => {
  const dir = h.tempDir(t)
  const file = path.join(dir, 'a.pid')
  const got = n.acquirePidfile(file)
  t.false(got.running)
  t.false(got.foreign)
  const lock = got.lock
  t.true(lock instanceof n.PidfileLock)
  t.is(lock.path, file)
  t.true(Number.isInteger(lock.fd) && lock.fd > 2)
  t.true(h.isLocked(file))

  lock.writePid(4242)
  t.is(fs.readFileSync(file, 'utf8'), '4242\n')
  lock.replacePid(process.pid)
  t.is(fs.readFileSync(file, 'utf8'), `${process.pid}\n`)
  t.like(n.acquirePidfile(file), { running: true, runningPid: process.pid, lock: undefined })

  t.true(lock.remove())
  t.false(fs.existsSync(file))
  t.false(lock.remove(), 'the path no longer names the locked file')

  lock.release()
  lock.release()
  t.throws(() => lock.fd, { code: 'EBADF' })
  t.throws(() => lock.writePid(1), { code: 'EBADF' })
})

test('discard() removes the pidfile and releases the lock, and never throws', (t) => {
  const dir = h.tempDir(t)
  const file = path.join(dir, 'b.pid')
  const lock = n.acquirePidfile(file).lock
  lock.writePid(process.pid)
  lock.discard()
  t.false(fs.existsSync(file))
  t.false(h.isLocked(file))
  t.notThrows(() => lock.discard())

  // A lock whose file was replaced meanwhile leaves the new file alone.
  const again = n.acquirePidfile(file).lock
  fs.renameSync(file, `${file}.old`)
  fs.writeFileSync(file, '1\n')
  again.discard()
  t.is(fs.readFileSync(file, 'utf8'), '1\n')
})

test('probePidfile() states are the PidfileState values', (t) => {
  const dir = h.tempDir(t)
  const file = path.join(dir, 'c.pid')
  t.deepEqual(Object.values(n.PidfileState).sort(), ['foreign', 'running', 'starting', 'stopped', 'unsafe'])
  t.like(n.probePidfile(file), { state: n.PidfileState.Stopped, exists: false })
  const lock = n.acquirePidfile(file).lock
  t.is(n.probePidfile(file).state, n.PidfileState.Starting)
  lock.writePid(process.pid)
  t.like(n.probePidfile(file), { state: n.PidfileState.Running, pid: process.pid })
  lock.release()
  t.like(n.probePidfile(file), { state: n.PidfileState.Stopped, stalePid: process.pid })
  fs.symlinkSync(file, path.join(dir, 'link.pid'))
  t.is(n.probePidfile(path.join(dir, 'link.pid')).state, n.PidfileState.Unsafe)
})
