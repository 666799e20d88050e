export { daemonize, type DaemonHandle } from './daemonize'
export { isDaemon } from './handoff'
export type { DaemonizeOptions, ListenAddress, NormalizedOptions, OutputTarget } from './options'
export { listenFds, type ListenFd } from './listen'
export { ensureDaemon, helperFolder, type EnsureDaemonOptions, type EnsuredDaemon } from './ensure'
export {
  AlreadyRunningError,
  DaemonkitError,
  GracefulRestartError,
  HelperError,
  type HelperErrorReason,
  LaunchError,
  ListenError,
  LogfileError,
  PidfileError,
  ReadinessError,
  UnsupportedPlatformError,
  type GracefulRestartReason,
  isDaemonkitError,
  type AnyDaemonkitError,
  type DaemonkitErrorCode,
  type NotReadyReason,
  type GracefulRestartKind,
  type HelperErrorKind,
  type NotReadyKind,
} from './errors'
export { gracefulRestart, type GracefulRestartOptions, type GracefulRestartResult } from './upgrade'
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
