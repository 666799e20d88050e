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

/** A duration in ms as help texts write it: `100ms`, `1s`, `60s`. */
export function durationText(ms: number): string {
  return ms % 1000 === 0 && ms > 0 ? `${ms / 1000}s` : `${ms}ms`
}
