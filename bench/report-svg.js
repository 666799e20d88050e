'use strict'
// bench/results.svg, for bench/report.js.

const { f2, fms, mib, smib, BLOCK_LABELS, BLOCK_SHORT } = require('./report-format')

// ---------------------------------------------------------------------------------------------
// The chart: hand-written SVG, four horizontal bar panels.

function svgChart(r, tools) {
  const W = 960
  const labelW = 330
  const plotW = W - labelW - 110
  const rowH = 22
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  const parts = []
  let y = 20
  const colorOf = (name) => (name.startsWith('daemonkit') ? '#1f6feb' : name === 'floor' || name === 'bare2' || name === 'require2' ? '#8b949e' : '#d29922')

  function panel(title, rows, { log = false, unit = 'ms', note = '' }) {
    // rows: [{ name, label, value, min?, max? }]
    const values = rows.flatMap((x) => [x.value, x.max ?? x.value]).filter((v) => Number.isFinite(v) && v > 0)
    let lo = 0
    let hi = Math.max(...values) * 1.08
    if (log) {
      lo = 10 ** Math.floor(Math.log10(Math.min(...values)))
      hi = 10 ** Math.ceil(Math.log10(Math.max(...values)))
    }
    const x = (v) => {
      if (log) return labelW + (plotW * (Math.log10(Math.max(v, lo)) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo))
      return labelW + (plotW * (v - lo)) / (hi - lo)
    }
    parts.push(`<text x="10" y="${y + 14}" class="t">${esc(title)}</text>`)
    if (note) parts.push(`<text x="${W - 10}" y="${y + 14}" class="n" text-anchor="end">${esc(note)}</text>`)
    y += 26
    const top = y
    const ticks = []
    if (log) for (let v = lo; v <= hi * 1.0001; v *= 10) ticks.push(v)
    else {
      const step = 10 ** Math.floor(Math.log10(hi / 4))
      const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => hi / s <= 6) || step * 10
      for (let v = 0; v <= hi; v += nice) ticks.push(v)
    }
    const bottom = top + rows.length * rowH
    for (const v of ticks) {
      parts.push(`<line x1="${x(v).toFixed(1)}" y1="${top - 2}" x2="${x(v).toFixed(1)}" y2="${bottom}" class="g"/>`)
      parts.push(`<text x="${x(v).toFixed(1)}" y="${bottom + 13}" class="n" text-anchor="middle">${+v.toPrecision(3)}</text>`)
    }
    parts.push(`<text x="${labelW + plotW}" y="${bottom + 26}" class="n" text-anchor="end">${esc(unit)}${log ? ' (log scale)' : ''}</text>`)
    rows.forEach((row, i) => {
      const cy = top + i * rowH
      parts.push(`<text x="${labelW - 8}" y="${cy + 15}" class="l" text-anchor="end">${esc(row.label)}</text>`)
      if (!Number.isFinite(row.value)) return
      const x0 = x(log ? lo : 0)
      const x1 = x(row.value)
      parts.push(`<rect x="${x0.toFixed(1)}" y="${cy + 4}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${rowH - 8}" fill="${colorOf(row.name)}"/>`)
      if (Number.isFinite(row.min) && Number.isFinite(row.max)) {
        parts.push(`<line x1="${x(row.min).toFixed(1)}" y1="${cy + rowH / 2}" x2="${x(row.max).toFixed(1)}" y2="${cy + rowH / 2}" class="w"/>`)
      }
      parts.push(`<text x="${(Math.max(x1, Number.isFinite(row.max) ? x(row.max) : x1) + 5).toFixed(1)}" y="${cy + 15}" class="v">${esc(row.text)}</text>`)
    })
    y = bottom + 42
  }

  const L = r.launch
  panel(
    '1. Launch to ready (median ms; whisker: min–max)',
    L.map((v) => ({ name: v.name, label: v.label, value: v.ready.median, min: v.ready.min, max: v.ready.max, text: fms(v.ready.median) })),
    { note: `× C floor: daemonkit ${f2(L.find((v) => v.name === 'daemonkit').ready.median / L.find((v) => v.name === 'floor').ready.median)}x` },
  )
  const last = r.blocking.results[r.blocking.results.length - 1]
  panel(
    `2. Launcher blocked by the launch call at ${last.gib} GiB (median ms)`,
    Object.keys(BLOCK_LABELS).map((n) => ({ name: n, label: BLOCK_SHORT[n], value: last.tools[n].median, min: last.tools[n].min, max: last.tools[n].max, text: fms(last.tools[n].median) })),
    { log: true },
  )
  panel(
    '3. Stop latency: daemon\'s last stamp → stopper returns (median ms, reaping init)',
    r.stop.stop.map((s) => ({ name: s.name, label: s.short, value: s.latency.median, min: s.latency.min, max: s.latency.max, text: fms(s.latency.median) })),
    { log: true },
  )
  panel(
    '4. Idle daemon memory added over a bare Node process (median MiB)',
    [
      ...tools.map((t) => ({ name: t.name, label: t.label, value: Math.max(0, r.memory.added[t.name].median / 1024), text: smib(r.memory.added[t.name].median) })),
      { name: 'daemonkit-sup', label: 'daemonkit supervisor process (whole VmRSS)', value: r.memory.supervisor.median / 1024, text: `${mib(r.memory.supervisor.median)} MiB` },
    ],
    { unit: 'MiB' },
  )
  const H = y
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`,
    '<style>.t{font-size:14px;font-weight:bold;fill:#24292f}.l{font-size:12px;fill:#24292f}.v{font-size:11px;fill:#24292f}.n{font-size:10px;fill:#57606a}.g{stroke:#d0d7de;stroke-width:1}.w{stroke:#24292f;stroke-width:1.2}</style>',
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    ...parts,
    `<text x="10" y="${H - 8}" class="n">daemonkit in blue, the floor and references in grey, the alternatives in amber. Generated by bench/run.js on ${esc(r.machine.date)}.</text>`,
    '</svg>',
    '',
  ].join('\n')
}

// ---------------------------------------------------------------------------------------------

module.exports = { svgChart }
