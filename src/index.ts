export { daemonize, type DaemonHandle } from './daemonize'
export { isDaemon } from './handoff'
export type { DaemonizeOptions, OutputTarget } from './options'
export {
  AlreadyRunningError,
  DaemonkitError,
  LaunchError,
  PidfileError,
  ReadinessError,
  UnsupportedPlatformError,
  type NotReadyReason,
} from './errors'
