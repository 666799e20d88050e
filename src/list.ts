import * as fs from 'node:fs'

import { status, type DaemonStatus } from './manage'
import { namedPidfile, readState, registeredNames } from './registry'
import { statFields } from './proc'
import { readSideFile } from './sidefile'

/** One daemon of the registry, as `daemonkit list` shows it. */
export interface ListedDaemon {
  name: string
  /** `running`, `stopped`, `failed`, `dead` or `unknown`, as `status()` says. */
  state: DaemonStatus['state']
  /** The supervisor's pid (the pidfile's), when it runs. */
  pid: number | null
  /** The command's pid, when it runs. */
  commandPid: number | null
  /** How long the command has run, in ms. */
  uptime: number | null
  /** Restarts of the command since the daemon started (the supervisor keeps `PIDFILE.restarts`). */
  restarts: number | null
  /** The command's resident memory, in bytes. */
  rss: number | null
  /** The command's CPU use over its life, in percent of one core. */
  cpu: number | null
  /** TCP ports the command (or its children) listens on. */
  ports: number[]
  /** The command line it was started with, when recorded. */
  command: string | null
}

/** The restart count the supervisor `pid` keeps beside the pidfile (0 when there is none). */
function restartsOf(pidFile: string, pid: number): number {
  let owners: number[] = []
  try {
    owners = [fs.statSync(`/proc/${pid}`).uid]
  } catch {
    // gone meanwhile, or no /proc: the file counts if it is ours or root's
  }
  const n = Number(readSideFile(`${pidFile}.restarts`, owners)?.trim() ?? 0)
  return Number.isSafeInteger(n) && n >= 0 ? n : 0
}

/** Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux port that matters here). */
const HZ = 100

function bootTimeMs(): number {
  const m = /^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))
  return m ? Number(m[1]) * 1000 : 0
}

/** Listening TCP sockets: inode -> port. */
function listeningSockets(): Map<string, number> {
  const out = new Map<string, number>()
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = fs.readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f[3] === '0A') out.set(f[9], parseInt(f[1].split(':')[1], 16))
    }
  }
  return out
}

function socketInodes(pid: number): string[] {
  const inodes: string[] = []
  let fds: string[]
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`)
  } catch {
    return inodes
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m) inodes.push(m[1])
    } catch {
      // closed meanwhile
    }
  }
  return inodes
}

function children(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/**
 * Every daemon of the registry, read from the pidfiles' locks and /proc: nothing resident
 * keeps this list.
 */
export async function list(env?: NodeJS.ProcessEnv): Promise<ListedDaemon[]> {
  const names = registeredNames(env)
  if (names.length === 0) return []
  const boot = bootTimeMs()
  const now = Date.now()
  const listening = listeningSockets()
  const out: ListedDaemon[] = []
  for (const name of names) {
    const pidFile = namedPidfile(name, env)
    let s: DaemonStatus
    try {
      s = await status(pidFile)
    } catch (err) {
      s = { state: 'unknown', reason: (err as Error).message }
    }
    const st = readState(pidFile)
    const item: ListedDaemon = {
      name, state: s.state, pid: null, commandPid: null, uptime: null, restarts: s.state === 'failed' ? s.restarts : null,
      rss: null, cpu: null, ports: [], command: st ? [st.command, ...st.args].join(' ') : null,
    }
    if (s.state === 'running') {
      item.pid = s.pid
      item.restarts = restartsOf(pidFile, s.pid)
      const cmd = s.commandPid ?? s.pid
      item.commandPid = s.commandPid ?? null
      const f = statFields(cmd)
      if (f) {
        const started = boot + (Number(f[19]) * 1000) / HZ
        item.uptime = Math.max(0, Math.round(now - started))
        const cpuMs = ((Number(f[11]) + Number(f[12])) * 1000) / HZ
        item.cpu = item.uptime > 0 ? Math.round((cpuMs / item.uptime) * 1000) / 10 : 0
        item.rss = Number(f[21]) * 4096
      }
      if (listening.size > 0) {
        const ports = new Set<number>()
        for (const p of [cmd, ...children(cmd)]) for (const inode of socketInodes(p)) if (listening.has(inode)) ports.add(listening.get(inode) as number)
        item.ports = [...ports].sort((a, b) => a - b)
      }
    }
    out.push(item)
  }
  return out
}

/** Milliseconds as `3s`, `5m`, `2h`, `4d`. */
export function shortDuration(ms: number): string {
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86400)}d`
}

/** `list` as a table. */
export function table(items: ListedDaemon[]): string {
  const rows = [['NAME', 'STATE', 'PID', 'CMD PID', 'UPTIME', 'RESTARTS', 'RSS', 'CPU', 'PORTS']]
  for (const d of items) {
    rows.push([
      d.name, d.state, d.pid?.toString() ?? '-', d.commandPid?.toString() ?? '-', d.uptime === null ? '-' : shortDuration(d.uptime),
      d.restarts?.toString() ?? '-', d.rss === null ? '-' : `${(d.rss / 1048576).toFixed(1)}M`, d.cpu === null ? '-' : `${d.cpu}%`,
      d.ports.join(',') || '-',
    ])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n'
}
