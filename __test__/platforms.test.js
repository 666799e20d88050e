'use strict'
// The cases that matter (daemonize + readiness + status + stop, the Daemon class, spawnDaemon
// under the supervisor) under every Node.js build CI installs besides the one running ava:
// Node 18, 22 and 24 (x64), and the arm64 Node 22 run by qemu-user through binfmt_misc with the
// arm64 builds of the addon and the supervisor. The runtimes come from scripts/runtimes
// (`npm ci --force --prefix scripts/runtimes`), the arm64 builds from scripts/cross.sh; each
// runtime whose parts are missing is skipped with a message that names them.
//
// Each runtime gets a copy of the package (package.json, dist/, the loader, the addon and the
// supervisor for its platform) with the fixtures inside, so the arm64 run loads the arm64
// addon and starts the arm64 supervisor, not the x64 ones of binding/.
const test = require('ava')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const h = require('./helpers')

const ROOT = path.join(__dirname, '..')
const RUNTIMES = path.join(ROOT, 'scripts', 'runtimes', 'node_modules')
const TARGET = path.join(ROOT, 'target')
const EM_X86_64 = 0x3e
const EM_AARCH64 = 0xb7
/** The arm64 C library (libc6-arm64-cross); its loader is linked to /lib by scripts/cross.sh. */
const ARM64_SYSROOT = '/usr/aarch64-linux-gnu'
const ARM64_ENV = { LD_LIBRARY_PATH: `${ARM64_SYSROOT}/lib` }

const x64 = (major) => ({
  name: `Node ${major} x64`,
  node: path.join(RUNTIMES, `node${major}`, 'bin', 'node'),
  major,
  arch: 'x64',
  machine: EM_X86_64,
  platform: 'linux-x64-gnu',
  addon: path.join(ROOT, 'binding', 'daemonkit.linux-x64-gnu.node'),
  supervisor: path.join(ROOT, 'binding', 'daemonkit-supervise'),
  env: {},
})

/** Node 22 arm64 under qemu-user, with the cross-built addon and the supervisor built for `target`. */
const arm64 = (name, target) => ({
  name,
  node: path.join(RUNTIMES, 'node22-arm64', 'bin', 'node'),
  major: 22,
  arch: 'arm64',
  machine: EM_AARCH64,
  platform: 'linux-arm64-gnu',
  addon: path.join(TARGET, 'cross', 'daemonkit.linux-arm64-gnu.node'),
  supervisor: path.join(TARGET, target, 'release', 'daemonkit-supervise'),
  env: ARM64_ENV,
})

const RUNTIME_LIST = [
  x64(18),
  x64(22),
  x64(24),
  arm64('Node 22 arm64 (qemu-user)', 'aarch64-unknown-linux-gnu'),
  // The musl supervisors are static executables: they run on this glibc machine as they are,
  // under the Node that runs ava and under the arm64 Node. (The musl addons need a musl Node.)
  {
    name: `linux-x64-musl supervisor with Node ${process.versions.node.split('.')[0]} x64`,
    node: process.execPath,
    major: Number(process.versions.node.split('.')[0]),
    arch: 'x64',
    machine: EM_X86_64,
    platform: 'linux-x64-gnu',
    addon: path.join(ROOT, 'binding', 'daemonkit.linux-x64-gnu.node'),
    supervisor: path.join(TARGET, 'x86_64-unknown-linux-musl', 'release', 'daemonkit-supervise'),
    staticSupervisor: true,
    env: {},
    only: 'spawn',
  },
  {
    ...arm64('linux-arm64-musl supervisor with Node 22 arm64 (qemu-user)', 'aarch64-unknown-linux-musl'),
    staticSupervisor: true,
    only: 'spawn',
  },
]

/** Whether the ELF executable `file` asks for a program interpreter (is dynamically linked). */
function hasInterpreter(file) {
  const elf = fs.readFileSync(file)
  const phoff = Number(elf.readBigUInt64LE(0x20))
  const phentsize = elf.readUInt16LE(0x36)
  const phnum = elf.readUInt16LE(0x38)
  for (let i = 0; i < phnum; i++) if (elf.readUInt32LE(phoff + i * phentsize) === 3 /* PT_INTERP */) return true
  return false
}

/** The ELF machine of `file` (EM_X86_64, EM_AARCH64, …), or undefined if it is not an ELF file. */
function elfMachine(file) {
  const fd = fs.openSync(file, 'r')
  try {
    const header = Buffer.alloc(20)
    fs.readSync(fd, header, 0, 20, 0)
    if (header.readUInt32BE(0) !== 0x7f454c46) return undefined
    return header.readUInt16LE(18)
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The program that process `pid` runs. Under qemu-user (binfmt_misc with the P flag)
 * /proc/PID/exe is the emulator and the emulated program is the second word of the command line.
 */
function programOf(pid) {
  const exe = fs.readlinkSync(`/proc/${pid}/exe`)
  if (path.basename(exe).startsWith('qemu-aarch64')) {
    return { file: fs.realpathSync(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1]), emulated: true }
  }
  return { file: fs.realpathSync(exe), emulated: false }
}

/** What this runtime lacks on this machine; empty when it can run. */
function missingParts(rt) {
  const missing = []
  if (process.platform !== 'linux') return ['Linux (/proc)']
  if (!fs.existsSync(rt.node)) missing.push(`${path.relative(ROOT, rt.node)} (npm ci --force --prefix scripts/runtimes)`)
  if (rt.arch === 'arm64' && process.arch !== 'arm64') {
    let binfmt = ''
    try {
      binfmt = fs.readFileSync('/proc/sys/fs/binfmt_misc/qemu-aarch64', 'utf8')
    } catch {
      // not registered, or binfmt_misc not mounted
    }
    if (!binfmt.startsWith('enabled')) missing.push('qemu-user with binfmt_misc registered for aarch64 (scripts/cross.sh)')
    if (!fs.existsSync(path.join(ARM64_SYSROOT, 'lib', 'ld-linux-aarch64.so.1'))) missing.push(`the arm64 C library under ${ARM64_SYSROOT} (libc6-arm64-cross)`)
    if (!fs.existsSync('/lib/ld-linux-aarch64.so.1')) missing.push('/lib/ld-linux-aarch64.so.1 (scripts/cross.sh links it)')
  } else if (rt.arch !== process.arch) {
    missing.push(`an ${rt.arch} machine`)
  }
  if (!fs.existsSync(rt.addon)) missing.push(`${path.relative(ROOT, rt.addon)} (${rt.arch === 'arm64' ? 'scripts/cross.sh' : 'npm run build'})`)
  if (!fs.existsSync(rt.supervisor)) missing.push(`${path.relative(ROOT, rt.supervisor)} (${rt.arch === 'arm64' || rt.supervisor.includes('musl') ? 'scripts/cross.sh' : 'npm run build'})`)
  if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) missing.push('dist/ (npm run build)')
  return missing
}

/** A copy of the package for `rt` in `dir`, with the fixtures; returns the copied fixtures directory. */
function stagePackage(rt, dir) {
  const pkg = path.join(dir, 'pkg')
  fs.mkdirSync(path.join(pkg, 'binding'), { recursive: true })
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'))
  fs.cpSync(path.join(ROOT, 'dist'), path.join(pkg, 'dist'), { recursive: true })
  fs.copyFileSync(path.join(ROOT, 'binding', 'index.js'), path.join(pkg, 'binding', 'index.js'))
  fs.copyFileSync(rt.addon, path.join(pkg, 'binding', `daemonkit.${rt.platform}.node`))
  fs.copyFileSync(rt.supervisor, path.join(pkg, 'binding', 'daemonkit-supervise'))
  fs.chmodSync(path.join(pkg, 'binding', 'daemonkit-supervise'), 0o755)
  const fixtures = path.join(pkg, '__test__', 'fixtures')
  fs.mkdirSync(fixtures, { recursive: true })
  for (const name of ['daemon.js', 'service.js', 'platform-driver.js']) fs.copyFileSync(path.join(h.FIXTURES, name), path.join(fixtures, name))
  return fixtures
}

/** A test directory with the staged package, and `node(args)` that runs this runtime there. */
function setup(t, rt) {
  const dir = h.tempDir(t)
  const fixtures = stagePackage(rt, dir)
  const env = { ...process.env, ...rt.env }
  const node = (args, options = {}) => h.run(rt.node, args, { cwd: dir, env, timeout: 120_000, ...options })
  const driver = async (action, spec) => {
    const r = await node([path.join(fixtures, 'platform-driver.js'), action, JSON.stringify(spec)])
    if (r.code !== 0) throw new Error(`driver ${action} exited ${r.code ?? r.signal}: ${r.stderr}`)
    const out = JSON.parse(r.stdout.trim().split('\n').pop())
    t.is(out.arch, rt.arch, 'the driver ran on another architecture')
    t.true(out.version.startsWith(`v${rt.major}.`), `the driver ran on Node ${out.version}`)
    return out.result
  }
  return { dir, fixtures, node, driver, pidFile: path.join(dir, 'app.pid'), log: path.join(dir, 'app.log') }
}

/** The process runs this runtime's node (or its supervisor), built for its architecture. */
function assertRuns(t, pid, file, rt) {
  const program = programOf(pid)
  t.is(program.file, fs.realpathSync(file), `pid ${pid} runs ${program.file}`)
  t.is(elfMachine(program.file), rt.machine, `${program.file} is not built for ${rt.arch}`)
  t.is(program.emulated, rt.arch !== process.arch)
}

function tcpHello(port) {
  return new Promise((resolve, reject) => {
    let data = ''
    const c = net.connect(port, '127.0.0.1')
    c.setEncoding('utf8')
    c.on('data', (d) => (data += d))
    c.on('end', () => resolve(data))
    c.on('error', reject)
  })
}

async function assertGone(t, pids, pidFile) {
  for (const pid of pids) await h.waitFor(() => !h.isRunning(pid), { timeout: 60_000, what: `pid ${pid} to exit` })
  t.false(fs.existsSync(pidFile), 'the pidfile is left behind')
}

for (const rt of RUNTIME_LIST) {
  const missing = missingParts(rt)
  if (missing.length > 0) {
    const reason = `skipped, missing: ${missing.join('; ')}`
    console.log(`platforms.test.js: ${rt.name}: ${reason}`)
    test.skip(`${rt.name}: ${reason}`, () => {})
    continue
  }

  if (!rt.only) test.serial(`${rt.name}: daemonize() with manual readiness, status() and stop()`, async (t) => {
    const s = setup(t, rt)
    const report = path.join(s.dir, 'report.json')
    const spec = { options: { pidFile: s.pidFile, ready: 'manual', stdout: s.log, stderr: s.log }, listen: true, report }
    const r = await s.node([path.join(s.fixtures, 'daemon.js'), JSON.stringify(spec)])
    t.is(r.code, 0, `launch failed: ${r.stderr}`)
    const pid = h.readPid(s.pidFile)
    h.cleanupPid(t, pid, s.dir)
    assertRuns(t, pid, rt.node, rt)
    const st = h.procStat(pid)
    t.not(st.session, pid, 'the daemon is a session leader')
    t.is(st.ttyNr, 0, 'the daemon has a controlling terminal')
    t.true(h.isLocked(s.pidFile), 'nobody holds the pidfile lock')
    const seen = JSON.parse(fs.readFileSync(report, 'utf8'))
    t.is(seen.pid, pid)
    t.false(seen.markerInEnv)
    t.is(await tcpHello(seen.port), 'hello\n', 'ready was said before the daemon listened')

    t.deepEqual(await s.driver('status', { pidFile: s.pidFile }), { state: 'running', pid })
    const stopped = await s.driver('stop', { pidFile: s.pidFile })
    t.like(stopped, { stopped: true, pid })
    await assertGone(t, [pid], s.pidFile)
    t.deepEqual(await s.driver('status', { pidFile: s.pidFile }), { state: 'stopped' })
  })

  if (!rt.only) test.serial(`${rt.name}: a daemon that throws before ready fails the launch with its message`, async (t) => {
    const s = setup(t, rt)
    const spec = { options: { pidFile: s.pidFile }, fail: 'throw', message: 'no config here (xyzzy)' }
    const r = await s.node([path.join(s.fixtures, 'daemon.js'), JSON.stringify(spec)])
    t.not(r.code, 0)
    t.regex(r.stderr, /no config here \(xyzzy\)/)
    t.false(fs.existsSync(s.pidFile), 'the pidfile is left behind')
  })

  if (!rt.only) test.serial(`${rt.name}: the Daemon class starts, reports and stops`, async (t) => {
    const s = setup(t, rt)
    const service = path.join(s.fixtures, 'service.js')
    const spec = JSON.stringify({ pidFile: s.pidFile, log: s.log, events: path.join(s.dir, 'events') })
    const started = await s.node([service, 'start', spec])
    t.is(started.code, 0, `start failed: ${started.stdout}${started.stderr}`)
    const pid = Number(/started \(pid (\d+)\)/.exec(started.stdout)?.[1])
    t.true(pid > 1, started.stdout)
    h.cleanupPid(t, pid, s.dir)
    t.is(h.readPid(s.pidFile), pid)
    assertRuns(t, pid, rt.node, rt)
    const status = await s.node([service, 'status', spec])
    t.is(status.code, 0)
    t.is(status.stdout.trim(), `running (pid ${pid})`)
    const stop = await s.node([service, 'stop', spec])
    t.is(stop.code, 0, stop.stderr)
    t.regex(stop.stdout, new RegExp(`^stopped \\(pid ${pid}\\)`))
    await assertGone(t, [pid], s.pidFile)
    t.regex(fs.readFileSync(path.join(s.dir, 'events'), 'utf8'), /shutdown-registered-second/)
    t.is((await s.node([service, 'status', spec])).code, 3, 'status of a stopped service is not LSB 3')
  })

  test.serial(`${rt.name}: spawnDaemon() runs a command under the supervisor built for ${rt.arch}`, async (t) => {
    const s = setup(t, rt)
    // A command whose command line names the test directory, so that cleanup can find it.
    const command = path.join(s.dir, 'sleep-command')
    fs.copyFileSync('/bin/sleep', command)
    fs.chmodSync(command, 0o755)
    const spawned = await s.driver('spawn', { command, args: ['300'], options: { pidFile: s.pidFile, stdout: s.log, stderr: s.log } })
    const { pid, commandPid } = spawned
    h.cleanupPid(t, commandPid, s.dir)
    h.cleanupPid(t, pid, s.dir)
    t.not(pid, commandPid)
    t.is(h.readPid(s.pidFile), pid, 'the pidfile does not name the supervisor')
    assertRuns(t, pid, path.join(s.dir, 'pkg', 'binding', 'daemonkit-supervise'), rt)
    if (rt.staticSupervisor) t.false(hasInterpreter(rt.supervisor), `${rt.supervisor} is not statically linked`)
    await h.waitFor(() => h.procStat(commandPid)?.ppid === pid, { timeout: 30_000, what: 'the command to run under the supervisor' })
    t.is(programOf(commandPid).file, fs.realpathSync(command))
    t.true(h.isLocked(s.pidFile), 'nobody holds the pidfile lock')
    // status() recognises the supervisor by /proc/PID/exe, which under qemu-user names the
    // emulator: there (only) it cannot name the command's pid.
    const emulated = rt.arch !== process.arch
    t.deepEqual(await s.driver('status', { pidFile: s.pidFile }), emulated ? { state: 'running', pid } : { state: 'running', pid, commandPid })
    t.like(await s.driver('stop', { pidFile: s.pidFile }), { stopped: true, pid })
    await assertGone(t, [pid, commandPid], s.pidFile)
  })
}

// scripts/install-check.js is what CI runs on every target: it must refuse a platform package
// without the supervisor, and it must run a command under the packaged supervisor.
const onLinux = process.platform === 'linux' && fs.existsSync(path.join(ROOT, 'dist', 'index.js')) ? test : test.skip

onLinux('install check: a platform package without the supervisor fails it', async (t) => {
  const dir = h.tempDir(t)
  // A checkout whose build has the addon but no supervisor (none in binding/ nor in target/).
  const repo = path.join(dir, 'repo')
  for (const entry of ['package.json', 'dist', 'esm', 'npm', path.join('scripts', 'install-check.js')]) {
    fs.cpSync(path.join(ROOT, entry), path.join(repo, entry), { recursive: true })
  }
  fs.mkdirSync(path.join(repo, 'binding'))
  for (const file of fs.readdirSync(path.join(ROOT, 'binding'))) {
    if (file !== 'daemonkit-supervise') fs.copyFileSync(path.join(ROOT, 'binding', file), path.join(repo, 'binding', file))
  }
  const r = await h.run(process.execPath, [path.join(repo, 'scripts', 'install-check.js')], { cwd: dir, timeout: 120_000 })
  t.not(r.code, 0, `the check passed without a supervisor:\n${r.stdout}`)
  t.regex(r.stderr, /no daemonkit-supervise executable .*would ship without its supervisor/)
})

onLinux('install check: starts and stops a command under the supervisor of the installed platform package', async (t) => {
  const r = await h.run(process.execPath, [path.join(ROOT, 'scripts', 'install-check.js')], { cwd: ROOT, timeout: 120_000 })
  t.is(r.code, 0, `${r.stdout}\n${r.stderr}`)
  t.regex(r.stdout, /^supervised command: \d+ under node_modules\/daemonkit-linux-\w+-\w+\/daemonkit-supervise \d+ \(checked\), reported running, stopped$/m)
  t.regex(r.stdout, /^install check passed$/m)
})

test('npm version: the loader and the platform packages follow, in the version commit', async (t) => {
  const dir = h.tempDir(t)
  const repo = path.join(dir, 'repo')
  for (const entry of ['package.json', path.join('binding', 'index.js'), 'npm', path.join('scripts', 'sync-loader-version.js')]) {
    fs.cpSync(path.join(ROOT, entry), path.join(repo, entry), { recursive: true })
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(repo, 'node_modules'))
  fs.writeFileSync(path.join(repo, '.gitignore'), 'node_modules\n')
  const who = { GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.invalid', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.invalid' }
  const env = { ...require('../scripts/install-check').userEnv(process.env.PATH), ...who }
  const git = async (...args) => {
    const r = await h.run('git', args, { cwd: repo, env })
    t.is(r.code, 0, `git ${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }
  await git('init', '-q')
  await git('add', '-A')
  await git('commit', '-qm', 'start')
  const r = await h.run('npm', ['version', '9.8.7', '-m', 'v%s'], { cwd: repo, env, timeout: 60_000 })
  t.is(r.code, 0, r.stderr)
  const loader = await git('show', 'HEAD:binding/index.js')
  const checks = [...loader.matchAll(/bindingPackageVersion !== '([^']*)'|expected (\S+) but got/g)].map((m) => m[1] ?? m[2])
  t.true(checks.length > 0)
  t.deepEqual([...new Set(checks)], ['9.8.7'])
  for (const platform of fs.readdirSync(path.join(repo, 'npm'))) {
    t.is(JSON.parse(await git('show', `HEAD:npm/${platform}/package.json`)).version, '9.8.7', platform)
  }
  t.is(await git('status', '--porcelain'), '', 'npm version left changes out of its commit')
})

test('the loader in the repository checks for the version in package.json', (t) => {
  const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  const loader = fs.readFileSync(path.join(ROOT, 'binding', 'index.js'), 'utf8')
  const checks = [...loader.matchAll(/bindingPackageVersion !== '([^']*)'|expected (\S+) but got/g)].map((m) => m[1] ?? m[2])
  t.deepEqual([...new Set(checks)], [version])
})

/** CI's artifact layout in `dir`: bindings-<platform>/ with the addon and the supervisor. */
function artifactsDir(dir, builds) {
  const artifacts = path.join(dir, 'artifacts')
  for (const [platform, addon, supervisor] of builds) {
    fs.mkdirSync(path.join(artifacts, `bindings-${platform}`), { recursive: true })
    fs.copyFileSync(addon, path.join(artifacts, `bindings-${platform}`, `daemonkit.${platform}.node`))
    fs.copyFileSync(supervisor, path.join(artifacts, `bindings-${platform}`, 'daemonkit-supervise'))
  }
  fs.cpSync(path.join(ROOT, 'npm'), path.join(dir, 'npm'), { recursive: true })
  return artifacts
}

const hostBuild = ['linux-x64-gnu', path.join(ROOT, 'binding', 'daemonkit.linux-x64-gnu.node'), path.join(ROOT, 'binding', 'daemonkit-supervise')]
const arm64Build = ['linux-arm64-gnu', RUNTIME_LIST[3].addon, RUNTIME_LIST[3].supervisor]
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64' && fs.existsSync(hostBuild[1]) && fs.existsSync(hostBuild[2]) ? test : test.skip

onLinuxX64('assemble-packages --dry-run: the platform packages npm would publish hold the addon and the executable supervisor', async (t) => {
  const dir = h.tempDir(t)
  const builds = [hostBuild, ...(fs.existsSync(arm64Build[1]) && fs.existsSync(arm64Build[2]) ? [arm64Build] : [])]
  const artifacts = artifactsDir(dir, builds)
  const only = builds.map((b) => b[0]).join(',')
  const release = path.join(dir, 'release')
  const r = await h.run(process.execPath, [path.join(ROOT, 'scripts', 'assemble-packages.js'), '--artifacts', artifacts, '--npm-dir', path.join(dir, 'npm'), '--only', only, '--release-dir', release, '--dry-run'], { cwd: ROOT, timeout: 120_000 })
  t.is(r.code, 0, r.stderr)
  for (const [platform] of builds) {
    t.regex(r.stdout, new RegExp(`npm publish --dry-run daemonkit-${platform}@\\S+: README.md, daemonkit-supervise, daemonkit.${platform}.node, package.json`))
    t.true(fs.existsSync(path.join(release, `daemonkit-supervise-${platform}`)), `no supervisor for ${platform} in the release files`)
    t.true(fs.existsSync(path.join(release, `daemonkit.${platform}.node`)))
    t.is(fs.statSync(path.join(dir, 'npm', platform, 'daemonkit-supervise')).mode & 0o777, 0o755)
  }
  t.regex(r.stdout, /npm publish --dry-run daemonkit@\S+: \d+ files/)
})

onLinuxX64('assemble-packages: a missing or misplaced supervisor fails with its name', async (t) => {
  const dir = h.tempDir(t)
  const artifacts = artifactsDir(dir, [hostBuild])
  fs.rmSync(path.join(artifacts, 'bindings-linux-x64-gnu', 'daemonkit-supervise'))
  const script = path.join(ROOT, 'scripts', 'assemble-packages.js')
  const missing = await h.run(process.execPath, [script, '--artifacts', artifacts, '--npm-dir', path.join(dir, 'npm'), '--only', 'linux-x64-gnu', '--dry-run'], { cwd: ROOT })
  t.is(missing.code, 1)
  t.regex(missing.stderr, /linux-x64-gnu: \S+bindings-linux-x64-gnu\/daemonkit-supervise is missing/)
  // The x64 supervisor in the arm64 package's place.
  fs.mkdirSync(path.join(artifacts, 'bindings-linux-arm64-gnu'))
  fs.copyFileSync(hostBuild[2], path.join(artifacts, 'bindings-linux-arm64-gnu', 'daemonkit-supervise'))
  const swapped = await h.run(process.execPath, [script, '--artifacts', artifacts, '--npm-dir', path.join(dir, 'npm'), '--only', 'linux-arm64-gnu'], { cwd: ROOT })
  t.is(swapped.code, 1)
  t.regex(swapped.stderr, /linux-arm64-gnu: \S+daemonkit-supervise is elf-x64, not elf-arm64/)
})
