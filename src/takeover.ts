import * as fs from 'node:fs'
import type * as netTypes from 'node:net'

import { ReadinessError } from './errors'
import { inheritedSockets, isReady, launchCwd, releasePidfile } from './handoff'
import type * as LaunchModule from './launch'
import { ControlFailReason, type ControlReply } from '../binding/index'
import type { PidfileLock } from './pidlock'
import { native } from './native'
import { closeFd } from './runtime'
import type { NormalizedOptions } from './options'


/**
 * How long an old copy has to end after SIGTERM once its successor is ready, before SIGKILL:
 * 10 s, or for a `Daemon` a little more than its `shutdownTimeout` (it ends by itself then).
 */
let stopTimeoutMs = 10_000

/** A `Daemon` whose shutdown may take `ms`: it is SIGKILLed only after that (plus a margin). */
export function setGracefulStopTimeout(ms: number): void {
  stopTimeoutMs = Math.min(ms + 2_000, 2 ** 31 - 1)
}

let enabled = false
let upgrading = false
let leaving = false

/** Says `line` on stderr (the daemon's log), as the supervisor does. */
function log(line: string): void {
  try {
    fs.writeSync(2, `daemonkit: ${line}\n`)
  } catch {
    // No stderr to tell.
  }
}

/**
 * Lets this detached daemon hand over to a new copy of itself (`daemonkit restart --graceful`,
 * `gracefulRestart()`, or SIGUSR2): it listens on its control socket (an abstract name on
 * Linux, answered only for its own user and root). The new copy starts from the code on disk
 * with the same arguments, the locked pidfile and the listening sockets; once it is ready it
 * names itself in the pidfile and this copy gets SIGTERM (SIGKILL after 10 s, or a `Daemon`'s
 * `shutdownTimeout` and 2 s). If it fails
 * before, it is killed and this copy serves on.
 */
export function enableGracefulRestart(opts: NormalizedOptions, lock: PidfileLock): void {
  if (enabled || process.platform !== 'linux') return
  enabled = true
  let fd: number
  try {
    fd = native().bindControl()
  } catch (err) {
    log(`graceful restarts are off: ${(err as Error).message}`)
    return
  }
  const onUsr2 = (): void => {
    // An app with a SIGUSR2 handler of its own keeps the signal for itself.
    if (process.listenerCount('SIGUSR2') > 1) return
    void upgrade(opts, lock, () => {})
  }
  process.on('SIGUSR2', onUsr2)
  // The socket is listening already (connections wait in its backlog); node:net, which serves
  // it, loads a turn later, so that it does not delay the daemon's readiness.
  let closed = false
  closeControl = () => {
    if (closed) return
    closed = true
    closeFd(fd)
  }
  setImmediate(() => {
    if (closed) return
    try {
      serveControl(opts, lock, fd)
    } catch (err) {
      // A runtime whose node:net cannot serve a descriptor: the daemon runs on without it.
      closeControl()
      log(`graceful restarts are off: ${(err as Error).message}`)
    }
  })
}

/** Answers the requests on the control socket `fd` (bound and listening). */
function serveControl(opts: NormalizedOptions, lock: PidfileLock, fd: number): void {
  const net = require('node:net') as typeof netTypes
  const server = net.createServer((socket) => {
    const peerFd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd
    let uid: number | undefined
    try {
      uid = peerFd === undefined ? undefined : native().peerUid(peerFd)
    } catch {
      uid = undefined
    }
    if (uid === undefined || (uid !== 0 && uid !== process.geteuid?.())) {
      socket.destroy()
      return
    }
    socket.on('error', () => {})
    let text = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => {
      text += d
      if (!text.includes('\n')) {
        if (text.length > native().controlRequestLimit()) socket.destroy()
        return
      }
      if (!native().isUpgradeRequest(text)) {
        socket.end(native().controlUnknownRequestReply())
        return
      }
      void upgrade(opts, lock, (line) => socket.end(line))
    })
  })
  server.on('error', () => {})
  server.listen({ fd })
  server.unref()
  closeControl = () => server.close()
}

let closeControl: () => void = () => {}

async function upgrade(opts: NormalizedOptions, lock: PidfileLock, answer: (line: string) => void): Promise<void> {
  const reply = (r: ControlReply): void => answer(native().encodeControlReply(r))
  const refuse = upgrading ? ControlFailReason.Busy : leaving ? ControlFailReason.Stopping : !isReady() ? ControlFailReason.Starting : undefined
  if (refuse) {
    const message = native().controlRefusal(refuse) ?? 'the daemon is not ready yet; try again'
    log(`graceful restart refused: ${message}`)
    reply({ kind: 'fail', reason: refuse, message })
    return
  }
  upgrading = true
  const sockets = inheritedSockets()
  log(`graceful restart: starting a new copy; this one (pid ${process.pid}) serves until it is ready`)
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { pid } = await (require('./launch') as typeof LaunchModule).launchSelf(opts, {
      lock,
      sockets: { fds: sockets.map((s) => s.fd), names: sockets.map((s) => s.name) },
      cwd: launchCwd(),
    })
    leaving = true
    releasePidfile()
    closeControl()
    log(`graceful restart: the new copy (pid ${pid}) is ready; this one stops`)
    reply({ kind: 'ok', pid })
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), stopTimeoutMs).unref()
    process.kill(process.pid, 'SIGTERM')
  } catch (err) {
    const reason = err instanceof ReadinessError ? (err.kind === 'timeout' ? ControlFailReason.Timeout : ControlFailReason.Exited) : ControlFailReason.Spawn
    // The new copy's stderr was relayed into this daemon's own stderr target, not to whoever
    // asked: the reply carries it.
    const tail = err instanceof ReadinessError ? err.daemonStderr.trim() : ''
    const base = err instanceof Error ? err.message : String(err)
    const message = tail && !base.includes(tail) ? `${base}:\n${tail}` : base
    log(`graceful restart failed, this copy (pid ${process.pid}) serves on: ${message}`)
    reply({ kind: 'fail', reason, message })
  } finally {
    upgrading = false
  }
}
