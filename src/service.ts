import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

/** What `daemonkit service install` puts in a boot unit. */
export interface ServiceSpec {
  name: string
  /** `daemonkit run` options (already in CLI words), without `--name`. */
  runArgs: string[]
  program: string
  args: string[]
  cwd: string
  env: Record<string, string>
  restart: 'never' | 'on-failure' | 'always'
  /** Restart delay in ms. */
  restartDelay: number
  /** `--stop-timeout` in ms: the unit's stop timeout leaves room for it. */
  stopTimeout?: number
}

/** The absolute path of this daemonkit's CLI script, resolved through symlinks (never `npx`). */
export function cliPath(): string {
  return fs.realpathSync(path.join(__dirname, 'cli.js'))
}

/** systemd quoting for one ExecStart word: double quotes, with `\`, `"`, `$`, `%` escaped. */
function systemdWord(word: string): string {
  if (/^[A-Za-z0-9_@+=:,./-]+$/.test(word)) return word
  return `"${word.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$').replace(/%/g, '%%').replace(/\n/g, '\\n')}"`
}

/** A quoted `Environment=` assignment: no `$` expansion there, only specifiers and escapes. */
function systemdAssignment(word: string): string {
  return `"${word.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\n/g, '\\n')}"`
}

/** The unit's file name: `daemonkit-NAME.service`. */
export function unitName(name: string): string {
  return `daemonkit-${name}.service`
}

/**
 * A systemd unit running the command under `daemonkit run` (`Type=notify`: the supervisor says
 * READY=1 once the command runs; with `--wait-ready` once the command says so).
 */
export function systemdUnit(spec: ServiceSpec, system = process.getuid?.() === 0): string {
  const exec = [process.execPath, cliPath(), 'run', '--name', spec.name, ...spec.runArgs, '--', spec.program, ...spec.args].map(systemdWord).join(' ')
  const lines = [
    '# Written by daemonkit service install; remove with: daemonkit service uninstall ' + spec.name,
    '[Unit]',
    `Description=${spec.name} (daemonkit)`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=notify',
    'NotifyAccess=main',
    `ExecStart=${exec}`,
    'ExecReload=/bin/kill -HUP $MAINPID',
    // SIGTERM to the supervisor only (it passes it on and ends what is left); SIGKILL to all after TimeoutStopSec.
    'KillMode=mixed',
    `TimeoutStopSec=${Math.max(15, Math.ceil((spec.stopTimeout ?? 10_000) / 1000) + 5)}`,
    `WorkingDirectory=${spec.cwd}`,
    ...Object.entries(spec.env).map(([k, v]) => `Environment=${systemdAssignment(`${k}=${v}`)}`),
    // No User=: with -u the supervisor starts as root and drops privileges for the command
    // itself, so it keeps the pidfile in /run/daemonkit and can end all the command leaves.
    // daemonkit's own restart policy is off in the unit: systemd restarts the whole service.
    `Restart=${spec.restart === 'never' ? 'no' : spec.restart}`,
    `RestartSec=${Math.max(1, Math.round(spec.restartDelay))}ms`,
    '',
    '[Install]',
    `WantedBy=${system ? 'multi-user.target' : 'default.target'}`,
    '',
  ]
  return lines.join('\n')
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** A launchd property list (macOS) for the same service. */
export function launchdPlist(spec: ServiceSpec): string {
  const argv = [process.execPath, cliPath(), 'run', '--name', spec.name, ...spec.runArgs, '--', spec.program, ...spec.args]
  const env = Object.entries(spec.env)
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>daemonkit.${xml(spec.name)}</string>
  <key>ProgramArguments</key>
  <array>
${argv.map((a) => `    <string>${xml(a)}</string>`).join('\n')}
  </array>
  <key>WorkingDirectory</key><string>${xml(spec.cwd)}</string>
${env.length ? `  <key>EnvironmentVariables</key>\n  <dict>\n${env.map(([k, v]) => `    <key>${xml(k)}</key><string>${xml(v)}</string>`).join('\n')}\n  </dict>\n` : ''}  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key>${spec.restart === 'always' ? '<true/>' : spec.restart === 'on-failure' ? '<dict><key>SuccessfulExit</key><false/></dict>' : '<false/>'}
</dict>
</plist>
`
}

/** Where the unit goes: `$DAEMONKIT_UNIT_DIR` if set, else the system's units as root, else the user's. */
export function unitPath(name: string): string {
  if (process.env.DAEMONKIT_UNIT_DIR) {
    return path.join(path.resolve(process.env.DAEMONKIT_UNIT_DIR), process.platform === 'darwin' ? `daemonkit.${name}.plist` : unitName(name))
  }
  if (process.platform === 'darwin') {
    return process.getuid?.() === 0 ? `/Library/LaunchDaemons/daemonkit.${name}.plist` : path.join(os.homedir(), 'Library', 'LaunchAgents', `daemonkit.${name}.plist`)
  }
  if (process.getuid?.() === 0) return path.join('/etc/systemd/system', unitName(name))
  const config = process.env.XDG_CONFIG_HOME ? path.resolve(process.env.XDG_CONFIG_HOME) : path.join(os.homedir(), '.config')
  return path.join(config, 'systemd', 'user', unitName(name))
}

/** How to enable what was written to `file`. */
export function enableHint(name: string, file: string): string {
  if (process.platform === 'darwin') return `launchctl load -w ${file}`
  const user = process.getuid?.() === 0 ? '' : ' --user'
  return `systemctl${user} daemon-reload && systemctl${user} enable --now ${unitName(name)}`
}
