import * as fs from 'node:fs'

import { ListenError } from './errors'
import { inheritedSockets } from './handoff'
import { native } from './native'

/** An inherited listening socket, ready for `server.listen({ fd })`. */
export interface ListenFd {
  /** The descriptor. */
  fd: number
  /** Its name (`LISTEN_FDNAMES`; `'unknown'` when none was given). */
  name: string
}

/** Sockets bound by a launcher, with the unix socket files it created. */
export interface BoundSockets {
  fds: number[]
  names: string[]
  /** Closes the descriptors and removes the socket files made (on failure). */
  discard(): void
  /** Closes our copies of the descriptors (after they were passed on). */
  close(): void
}

/** Binds every address, or throws a `ListenError` naming the first that fails, leaving nothing behind. */
export function bindListeners(
  listen: readonly { address: string; name: string }[],
  access: { user?: string; group?: string; umask?: number } = {},
): BoundSockets {
  const fds: number[] = []
  const files: string[] = []
  const close = (): void => {
    for (const fd of fds.splice(0)) {
      try {
        fs.closeSync(fd)
      } catch {
        // Already closed.
      }
    }
  }
  const discard = (): void => {
    close()
    for (const file of files.splice(0)) {
      try {
        fs.unlinkSync(file)
      } catch {
        // Gone already.
      }
    }
  }
  for (const { address } of listen) {
    try {
      fds.push(native().bindListener(address, access.user, access.group, access.umask))
    } catch (err) {
      discard()
      const e = err as { code?: unknown; message?: unknown }
      throw new ListenError(address, typeof e.code === 'string' ? e.code : 'EUNKNOWN', String(e.message), { cause: err })
    }
    if (address.startsWith('unix:')) files.push(address.slice(5))
  }
  return { fds, names: listen.map((l) => l.name), discard, close }
}

let taken: ListenFd[] | undefined

/**
 * A daemon that runs in place (under systemd, `detach: false`) with `listen` but was given no
 * sockets binds them itself: this makes them what `listenFds()` returns.
 */
export function bindInPlace(listen: readonly { address: string; name: string }[]): void {
  if (listen.length === 0 || listenFds().length > 0) return
  const bound = bindListeners(listen)
  taken = bound.fds.map((fd, i) => ({ fd, name: bound.names[i] }))
}

/**
 * The listening sockets this process inherited, as `[{ fd, name }]`, ready for
 * `server.listen({ fd })`: from a daemonkit launcher (`daemonize({ listen })`, a graceful
 * restart), from daemonkit's supervisor or from systemd (`LISTEN_FDS` with `LISTEN_PID` naming
 * this process). Empty when there are none. `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` are
 * removed from `process.env` and the sockets made close-on-exec, so that children inherit
 * neither. The same list on every call.
 */
export function listenFds(): ListenFd[] {
  if (taken) return taken.map((l) => ({ ...l }))
  const fromLauncher = inheritedSockets()
  const env = process.env
  const count = env.LISTEN_FDS
  const pid = env.LISTEN_PID
  const names = env.LISTEN_FDNAMES
  delete env.LISTEN_FDS
  delete env.LISTEN_PID
  delete env.LISTEN_FDNAMES
  let list: ListenFd[] = []
  if (fromLauncher.length > 0) list = fromLauncher
  else if (count !== undefined && /^[0-9]{1,4}$/.test(count) && pid === String(process.pid)) {
    const nameList = names === undefined ? [] : names.split(':')
    for (let i = 0; i < Number(count); i++) list.push({ fd: 3 + i, name: nameList[i] || 'unknown' })
  }
  for (const { fd } of list) {
    try {
      native().setCloexec(fd, true)
    } catch {
      // Not open: the list says what we were told.
    }
  }
  taken = list
  return list.map((l) => ({ ...l }))
}
