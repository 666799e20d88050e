// The package's entry. Loading it takes the daemon hand-off (handoff.ts) and defines the error
// classes; every other module loads on the first use of one of its exports, so that
// `require('daemonkit')` costs about what a one-file package does (bench/RESULTS.md, section 5).
//
// Each lazy export is declared with its module's type and defined by a getter of the form
// `Object.defineProperty(exports, 'x', { enumerable: true, get: function () { return m.x } })`,
// which Node's cjs-module-lexer reads, so that `import { x } from 'daemonkit'` (esm/index.mjs)
// sees every name.
import type * as DaemonizeModule from './daemonize'
import type * as ListenModule from './listen'
import type * as EnsureModule from './ensure'
import type * as UpgradeModule from './upgrade'
import type * as DaemonModule from './daemon'
import type * as ManageModule from './manage'
import type * as LsbModule from './lsb'
import type * as FailureModule from './failure'
import type * as SpawnModule from './spawn'

export { isDaemon } from './handoff'
export type { DaemonHandle } from './daemonize'
export type { DaemonizeOptions, ListenAddress, NormalizedOptions, OutputTarget } from './options'
export type { ListenFd } from './listen'
export type { EnsureDaemonOptions, EnsuredDaemon } from './ensure'
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
  SignalError,
  StopTimeoutError,
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
export type { GracefulRestartOptions, GracefulRestartResult } from './upgrade'
export type { DaemonAction, DaemonContext, DaemonOptions } from './daemon'
export type { DaemonStatus, SignalName, SignalResult, StopOptions, StopResult } from './manage'
export type { DaemonFailure } from './failure'
export type { RestartPolicy, SpawnDaemonOptions, SpawnedDaemon } from './spawn'

/** {@inheritDoc DaemonizeModule.daemonize} */
export declare const daemonize: typeof DaemonizeModule.daemonize
/** {@inheritDoc ListenModule.listenFds} */
export declare const listenFds: typeof ListenModule.listenFds
/** {@inheritDoc EnsureModule.ensureDaemon} */
export declare const ensureDaemon: typeof EnsureModule.ensureDaemon
/** {@inheritDoc EnsureModule.helperFolder} */
export declare const helperFolder: typeof EnsureModule.helperFolder
/** {@inheritDoc UpgradeModule.gracefulRestart} */
export declare const gracefulRestart: typeof UpgradeModule.gracefulRestart
/** {@inheritDoc DaemonModule.Daemon} */
export declare const Daemon: typeof DaemonModule.Daemon
export type Daemon = DaemonModule.Daemon
/** {@inheritDoc LsbModule.LSB} */
export declare const LSB: typeof LsbModule.LSB
/** {@inheritDoc ManageModule.signal} */
export declare const signal: typeof ManageModule.signal
/** {@inheritDoc ManageModule.status} */
export declare const status: typeof ManageModule.status
/** {@inheritDoc ManageModule.stop} */
export declare const stop: typeof ManageModule.stop
/** {@inheritDoc FailureModule.resetFailed} */
export declare const resetFailed: typeof FailureModule.resetFailed
/** {@inheritDoc SpawnModule.spawnDaemon} */
export declare const spawnDaemon: typeof SpawnModule.spawnDaemon

/** A stand-in for a module that requires it on the first read of one of its exports. */
function lazy<T extends object>(load: () => T): T {
  let loaded: T | undefined
  return new Proxy({} as T, { get: (_, key) => Reflect.get((loaded ??= load()), key) })
}

/* eslint-disable @typescript-eslint/no-require-imports */
const daemonize_1 = lazy(() => require('./daemonize') as typeof DaemonizeModule)
const listen_1 = lazy(() => require('./listen') as typeof ListenModule)
const ensure_1 = lazy(() => require('./ensure') as typeof EnsureModule)
const upgrade_1 = lazy(() => require('./upgrade') as typeof UpgradeModule)
const daemon_1 = lazy(() => require('./daemon') as typeof DaemonModule)
const lsb_1 = lazy(() => require('./lsb') as typeof LsbModule)
const manage_1 = lazy(() => require('./manage') as typeof ManageModule)
const failure_1 = lazy(() => require('./failure') as typeof FailureModule)
const spawn_1 = lazy(() => require('./spawn') as typeof SpawnModule)
/* eslint-enable @typescript-eslint/no-require-imports */

Object.defineProperty(exports, 'daemonize', { enumerable: true, get: function () { return daemonize_1.daemonize } })
Object.defineProperty(exports, 'listenFds', { enumerable: true, get: function () { return listen_1.listenFds } })
Object.defineProperty(exports, 'ensureDaemon', { enumerable: true, get: function () { return ensure_1.ensureDaemon } })
Object.defineProperty(exports, 'helperFolder', { enumerable: true, get: function () { return ensure_1.helperFolder } })
Object.defineProperty(exports, 'gracefulRestart', { enumerable: true, get: function () { return upgrade_1.gracefulRestart } })
Object.defineProperty(exports, 'Daemon', { enumerable: true, get: function () { return daemon_1.Daemon } })
Object.defineProperty(exports, 'LSB', { enumerable: true, get: function () { return lsb_1.LSB } })
Object.defineProperty(exports, 'signal', { enumerable: true, get: function () { return manage_1.signal } })
Object.defineProperty(exports, 'status', { enumerable: true, get: function () { return manage_1.status } })
Object.defineProperty(exports, 'stop', { enumerable: true, get: function () { return manage_1.stop } })
Object.defineProperty(exports, 'resetFailed', { enumerable: true, get: function () { return failure_1.resetFailed } })
Object.defineProperty(exports, 'spawnDaemon', { enumerable: true, get: function () { return spawn_1.spawnDaemon } })
