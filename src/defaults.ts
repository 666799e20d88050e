import { native, type Native } from './native'

/**
 * The supervisor's defaults, durations in ms: restart delay and its cap, restart burst and
 * window, stop and upgrade timeouts, settle windows (the supervisor's, and `daemonkit start`'s),
 * the stderr tail a readiness failure carries, the supervisor's file name.
 */
export type SupervisorDefaults = ReturnType<Native['supervisorDefaults']>

let cached: SupervisorDefaults | undefined

/** The supervisor's defaults, as the supervisor itself defines them (read once, when first needed). */
export function supervisorDefaults(): SupervisorDefaults {
  cached ??= native().supervisorDefaults()
  return cached
}

/** A duration in ms as help texts write it: `100ms`, `1s`, `2m`, `1h` (the largest whole unit). */
export function durationText(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`
  }
  return `${ms}ms`
}
