import type * as netTypes from 'node:net'

import { ControlFailReason } from '../binding/index'
import { GracefulRestartError } from './errors'
import { status } from './manage'
import { native } from './native'

/** What a graceful restart did. */
export interface GracefulRestartResult {
  /** The pid the pidfile names now: the supervisor's (unchanged), or the new copy of a `daemonize()` app. */
  pid: number
  /** The new process that serves now. */
  newPid: number
}

/** Options of `gracefulRestart()`. */
export interface GracefulRestartOptions {
  /**
   * How long to wait for the daemon's answer, in milliseconds (default 300 000); then it rejects
   * with reason `'timeout'` (the daemon may still finish the restart on its own).
   */
  timeout?: number
}

const DEFAULT_ANSWER_TIMEOUT_MS = 300_000

/**
 * Restarts the daemon of `pidFile` without downtime: a new copy starts beside the running one,
 * with the same listening sockets and the pidfile lock handed over, and the old one stops only
 * once the new one is ready. Resolves when the new one is ready; rejects with a
 * `GracefulRestartError` when it failed (its message included) or was refused, and then the
 * old one keeps serving. The control socket is trusted only when the process listening on it is
 * the one that holds the pidfile's lock (another user could have bound its predictable name).
 */
export async function gracefulRestart(pidFile: string, options: GracefulRestartOptions = {}): Promise<GracefulRestartResult> {
  const timeout = options.timeout === undefined ? DEFAULT_ANSWER_TIMEOUT_MS : options.timeout
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0 || timeout > 2 ** 31 - 1) {
    throw new TypeError('gracefulRestart: timeout must be a positive number of milliseconds')
  }
  if (process.platform !== 'linux') {
    throw new GracefulRestartError('unsupported', undefined, 'graceful restarts need Linux (an abstract control socket); use a plain restart here')
  }
  const s = await status(pidFile)
  if (s.state !== 'running') throw new GracefulRestartError('not-running', undefined, `not running: ${pidFile} is not locked by a running daemon, so there is nothing to restart gracefully`)
  const pid = s.pid
  const line = await new Promise<string>((resolve, reject) => {
    let fd: number
    try {
      // Node 20 cannot connect to an abstract name.
      fd = native().connectControl(pid)
    } catch (err) {
      fail(err as NodeJS.ErrnoException)
      return
    }
    let peer: number | undefined
    try {
      peer = native().peerPid(fd)
    } catch {
      peer = undefined
    }
    if (peer !== pid) {
      native().closeFd(fd)
      reject(
        new GracefulRestartError(
          'failed',
          pid,
          `refusing the graceful restart of pid ${pid}: its control socket is held by ${peer === undefined ? 'an unknown process' : `pid ${peer}`}, ` +
            `not by the daemon (another process bound its name first; graceful restarts of this daemon are off until it restarts)`,
        ),
      )
      return
    }
    const net = require('node:net') as typeof netTypes
    const socket = new net.Socket({ fd, readable: true, writable: true })
    let text = ''
    socket.setEncoding('utf8')
    socket.write(native().controlUpgradeRequest())
    socket.on('data', (d: string) => {
      text += d
      const nl = text.indexOf('\n')
      if (nl >= 0) {
        socket.destroy()
        resolve(text.slice(0, nl))
      }
    })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new GracefulRestartError('timeout', pid, `pid ${pid} gave no answer to the graceful restart within ${timeout} ms; it may still finish it`))
    }, timeout)
    socket.on('close', () => clearTimeout(timer))
    socket.on('end', () => resolve(text))
    socket.on('error', (err: NodeJS.ErrnoException) => fail(err))
    function fail(err: NodeJS.ErrnoException): void {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') {
        reject(
          new GracefulRestartError(
            'unsupported',
            pid,
            `pid ${pid} takes no graceful restarts: a supervised command needs --wait-ready (waitReady: true), ` +
              'and an app must run under daemonize() of a daemonkit version that has them',
            { cause: err },
          ),
        )
      } else if (err.code === 'EPIPE' || err.code === 'ECONNRESET') {
        // The daemon hangs up on whoever is neither its own user nor root.
        reject(new GracefulRestartError('failed', pid, `cannot ask pid ${pid} for a graceful restart: permission denied (only its own user and root may)`, { cause: err }))
      } else reject(new GracefulRestartError('failed', pid, `cannot ask pid ${pid} for a graceful restart: ${err.message}`, { cause: err }))
    }
  })
  const reply = native().decodeControlReply(line)
  if (reply?.kind === 'ok') {
    const after = await status(pidFile)
    return { pid: after.state === 'running' ? after.pid : pid, newPid: reply.pid }
  }
  if (reply?.kind === 'fail') {
    // A request the daemon did not understand is this version's fault, not a kind of its own.
    const kind = reply.reason === ControlFailReason.Usage ? 'failed' : reply.reason
    throw new GracefulRestartError(kind, pid, `graceful restart failed, pid ${pid} keeps serving: ${reply.message}`)
  }
  throw new GracefulRestartError('failed', pid, `pid ${pid} ended the graceful restart without an answer${line ? `: ${line}` : ''}`)
}
