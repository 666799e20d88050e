import * as os from 'node:os'

import { UsageError } from './errors'
import type { SignalName } from './manage'
import type { SpawnDaemonOptions } from './spawn'
import { COMMANDS } from './cli-help'

/** A command line of the `daemonkit` command, parsed. */
export interface Parsed {
  command: string
  signalName?: string
  program?: string
  args: string[]
  opts: SpawnDaemonOptions
  json: boolean
  quiet: boolean
  /** `completion SHELL`: the shell. */
  shell?: string
  /** `help CMD` / `CMD --help`: the command whose help to show. */
  helpFor?: string
  detach: 'auto' | boolean
  timeout?: number
  lines?: number
  follow?: boolean
  /** `service install|uninstall`. */
  serviceAction?: string
  printOnly?: boolean
  launchd?: boolean
  stopSignal?: SignalName
  killSignal?: SignalName
  killTimeout?: number
  graceful?: boolean
}

/** Flags that take a value -> what they set. */
export const VALUE_FLAGS: Record<string, string> = {
  '-p': 'pidfile', '--pidfile': 'pidfile', '-C': 'cwd', '--cwd': 'cwd', '--umask': 'umask',
  '-o': 'stdout', '--stdout': 'stdout', '-e': 'stderr', '--stderr': 'stderr', '-l': 'log', '--log': 'log',
  '-E': 'env', '--env': 'env', '-u': 'user', '--user': 'user', '-g': 'group', '--group': 'group',
  '--chroot': 'chroot', '-r': 'restart', '--restart': 'restart', '--restart-delay': 'restartDelay',
  '--restart-delay-max': 'restartDelayMax', '--restart-burst': 'restartBurst', '--restart-window': 'restartWindow',
  '--detach': 'detach', '--ready-timeout': 'readyTimeout', '--stop-timeout': 'stopTimeout', '-t': 'timeout', '--timeout': 'timeout',
  '-s': 'signal', '--signal': 'signal', '--kill-signal': 'killSignal', '--kill-timeout': 'killTimeout',
  '--notify': 'notify', '--listen': 'listen', '--settle': 'settle', '--name': 'name', '-n': 'lines', '--lines': 'lines',
}

/** Commands that take the daemon's NAME as an operand. */
export const NAMED = ['status', 'stop', 'restart', 'reload', 'signal', 'reset', 'logs']

/** Option name of the API -> the CLI flag, for errors in CLI words. */
export const FLAG_OF: Record<string, string> = {
  pidFile: '--pidfile', cwd: '--cwd', umask: '--umask', stdout: '--stdout', stderr: '--stderr', env: '--env', user: '--user',
  group: '--group', chroot: '--chroot', supervise: '--no-supervise', restart: '--restart', restartDelay: '--restart-delay',
  restartDelayMax: '--restart-delay-max', restartBurst: '--restart-burst', restartWindow: '--restart-window', notify: '--notify',
  forwardHup: '--forward-hup', waitReady: '--wait-ready', readyTimeout: '--ready-timeout', stopTimeout: '--stop-timeout', settle: '--settle', name: '--name', listen: '--listen',
  timeout: '--timeout', signal: '--signal', killSignal: '--kill-signal', killTimeout: '--kill-timeout',
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds (as start-stop-daemon and systemd), in ms. */
export function duration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim())
  const ms = m ? Math.round(Number(m[1]) * UNITS[m[2] ?? 's']) : NaN
  if (!Number.isSafeInteger(ms) || ms > 2 ** 31 - 1) throw new UsageError(`${flag} needs a time such as 500ms, 5s or 2m (a bare number means seconds), got ${JSON.stringify(value)}`)
  return ms
}

function integer(flag: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} needs a non-negative integer, got ${JSON.stringify(value)}`)
  return Number(value)
}

/** A signal in any case, with or without `SIG`, or its number: `hup`, `SIGUSR1`, `10`. */
export function signalName(flag: string, value: string): SignalName {
  const known = os.constants.signals as Record<string, number>
  if (/^\d+$/.test(value)) {
    const name = Object.keys(known).find((k) => known[k] === Number(value) && k !== 'SIGIOT' && k !== 'SIGPOLL')
    if (name === undefined) throw new UsageError(`${flag}: no signal has the number ${value}`)
    return name as SignalName
  }
  const upper = value.toUpperCase()
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`
  if (!(name in known)) throw new UsageError(`${flag}: unknown signal ${JSON.stringify(value)} (try TERM, HUP, USR1 or a number)`)
  return name as SignalName
}

export function parse(argv: string[]): Parsed {
  const out: Parsed = { command: '', args: [], opts: {}, json: false, quiet: false, detach: 'auto' }
  let help = false
  const env: Record<string, string> = {}
  let i = 0
  const positional: string[] = []
  while (i < argv.length) {
    const arg = argv[i++]
    if (arg === '--') {
      out.program = argv[i++]
      out.args = argv.slice(i)
      break
    }
    if (arg === '-h' || arg === '--help') {
      help = true
      continue
    }
    if (arg === '--print' || arg === '--launchd') {
      if (arg === '--print') out.printOnly = true
      else out.launchd = true
      continue
    }
    if (arg === '-f' || arg === '--follow') {
      out.follow = true
      continue
    }
    if (arg === '-q' || arg === '--quiet') {
      out.quiet = true
      continue
    }
    if (arg === '-V' || arg === '--version') return { ...out, command: 'version' }
    if (arg === '--json') {
      out.json = true
      continue
    }
    if (arg === '--no-supervise') {
      out.opts.supervise = false
      continue
    }
    if (arg === '--forward-hup') {
      out.opts.forwardHup = true
      continue
    }
    if (arg === '--graceful') {
      out.graceful = true
      continue
    }
    if (arg === '--wait-ready') {
      out.opts.waitReady = true
      continue
    }
    let flag = arg
    let inline: string | undefined
    const eq = arg.indexOf('=')
    if (arg.startsWith('--') && eq > 0) {
      flag = arg.slice(0, eq)
      inline = arg.slice(eq + 1)
    }
    const key = VALUE_FLAGS[flag]
    if (!key) {
      if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option ${arg}`)
      positional.push(arg)
      continue
    }
    // Errors name the long flag: `-t` is `--timeout`.
    if (!flag.startsWith('--')) flag = Object.keys(VALUE_FLAGS).find((f) => f.startsWith('--') && VALUE_FLAGS[f] === key) ?? flag
    const value = inline ?? argv[i++]
    if (value === undefined) throw new UsageError(`${flag} needs a value`)
    switch (key) {
      case 'pidfile': out.opts.pidFile = value; break
      case 'listen': {
        const named = /^([A-Za-z0-9_.-]{1,255})=(.+)$/.exec(value)
        const list = [...(out.opts.listen ?? [])]
        list.push(named ? { address: named[2], name: named[1] } : value)
        out.opts.listen = list
        break
      }
      case 'cwd': out.opts.cwd = value; break
      case 'umask':
        if (!/^[0-7]{1,4}$/.test(value)) throw new UsageError(`--umask needs an octal number, got ${value}`)
        out.opts.umask = parseInt(value, 8)
        break
      case 'stdout': out.opts.stdout = value; break
      case 'stderr': out.opts.stderr = value; break
      case 'log': out.opts.stdout = value; out.opts.stderr = value; break
      case 'env': {
        const at = value.indexOf('=')
        if (at <= 0) throw new UsageError(`--env needs NAME=VALUE, got ${value}`)
        env[value.slice(0, at)] = value.slice(at + 1)
        break
      }
      case 'user': out.opts.user = value; break
      case 'group': out.opts.group = value; break
      case 'chroot': out.opts.chroot = value; break
      case 'restart': out.opts.restart = value as SpawnDaemonOptions['restart']; break
      case 'restartDelay': out.opts.restartDelay = duration(flag, value); break
      case 'restartDelayMax': out.opts.restartDelayMax = duration(flag, value); break
      case 'restartBurst': out.opts.restartBurst = integer(flag, value); break
      case 'restartWindow': out.opts.restartWindow = duration(flag, value); break
      case 'readyTimeout':
        out.opts.readyTimeout = duration(flag, value)
        if (out.opts.readyTimeout === 0) throw new UsageError(`${flag} needs a time above 0`)
        break
      case 'settle': out.opts.settle = duration(flag, value); break
      case 'stopTimeout': out.opts.stopTimeout = duration(flag, value); break
      case 'name': out.opts.name = value; break
      case 'lines': out.lines = integer(flag, value); break
      case 'detach':
        if (!['auto', 'yes', 'no'].includes(value)) throw new UsageError('--detach needs auto, yes or no')
        out.detach = value === 'auto' ? 'auto' : value === 'yes'
        break
      case 'timeout': out.timeout = duration(flag, value); break
      case 'signal': out.stopSignal = signalName(flag, value); break
      case 'killSignal': out.killSignal = signalName(flag, value); break
      case 'killTimeout': out.killTimeout = duration(flag, value); break
      case 'notify':
        if (!['auto', 'yes', 'no'].includes(value)) throw new UsageError('--notify needs auto, yes or no')
        if (value !== 'auto') out.opts.notify = value === 'yes'
        break
    }
  }
  if (Object.keys(env).length > 0) out.opts.env = env
  out.command = positional[0] ?? ''
  if (out.command === 'help' || help) {
    const topic = out.command === 'help' ? positional[1] : out.command
    if (topic !== undefined && topic !== '' && !(topic in COMMANDS)) throw new UsageError(`no such command ${topic} (commands: ${Object.keys(COMMANDS).join(', ')})`)
    return { ...out, command: 'help', helpFor: topic || undefined }
  }
  if (out.command === 'service') {
    out.serviceAction = positional[1]
    if (out.serviceAction !== 'install' && out.serviceAction !== 'uninstall') throw new UsageError('service needs install or uninstall: daemonkit service install NAME -- PROGRAM')
    if (positional[2] === undefined) throw new UsageError(`service ${out.serviceAction} needs a NAME`)
    out.opts.name = positional[2]
    if (positional.length > 3) throw new UsageError(`unexpected argument ${positional[3]} (put the program after --)`)
    return out
  }
  if (out.command === 'completion') {
    out.shell = positional[1] ?? ''
    return out
  }
  if (out.command === 'signal') {
    if (positional[1] === undefined) throw new UsageError('signal needs a signal name, e.g. daemonkit signal HUP -p FILE')
    out.signalName = signalName('signal', positional[1])
    positional.splice(1, 1)
  }
  if (NAMED.includes(out.command) && positional[1] !== undefined) {
    if (out.opts.name !== undefined && out.opts.name !== positional[1]) throw new UsageError(`two names: ${positional[1]} and --name ${out.opts.name}`)
    out.opts.name = positional[1]
    positional.splice(1, 1)
  }
  if (positional.length > 1) throw new UsageError(`unexpected argument ${positional[1]} (put the program after --)`)
  return out
}

/** The completion script for `shell` (bash or zsh). */
export function completion(shell: string): string {
  const commands = Object.keys(COMMANDS).join(' ')
  const flags = [...new Set([...Object.keys(VALUE_FLAGS), '--json', '--quiet', '--no-supervise', '--forward-hup', '--wait-ready', '--help', '--version'])].filter((f) => f.startsWith('--')).join(' ')
  if (shell === 'bash') {
    return `# daemonkit completion for bash: eval "$(daemonkit completion bash)"
_daemonkit() {
  local cur=\${COMP_WORDS[COMP_CWORD]}
  if [ "$COMP_CWORD" -eq 1 ]; then COMPREPLY=($(compgen -W "${commands}" -- "$cur")); return; fi
  case "$cur" in
    -*) COMPREPLY=($(compgen -W "${flags}" -- "$cur")) ;;
    *) COMPREPLY=($(compgen -f -- "$cur")) ;;
  esac
}
complete -F _daemonkit daemonkit
`
  }
  if (shell === 'zsh') {
    return `#compdef daemonkit
# daemonkit completion for zsh: eval "$(daemonkit completion zsh)"
_daemonkit() {
  if (( CURRENT == 2 )); then compadd ${commands}; return; fi
  if [[ $PREFIX == -* ]]; then compadd -- ${flags}; else _files; fi
}
compdef _daemonkit daemonkit
`
  }
  throw new UsageError(`completion needs bash or zsh, got ${JSON.stringify(shell)}`)
}

