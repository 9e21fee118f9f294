// @vexil/web: Vexil feature flags and experiments in the browser, evaluated by the server for
// the identified context (client keys; rules never reach the page).

export { VexilClient } from './client.js'
export type { ChangeEvent, ChangeListener, StatusListener } from './client.js'
export { validateContext } from './context.js'
export { VexilError } from './errors.js'
export type { ErrorCode } from './errors.js'
export type { VexilOptions } from './options.js'
export type {
  Bootstrap,
  BootstrapDetail,
  ClientStatus,
  Context,
  ErrorKind,
  EvaluationDetail,
  EventOptions,
  EventStats,
  FlagChange,
  JsonValue,
  Logger,
  MultiContextObject,
  Reason,
  SingleContextObject,
  Source,
  Status,
  StorageLike,
  ValueType,
} from './types.js'
export { SDK_VERSION } from './version.js'
