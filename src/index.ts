export { daemonize, type DaemonHandle } from './daemonize'
export { isDaemon } from './handoff'
export type { DaemonizeOptions, NormalizedOptions, OutputTarget } from './options'
export {
  AlreadyRunningError,
  DaemonkitError,
  LaunchError,
  LogfileError,
  PidfileError,
  ReadinessError,
  UnsupportedPlatformError,
  isDaemonkitError,
  type AnyDaemonkitError,
  type DaemonkitErrorCode,
  type NotReadyReason,
} from './errors'
export { Daemon, LSB, type DaemonAction, type DaemonContext, type DaemonOptions } from './daemon'
export {
  signal,
  status,
  stop,
  SignalError,
  StopTimeoutError,
  type DaemonStatus,
  type SignalName,
  type SignalResult,
  type StopOptions,
  type StopResult,
} from './manage'
export { resetFailed, type DaemonFailure } from './failure'
export { spawnDaemon, type RestartPolicy, type SpawnDaemonOptions, type SpawnedDaemon } from './spawn'
