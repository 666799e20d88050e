'use strict'
// Turns the measurements into bench/RESULTS.md, bench/results.svg and the console summary.
// Every sentence that states a comparison is computed from this run's numbers.

const { textTable, markdownTable } = require('./lib')

const { f1, f2, fms, mrange, mib, smib, yesNo, BLOCK_LABELS } = require('./report-format')
const { svgChart } = require('./report-svg')

// ---------------------------------------------------------------------------------------------
// Tables

function launchTable(r) {
  const floor = r.launch.find((v) => v.name === 'floor').ready.median
  const bare = r.launch.find((v) => v.name === 'bare2').ready.median
  const header = ['launcher', 'ready median ms', 'min ms', 'max ms', '× C floor', '× 2 node start-ups', 'launcher returns ms', 'returned before the app was up']
  const rows = r.launch.map((v) => [
    v.label,
    f1(v.ready.median),
    f1(v.ready.min),
    f1(v.ready.max),
    `${f2(v.ready.median / floor)}x`,
    `${f2(v.ready.median / bare)}x`,
    v.exit ? f1(v.exit.median) : '-',
    v.reference ? '-' : `${v.beforeUp}/${v.runs}`,
  ])
  return { header, rows }
}

function breakdownTable(r) {
  const header = ['stage of one daemonkit launch', 'median ms', 'min ms', 'max ms']
  const stages = r.breakdown.stages
  const rows = stages.map((s) => (s.summary ? [s.name, f2(s.summary.median), f2(s.summary.min), f2(s.summary.max)] : [s.name, 'n/a', 'n/a', 'n/a']))
  const sum = stages.filter((s) => s.summary).reduce((a, s) => a + s.summary.median, 0)
  rows.push(['sum of stage medians', f2(sum), '', ''])
  rows.push([`whole traced launch (${r.breakdown.total.n} runs)`, f2(r.breakdown.total.median), f2(r.breakdown.total.min), f2(r.breakdown.total.max)])
  return { header, rows }
}


function blockingTable(r) {
  const sizes = r.blocking.results
  const header = ['launch call', ...sizes.map((s) => `${s.gib} GiB (RSS ${(s.rssBytes / 2 ** 30).toFixed(2)} GiB) ms`), `at ${sizes[sizes.length - 1].gib} GiB, × daemonkit`]
  const last = sizes[sizes.length - 1].tools
  const rows = Object.keys(BLOCK_LABELS).map((n) => [
    BLOCK_LABELS[n],
    ...sizes.map((s) => mrange(s.tools[n])),
    `${f1(last[n].median / last.daemonkit.median)}x`,
  ])
  return { header, rows }
}

function stopTable(stop) {
  const header = ['stopper', 'returns when', 'latency ms: daemon\'s last stamp → return', 'from the kernel\'s exit ms', 'daemon exit path ms', 'whole call ms', 'pidfile left']
  const rows = stop.map((s) => [s.label, s.returns, mrange(s.latency), mrange(s.fromKernel), fms(s.teardown.median), fms(s.total.median), `${s.pidFileLeft}/${s.runs}`])
  return { header, rows }
}

function roundTripTable(rt) {
  const header = ['round trip', 'start ms', 'status ms', 'stop ms', 'total ms (min–max)']
  const rows = rt.map((t) => [t.label, fms(t.start.median), fms(t.status.median), fms(t.stop.median), mrange(t.total)])
  return { header, rows }
}

function memoryTable(r, tools) {
  const m = r.memory
  const header = ['daemon started by', 'daemon VmRSS MiB', 'added over bare node MiB (min–max)', 'other processes it keeps']
  const rows = [['bare `node app-plain.js` (reference)', mib(m.bare.median), '0', '-']]
  for (const t of tools) {
    const a = m.added[t.name]
    rows.push([
      t.label,
      mib(m.tools[t.name].median),
      `${smib(a.median)} (${smib(a.min)} – ${smib(a.max)})`,
      t.supervised ? `supervisor ${mib(m.extra[t.name].median)} MiB` : '-',
    ])
  }
  return { header, rows }
}

function requireTable(r) {
  const header = ['module', 'require ms median', 'min ms', 'max ms', 'processes']
  const rows = r.require.map((m) => [m.label, f2(m.summary.median), f2(m.summary.min), f2(m.summary.max), m.summary.n])
  return { header, rows }
}

function correctnessTables(r, tools) {
  const c = r.correctness
  const byLaunch = Object.fromEntries(r.launch.map((v) => [v.name, v]))
  const procHeader = ['daemon started by', 'session leader', 'controlling tty, launched from a terminal', 'opens a terminal later: it becomes its controlling tty', 'survives that terminal\'s hang-up', 'launcher fds it keeps', 'fds 0–2', 'cwd', 'umask']
  const procRows = tools.map((t) => {
    const x = c[t.name]
    return [
      t.label,
      yesNo(x.pty.sessionLeader),
      x.pty.ttyNr === 0 ? 'none' : `yes (tty_nr ${x.pty.ttyNr})`,
      yesNo(x.pty.acquires),
      x.pty.survivesHangUp ? 'yes' : '**no: killed by SIGHUP**',
      x.fds.leaks.length ? x.fds.leaks.join(', ') : 'none',
      x.fds.stdio,
      x.fds.cwd,
      x.fds.umask,
    ]
  })
  const readyHeader = ['daemon started by', 'pidfile names', 'pidfile locked', 'launcher returns only once the app is up', 'app fails at start: launcher exits with', 'shows the app\'s error', 'left behind']
  const readyRows = tools.map((t) => {
    const x = c[t.name]
    const l = byLaunch[t.name]
    const who = l.pidFileNames.join(' / ')
    const owner = ['daemon', 'spawn'].includes(t.name) ? `${who} (written by the app)` : who
    return [
      t.label,
      owner,
      x.fds.locked,
      `${l.beforeUp === 0 ? 'yes' : 'no'} (${l.runs - l.beforeUp}/${l.runs} runs)`,
      `${x.crash.status} after ${fms(x.crash.elapsed)} ms`,
      yesNo(x.crash.showsError),
      x.crash.left.length ? x.crash.left.join(', ') : 'nothing',
    ]
  })
  return { proc: { header: procHeader, rows: procRows }, ready: { header: readyHeader, rows: readyRows } }
}

// ---------------------------------------------------------------------------------------------
// Findings computed from the numbers

function findings(r, tools) {
  const L = Object.fromEntries(r.launch.map((v) => [v.name, v]))
  const dk = L.daemonkit.ready.median
  const label = (n) => tools.find((t) => t.name === n).label
  const stage = (re) => (r.breakdown.stages.find((s) => re.test(s.name) && s.summary) || { summary: { median: NaN } }).summary.median
  const requireBoth = stage(/launcher: require/) + stage(/daemon: require/)
  const notAhead = []

  const launchWhy = {
    floor: 'the C launcher costs ~1 ms and Node starts once; daemonkit re-runs the script, so Node starts twice',
    ssd: 'a C launcher and one Node start-up, and it does not wait for the app at all',
    'ssd-notify': `a C launcher and one Node start-up, with a real readiness check (READY=1, sent by the app through systemd-notify); but its pidfile is not locked, and an app that fails at start is only noticed when --notify-await times out (exit ${r.correctness['ssd-notify'] ? `${r.correctness['ssd-notify'].crash.status} after ${fms(r.correctness['ssd-notify'].crash.elapsed)} ms` : 'n/a'} here, with --notify-timeout 5; the default is 60 s)`,
    spawn: `Node starts twice there too, but no package is loaded: daemonkit loads its package in both roles (${f1(requireBoth)} ms of require in this run's trace) and its binding, takes and hands over the pidfile lock, and forks twice`,
    daemon: `its launcher returns after ${f1((L.daemon.exit || {}).median)} ms without waiting (here "ready" is the app's own stamp, about one Node start-up later), and the package is one small file`,
    daemonize2: 'its launcher waits 100 ms after the app loaded',
  }
  const faster = r.launch.filter((v) => !v.reference && !v.name.startsWith('daemonkit') && v.ready.median < dk)
  for (const v of faster) {
    notAhead.push(`**Launch to ready: ${v.label}** ${f1(v.ready.median)} ms vs daemonkit ${f1(dk)} ms (${f1(dk - v.ready.median)} ms less): ${launchWhy[v.name] || ''}.`)
  }
  if (L['daemonkit-cli'] && L.ssd && L['daemonkit-cli'].ready.median > L.ssd.ready.median) {
    notAhead.push(
      `**The CLI against start-stop-daemon:** \`daemonkit start\` ${f1(L['daemonkit-cli'].ready.median)} ms to ready vs ` +
        `${f1(L.ssd.ready.median)} ms: the CLI is itself a Node program (one more Node start-up and require) and starts a supervisor.`,
    )
  }
  if (L['daemonkit-cli-ready'] && L['ssd-notify'] && L['daemonkit-cli-ready'].ready.median > L['ssd-notify'].ready.median) {
    notAhead.push(
      `**The CLI with readiness against start-stop-daemon --notify-await:** \`daemonkit start --wait-ready\` ` +
        `${f1(L['daemonkit-cli-ready'].ready.median)} ms vs ${f1(L['ssd-notify'].ready.median)} ms: both wait for READY=1 from the app, ` +
        'but the CLI is a Node program and the app loads daemonkit to send it (Node cannot send a datagram to a unix socket by itself).',
    )
  }
  const blk = r.blocking.results
  for (const s of blk) {
    for (const [n, t] of Object.entries(s.tools)) {
      if (n !== 'daemonkit' && t.median < s.tools.daemonkit.median) {
        notAhead.push(`**Blocking at ${s.gib} GiB: ${BLOCK_LABELS[n]}** ${f2(t.median)} ms vs daemonkit ${f2(s.tools.daemonkit.median)} ms.`)
      }
    }
  }
  const S = Object.fromEntries(r.stop.stop.map((s) => [s.name, s]))
  for (const s of r.stop.stop) {
    if (!s.name.startsWith('daemonkit') && s.latency.median < S['daemonkit-fn'].latency.median) {
      notAhead.push(`**Stop latency: ${s.label}** ${fms(s.latency.median)} ms vs daemonkit stop() ${fms(S['daemonkit-fn'].latency.median)} ms.`)
    }
  }
  const M = r.memory
  const dkAdded = M.added.daemonkit.median
  const leaner = tools.filter((t) => !t.name.startsWith('daemonkit') && M.added[t.name].median < dkAdded)
  if (leaner.length) {
    notAhead.push(
      `**Daemon memory:** a daemonkit daemon carries ${smib(dkAdded)} MiB over a bare Node process (its JavaScript and the ` +
        `native binding, mapped and partly resident), more than ${leaner.map((t) => `${t.label} (${smib(M.added[t.name].median)})`).join(', ')}.`,
    )
  }
  const R = Object.fromEntries(r.require.map((m) => [m.name, m.summary.median]))
  const lighter = ['daemon', 'daemonize2'].filter((n) => R[n] < R.daemonkit)
  if (lighter.length) {
    notAhead.push(
      `**require time:** daemonkit ${f2(R.daemonkit)} ms (+${f2(R['daemonkit+binding'] - R.daemonkit)} ms for the binding on first use) vs ` +
        `${lighter.map((n) => `${n} ${f2(R[n])} ms`).join(', ')}: those are one small file each with no native code, and most of ` +
        `their time is Node loading node:child_process (${f2(R.child_process)} ms on its own), which daemonkit does not load at require time.`,
    )
  }
  const cc = r.correctness
  if (cc['daemonkit-cli'] && cc['daemonkit-cli'].crash.status === 0) {
    notAhead.push(
      '**Readiness of the CLI:** `daemonkit start -- PROGRAM` returns 0 once PROGRAM has exec\'d, so an app that fails during its start-up ' +
        'is not reported (the supervisor then exits and removes its pidfile, so nothing is left). start-stop-daemon without ' +
        '--notify-await does the same. With `--wait-ready` the CLI waits for READY=1 from the app' +
        (cc['daemonkit-cli-ready'] ? ` and a failing app is reported (exit ${cc['daemonkit-cli-ready'].crash.status} after ${fms(cc['daemonkit-cli-ready'].crash.elapsed)} ms here, with the app's message)` : '') +
        '; a program that uses daemonize() itself gets a real readiness check either way.',
    )
  }
  const teardownDk = S['daemonkit-fn'].teardown.median
  const teardownPlain = S['ssd-own'] ? S['ssd-own'].teardown.median : NaN
  if (teardownDk > teardownPlain) {
    notAhead.push(
      `**The daemon's own exit path:** from its last stamp before process.exit() to the kernel's exit, a daemonkit daemon takes ` +
        `${fms(teardownDk)} ms vs ${fms(teardownPlain)} ms for the plain app started by start-stop-daemon. Most of it is Node's own ` +
        `exit path (exit handlers, environment teardown), which any Node daemon pays; daemonkit adds its exit handler (it removes the ` +
        `pidfile while still holding the lock). That time counts in every stopper's latency, and is most of daemonkit stop()'s.`,
    )
  }
  return notAhead
}


function render(r, tools) {
  const m = r.machine
  const L = Object.fromEntries(r.launch.map((v) => [v.name, v]))
  const S = Object.fromEntries(r.stop.stop.map((s) => [s.name, s]))
  const S1 = r.stopPid1 ? Object.fromEntries(r.stopPid1.stop.map((s) => [s.name, s])) : {}
  const blk = r.blocking.results
  const lastBlk = blk[blk.length - 1]
  const R = Object.fromEntries(r.require.map((x) => [x.name, x.summary.median]))
  const floor = L.floor.ready.median
  const launch = launchTable(r)
  const breakdown = breakdownTable(r)
  const blocking = blockingTable(r)
  const stop = stopTable(r.stop.stop)
  const stop1 = r.stopPid1 ? stopTable(r.stopPid1.stop) : undefined
  const rt = roundTripTable(r.stop.roundTrips)
  const mem = memoryTable(r, tools)
  const req = requireTable(r)
  const corr = correctnessTables(r, tools)
  const notAhead = findings(r, tools)
  const stopTarget = S['daemonkit-fn'].latency.median < 5
  const supTarget = r.memory.supervisor.median < 5 * 1024
  const worstBlock = Math.max(...blk.map((s) => s.tools.daemonkit.median))

  const headline = [
    `Launch to ready: daemonkit daemonize() ${f1(L.daemonkit.ready.median)} ms = ${f2(L.daemonkit.ready.median / floor)}x the C floor ` +
      `(${f1(floor)} ms, one Node start-up), ${f2(L.daemonkit.ready.median / L.bare2.ready.median)}x two bare Node start-ups and ` +
      `${f2(L.daemonkit.ready.median / L.require2.ready.median)}x two Node start-ups that load daemonkit; ` +
      `spawn detached ${f1(L.spawn.ready.median)} ms, npm daemon ${f1(L.daemon.ready.median)} ms, daemonize2 ${f1(L.daemonize2.ready.median)} ms, ` +
      `start-stop-daemon ${f1(L.ssd.ready.median)} ms.`,
    `Launcher blocked by the launch call at ${lastBlk.gib} GiB: daemonkit ${f2(lastBlk.tools.daemonkit.median)} ms; fork-based spawn ` +
      `${f1(lastBlk.tools.spawn.median)} ms, daemon ${f1(lastBlk.tools.daemon.median)} ms, daemonize2 ${f1(lastBlk.tools.daemonize2.median)} ms ` +
      `(worst daemonkit median over 0/1/4 GiB: ${f2(worstBlock)} ms).`,
    `Stop latency (daemon's last stamp before process.exit → stopper returns, median, reaping init): daemonkit stop() ` +
      `${fms(S['daemonkit-fn'].latency.median)} ms (target < 5 ms: ${stopTarget ? 'met' : 'NOT met'}; ` +
      `${fms(S['daemonkit-fn'].fromKernel.median)} ms after the kernel's exit), start-stop-daemon --retry ${fms(S.ssd.latency.median)} ms, ` +
      `daemonize2 ${fms(S.daemonize2.latency.median)} ms.`,
    `Memory: a daemonkit daemon holds ${smib(r.memory.added.daemonkit.median)} MiB over a bare Node process; ` +
      `the supervisor of \`daemonkit start -- sleep 1000\` ${mib(r.memory.supervisor.median)} MiB VmRSS (target < 5 MB: ${supTarget ? 'met' : 'NOT met'}).`,
    `require(): daemonkit ${f2(R.daemonkit)} ms (+${f2(R['daemonkit+binding'] - R.daemonkit)} ms binding on first use), ` +
      `daemon ${f2(R.daemon)} ms, daemonize2 ${f2(R.daemonize2)} ms.`,
  ]

  const readinessList = tools.map((t) => `- **${t.label}**: ${t.ready}.`).join('\n')

  const md = `# daemonkit benchmarks

Generated by \`npm run bench\` (\`node bench/run.js\`) — do not edit by hand; rerun instead.
${r.staleWarning ? `\n**Warning:** ${r.staleWarning}.\n` : ''}
| | |
| --- | --- |
| Date | ${m.date} |
| Kernel (\`uname -r\`) | ${m.kernel} |
| CPU | ${m.cpu} (${m.cores} cores) |
| RAM | ${m.memGiB} GiB |
| Node | ${m.node} |
| Transparent huge pages | ${m.thp} |
| PID 1 | \`${m.pid1}\` |
| Compared | daemonkit ${m.versions.daemonkit}; npm daemon ${m.versions.daemon}; npm daemonize2 ${m.versions.daemonize2}; ${m.versions.ssd}; C floor built with ${m.versions.gcc}; terminals by ${m.versions.script} |
| Load (1/5/15 min) | ${m.loadBefore} before, ${r.loadAfter} after |
| Runs | launch: ${r.config.runs} per launcher (after 2 warm-up rounds); trace: ${r.config.traceRuns}; blocking: ${r.config.blockRuns} per size; stop: ${r.config.stopRuns} per stopper (+${r.config.stopPid1Runs} under PID 1); memory: ${r.config.memBatches} batches; require: ${r.config.requireRuns} processes per module |
| Total time | ${f1(r.seconds)} s |

## Summary

${headline.map((h) => `- ${h}`).join('\n')}

![daemonkit against the alternatives](results.svg)

### Where daemonkit is not ahead, and why

${notAhead.length ? notAhead.map((x) => `- ${x}`).join('\n') : '- Nowhere in this run.'}

## 1. Launch to ready

Wall time from the moment the harness starts the launching command until **both** the command
has returned (its exit status 0 seen by \`spawnSync\`) **and** the daemon is up: the app stamps
\`process.hrtime.bigint()\` (CLOCK_MONOTONIC, one clock for every process on the machine) into
\`ready.json\` once its start-up code has run, and that stamp is compared with the harness's own.
For a launcher that waits for readiness, the launcher's return comes last; for one that does not,
the app's stamp does — so "ready" never credits a launcher for returning before the daemon is up,
and the last column counts how often it did. Every daemon runs the same app
(\`bench/fixtures/app.js\`) in its own temp dir, and is stopped by pid and waited for (gone, or a
zombie) before the next run. Launchers run round-robin in a rotating order.

How each launcher learns that the daemon is ready:

${readinessList}

**The floor.** The daemon is a Node program, so nothing can have it ready sooner than one Node
start-up plus the app's start-up code. The C floor (\`bench/fixtures/floor.c\`, compiled by the
bench with gcc) is the cheapest honest launcher around that: it double-forks (fork, setsid, fork),
execs \`node app-plain.js\`, and returns once the app writes one byte on an inherited pipe — a
readiness check, with no lock and no descriptor hygiene. Any launcher that is itself a Node
script re-running itself (daemonkit's daemonize(), spawn detached, npm daemon, daemonize2) pays
a second Node start-up on top, so about 2x the floor is their bound: the reference row
"2 × bare node start-up" shows it on this machine.

${markdownTable(launch.header, launch.rows)}

"× C floor" and "× 2 node start-ups" divide the ready medians. Session leaders and pidfile owners
are in section 6.

### Where a daemonkit launch spends its time

\`bench/fixtures/daemonkit-traced.js\` is a daemonkit launch with \`process.hrtime.bigint()\` stamps
in both roles and a wrapper around the binding's \`launch()\` (ready: 'auto'). Medians over
${r.breakdown.total.n} runs:

${markdownTable(breakdown.header, breakdown.rows)}

## 2. How long the launch call blocks the launching process

One Node process (\`node --expose-gc bench/blocking.js\`) grows its resident memory with Buffers
(every page written, RSS checked), lets it settle (one GC, then ${r.blocking.settleMs} ms idle),
and at each size times the synchronous launch call of each tool with \`process.hrtime.bigint()\`,
alternating, each call starting a real Node daemon (\`node bench/fixtures/empty.js\`, which exits
at once; ${r.blocking.gapMs} ms pause between calls so that it is done). start-stop-daemon and the C
floor are not calls inside a Node process: a Node program that wants them starts them with
\`child_process.spawn\`, i.e. the spawn row. Median (min–max) of ${r.blocking.runs} calls:

${markdownTable(blocking.header, blocking.rows)}

fork() copies the page tables of everything the parent maps, so every spawn-based launcher grows
with the launcher's memory; daemonkit's clone(CLONE_VM | CLONE_VFORK) shares them. Its launch call
returns when the intermediate process has exited, which (CLONE_VFORK) is after the grandchild's
execve of node. Observed while the first version of this benchmark was written (perf sched, not
re-measured by each run): when the kernel runs the freshly exec'd node first on the CPU of the
intermediate process, the call waits a scheduler slice behind it, whatever the memory size — the
occasional multi-ms maxima above.

## 3. Stop latency

Every stopper stops the same kind of daemon: the daemonkit fixture (\`daemonize()\`, pidfile
locked), whose SIGTERM handler stamps CLOCK_MONOTONIC into \`exit.json\` just before
\`process.exit(0)\` (daemonkit's exit handler then removes the pidfile). The stopper runs under
\`probe stopwatch PID\` (\`bench/fixtures/probe.c\`), which holds a pidfd on the daemon and notes when
it becomes readable — the kernel's exit, the moment the process is a zombie — and when the stopper
exits. Function stoppers stamp their own return in-process (\`await stop()\` resolved, daemonize2's
callback called); command stoppers return when their process exits. The last row is
start-stop-daemon stopping a daemon it started itself (the plain app, which does not remove a pidfile).

- **latency**: stopper returns − the daemon's last stamp, the figure the < 5 ms target is about;
- **from the kernel's exit**: stopper returns − pidfd readable: the stopper's own reaction time;
- **daemon exit path**: the kernel's exit − the last stamp: Node's own exit (exit handlers,
  environment teardown), the same for every stopper of the same daemon.

Orphaned daemons are reaped by PID 1, and this machine's PID 1 (\`${m.pid1}\`) reaps them about
2 s late; a stopper that polls \`kill(pid, 0)\` or \`/proc/PID\` sees the zombie as alive until then.
A real init (systemd, tini, a container's init) reaps at once, so the main table runs every daemon
under \`probe subreaper\` (PR_SET_CHILD_SUBREAPER, reaping at once). Median (min–max) of ${r.config.stopRuns} stops:

${markdownTable(stop.header, stop.rows)}
${
  stop1
    ? `
The same on this machine as it is (orphans re-parented to PID 1, reaped late), ${r.config.stopPid1Runs} stops each:

${markdownTable(stop1.header, stop1.rows)}

daemonkit's stop() waits on a pidfd, which is readable at the exit itself, so it does not depend on
the reaper (${fms((S1['daemonkit-fn'] || { latency: { median: NaN } }).latency.median)} ms here); start-stop-daemon and daemonize2 wait for the zombie to be reaped.
`
    : ''
}
daemonize2's stop() sends SIGTERM and then checks \`kill(pid, 0)\` only every \`stopTimeout\`
(2000 ms by default), so it can never return sooner than that. start-stop-daemon's \`--retry\`
checks the process at intervals, so its latency is set by its polling interval, not by the exit.

### start → status → stop

Each round trip in its own temp dir. The Daemon class's steps are timed inside its one process;
the CLI and start-stop-daemon steps are separate processes, timed by the harness from spawn to exit
(so each includes that program's own start-up: a Node start-up for the CLI):

${markdownTable(rt.header, rt.rows)}

The Daemon class's start() resolves once the daemon is ready (one Node start-up: the launching
process is already running); start-stop-daemon's start returns without waiting for the app (its
stop then may catch node before the app has installed its handlers).

## 4. Memory of an idle daemon

In each of ${r.memory.batches} batches, one daemon per launcher plus a bare \`node app-plain.js\` (the
same app, no daemonizing code, started directly) idle together for ${r.memory.settleMs} ms; then
VmRSS is read from \`/proc/PID/status\` (median of the batches; "added" is paired per batch).

${markdownTable(mem.header, mem.rows)}

daemonkit's supervisor (\`daemonkit start -p F -- sleep 1000\`, the process the pidfile names):
**${mib(r.memory.supervisor.median)} MiB** VmRSS (min ${mib(r.memory.supervisor.min)}, max ${mib(r.memory.supervisor.max)}; target < 5 MB:
${supTarget ? 'met' : 'NOT met'}). It is the only extra process any launcher keeps: the others leave the app alone.

## 5. require() time

Median of ${r.config.requireRuns} fresh Node processes per module (alternating), \`process.hrtime.bigint()\`
around the \`require\` call (\`bench/fixtures/require-time.js\`), after one warm-up round:

${markdownTable(req.header, req.rows)}

## 6. Correctness, observed

One launch per tool for each of: from a pseudo-terminal (\`${'script -qec CMD /dev/null'}\`), with extra
descriptors, and with an app that fails at start. What was read:

- **session leader**: \`/proc/PID/stat\` session id = pid. A session leader without a terminal acquires
  the first terminal it opens (without O_NOCTTY) as its controlling terminal.
- **opens a terminal later**: the harness creates a fresh pseudo-terminal nobody owns
  (\`probe pty\`); the app opens it with a plain \`fs.openSync(path, 'r+')\`, then tty_nr is read again.
  Then the terminal hangs up (its master closes): a daemon whose controlling terminal it became gets
  SIGHUP and, like any Node program without a SIGHUP handler, dies.
- **launcher fds it keeps**: the launcher ran with stdin/stdout/stderr on files and an extra open
  file at fd 5; \`/proc/PID/fd\` of the daemon (and of the supervisor, for the CLI) is searched for them.
- **pidfile locked**: /proc/locks lists a flock(2) lock on the pidfile (checked when the file exists).
- **app fails at start**: the app throws during its start-up code (\`BENCH_CRASH=1\`), before it says
  ready; the launcher's exit status and time, whether the launcher shows the app's error message,
  and, 0.5 s later, whether a pidfile or a process is left.

${markdownTable(corr.proc.header, corr.proc.rows)}

${markdownTable(corr.ready.header, corr.ready.rows)}

"pidfile names": the npm \`daemon\` package and spawn have no pidfile of their own: the app writes it,
as their users do.

## Reading the numbers

- This is a ${m.cores}-core VM that other jobs may share (see the load average above): compare medians,
  and rerun before trusting a difference under ~5 %.
- All stamps are CLOCK_MONOTONIC (\`process.hrtime.bigint()\` in Node, \`clock_gettime\` in C): one
  clock for every process on the machine, so cross-process differences are exact up to the cost of
  taking a stamp. The harness checks this at start: a child's stamp must fall between the
  harness's stamps around it (${r.clockCheck}).
- Every daemon is stopped by pid (read from its pidfile or its ready marker, and only if its command
  line still names its run dir) and confirmed gone (a zombie counts as gone) before the next run.
`

  const consoleOut = [
    '',
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB RAM; Linux ${m.kernel}; Node ${m.node}; ${m.date}`,
    '',
    ...headline.map((h) => `* ${h}`),
    '',
    '1. Launch to ready',
    textTable(launch.header, launch.rows),
    '',
    '2. Launcher blocked by the launch call (ms, median (min–max))',
    textTable(blocking.header, blocking.rows),
    '',
    '3. Stop latency (reaping init)',
    textTable(stop.header, stop.rows),
    ...(stop1 ? ['', '   under this machine\'s PID 1', textTable(stop1.header, stop1.rows)] : []),
    '',
    '   start -> status -> stop',
    textTable(rt.header, rt.rows),
    '',
    '4. Idle daemon memory',
    textTable(mem.header, mem.rows),
    `   supervisor VmRSS: ${mib(r.memory.supervisor.median)} MiB`,
    '',
    '5. require()',
    textTable(req.header, req.rows),
    '',
    '6. Correctness',
    textTable(corr.proc.header, corr.proc.rows.map((row) => row.map((c) => String(c).replace(/\*\*/g, '')))),
    '',
    textTable(corr.ready.header, corr.ready.rows),
    '',
    'Where daemonkit is not ahead:',
    ...notAhead.map((x) => `- ${x.replace(/\*\*/g, '')}`),
    '',
    ...(r.staleWarning ? [`WARNING: ${r.staleWarning}`, ''] : []),
    `Total benchmark time: ${f1(r.seconds)} s. Written: bench/RESULTS.md, bench/results.svg`,
    '',
  ].join('\n')

  return { md, svg: svgChart(r, tools), console: consoleOut }
}

module.exports = { render }
