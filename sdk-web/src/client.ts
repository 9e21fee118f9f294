// The browser client: remote evaluation over EvaluationService.Watch (the server evaluates
// for the identified context and streams the values; rules never reach the page), the same
// stream, cache and event semantics as the Rust client's remote mode (sdk-core/core).

import { Backoff, HEALTHY_AFTER_MS } from './backoff.js'
import { ValueCache } from './cache.js'
import { checkContext, jsonValue } from './context.js'
import type { CheckedContext } from './context.js'
import { describe, VexilError } from './errors.js'
import { EventPipeline, MAX_KEY_LENGTH } from './events.js'
import { WatchRequest, WatchResponse } from './gen/vexil/v1/evaluation.js'
import type { WatchChanges, WatchValues } from './gen/vexil/v1/evaluation.js'
import { PublishRequest } from './gen/vexil/v1/events.js'
import { call, Code, GrpcError, unary } from './grpc-web.js'
import type { Fetch } from './grpc-web.js'
import { readConfig } from './options.js'
import type { Config, VexilOptions } from './options.js'
import type {
  BootstrapDetail,
  ClientStatus,
  Context,
  ErrorKind,
  EvaluationDetail,
  FlagChange,
  JsonValue,
  Reason,
  Source,
  Status,
  ValueType,
} from './types.js'
import { SDK_NAME, SDK_VERSION } from './version.js'
import { contextToWire, deepFreeze, ERROR_KIND_NUMBERS, ERROR_REASONS, heldFromResult, sameHeld } from './wire.js'
import type { Held } from './wire.js'

type ContextWire = ReturnType<typeof contextToWire>

/** The values the client answers from, and whom they were evaluated for. */
interface Data {
  readonly values: Map<string, Held>
  /** `null`: a bootstrap given without a context. */
  readonly context: CheckedContext | null
  readonly wire: ContextWire | null
  readonly version: number
  readonly source: 'NETWORK' | 'CACHE' | 'BOOTSTRAP'
  /** When the values were received (for the cache: when they were saved). */
  readonly receivedAt: number
}

/** How a Watch stream ended, which decides what the loop does next. */
type Ended =
  | { kind: 'retry'; reason: string }
  /** The key was refused: retrying cannot help. */
  | { kind: 'refused'; reason: string }
  /** The context was refused: retrying it cannot help, another context may. */
  | { kind: 'rejected'; reason: string }
  | { kind: 'identify' }
  | { kind: 'closing' }

/** `'change'`: any flag; `'change:<flag key>'`: that flag. */
export type ChangeEvent = 'change' | `change:${string}`
export type ChangeListener = (change: FlagChange) => void
export type StatusListener = (status: ClientStatus) => void

const VALUE_TYPES: readonly string[] = ['bool', 'string', 'number', 'json']
const REASON_KINDS: readonly string[] = ['OFF', 'TARGET_MATCH', 'RULE_MATCH', 'FALLTHROUGH', 'PREREQUISITE_FAILED', 'ERROR']
/** What a bootstrap value given without its detail is served with (its source says BOOTSTRAP). */
const BOOTSTRAP_REASON: Reason = Object.freeze({ kind: 'FALLTHROUGH' })
const CLOSE_FLUSH_MS = 5000
const PUBLISH_TIMEOUT_MS = 10_000

function typeOf(value: unknown): ValueType {
  switch (typeof value) {
    case 'boolean':
      return 'bool'
    case 'string':
      return 'string'
    case 'number':
      return 'number'
    default:
      return 'json'
  }
}

function admits(type: string, value: JsonValue): boolean {
  switch (type) {
    case 'bool':
      return typeof value === 'boolean'
    case 'string':
      return typeof value === 'string'
    case 'number':
      return typeof value === 'number'
    default:
      return true
  }
}

function classify(err: unknown): Ended {
  const error = GrpcError.from(err)
  const reason = error.message
  switch (error.code) {
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return { kind: 'refused', reason }
    case Code.InvalidArgument:
      return { kind: 'rejected', reason }
    default:
      return { kind: 'retry', reason }
  }
}

function isDetail(entry: unknown): entry is BootstrapDetail {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return false
  const reason = (entry as { reason?: unknown }).reason
  return (
    'value' in entry &&
    typeof reason === 'object' &&
    reason !== null &&
    REASON_KINDS.includes((reason as { kind?: unknown }).kind as string)
  )
}

function bootstrapValues(bootstrap: Record<string, unknown>): Map<string, Held> {
  const values = new Map<string, Held>()
  for (const flagKey of Object.keys(bootstrap)) {
    const path = `options.bootstrap[${JSON.stringify(flagKey)}]`
    const entry = bootstrap[flagKey]
    if (!isDetail(entry)) {
      const value = deepFreeze(jsonValue(entry, path))
      values.set(flagKey, {
        flagKey,
        value,
        variation: null,
        reason: BOOTSTRAP_REASON,
        inExperiment: false,
        experimentKey: null,
        flagVersion: 0,
        count: 0,
        exposedTo: null,
        exposedAt: 0,
      })
      continue
    }
    const variation = entry.variation ?? null
    if (variation !== null && (!Number.isSafeInteger(variation) || variation < 0)) {
      throw new VexilError('VEXIL_INVALID_ARGUMENT', `${path}.variation: expected a variation index or null, got ${describe(variation)}`)
    }
    const reason = deepFreeze(jsonValue(entry.reason, `${path}.reason`) as unknown as JsonValue) as unknown as Reason
    values.set(flagKey, {
      flagKey,
      // A detail of a flag that could not be served carries the caller's default (or null).
      value: reason.kind === 'ERROR' ? undefined : deepFreeze(jsonValue(entry.value, `${path}.value`)),
      variation,
      reason,
      inExperiment: entry.inExperiment === true,
      experimentKey: typeof entry.experimentKey === 'string' && entry.experimentKey !== '' ? entry.experimentKey : null,
      flagVersion: typeof entry.flagVersion === 'number' && Number.isFinite(entry.flagVersion) ? entry.flagVersion : 0,
      count: 0,
      exposedTo: null,
      exposedAt: 0,
    })
  }
  return values
}

/** The flags whose held values differ between two sets, in key order. */
function changedKeys(before: Map<string, Held> | undefined, after: Map<string, Held> | undefined): string[] {
  const keys = new Set<string>([...(before?.keys() ?? []), ...(after?.keys() ?? [])])
  return [...keys].filter((key) => !sameHeld(before?.get(key), after?.get(key))).sort()
}

function checkTimeout(name: string, value: unknown): number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new VexilError('VEXIL_INVALID_ARGUMENT', `${name}: expected a number of milliseconds of at least 0, got ${describe(value)}`)
  }
  return value
}

/**
 * Settles with `promise`, or with `fallback` after `ms` (never, for an infinite time); the
 * timer is cleared either way, so nothing is left running once a result is known.
 */
function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  if (ms === Infinity) return promise
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => resolve(fallback), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err: unknown) => {
        clearTimeout(timer)
        reject(err)
      },
    )
  })
}

/**
 * A Vexil client for the browser, created with a client key. It starts at once and never
 * waits for the network: variation calls answer synchronously from the values held
 * (bootstrap, cache, then the stream's), or with the caller's default and a reason.
 */
export class VexilClient {
  private readonly config: Config
  private readonly fetch: Fetch
  private readonly headers: Record<string, string>
  private readonly cache: ValueCache | null
  private readonly events: EventPipeline
  private readonly countSummaries: boolean
  private data: Data | null = null
  private current: CheckedContext | null
  private currentWire: ContextWire | null
  private state: Status
  private reason: string | undefined
  /** Whether a Watch stream is up: network values are reported `STALE` otherwise. */
  private connected = false
  private keyRefused = false
  private contextRejected = false
  private readonly listeners = new Map<string, ChangeListener[]>()
  private readonly statusListeners: StatusListener[] = []
  private identifyWaiters: { key: string; resolve: (arrived: boolean) => void }[] = []
  private statusWaiters: (() => void)[] = []
  private stopStream: ((ended: Ended) => void) | undefined
  private wakeUp: (() => void) | undefined
  private detach: () => void = () => {}
  private closing: Promise<void> | undefined
  /** The stream loop, which `close` waits for. */
  private loop: Promise<void> = Promise.resolve()

  /**
   * Creates a client for `sdkKey` (`vxl-client-…`) and starts watching `options.context` at
   * once. Throws a `VexilError`: `VEXIL_INVALID_KEY` (not a client key; a server key is
   * refused outright), `VEXIL_INVALID_ENDPOINT`, `VEXIL_INVALID_ARGUMENT` (naming the
   * option) or `VEXIL_INVALID_CONTEXT` (`options.context`).
   */
  constructor(sdkKey: string, options: VexilOptions = {}) {
    const config = readConfig(sdkKey, options)
    this.config = config
    const initial = config.bootstrap === undefined ? undefined : bootstrapValues(config.bootstrap)
    // Looked up at each call (not bound now), so that a page may wrap `fetch` after this.
    this.fetch = config.fetch ?? ((input, init) => globalThis.fetch(input, init))
    this.headers = { authorization: `Bearer ${config.sdkKey}`, 'x-user-agent': `${SDK_NAME}/${SDK_VERSION}` }
    this.cache = config.storage === null ? null : new ValueCache(config.storage, config.sdkKey, config.logger)
    this.events = new EventPipeline(
      config.events,
      { name: SDK_NAME, version: SDK_VERSION },
      (request, keepalive) => this.publish(request, keepalive),
      config.logger,
    )
    this.countSummaries = config.events.enabled && config.events.summaries
    this.current = config.context
    this.currentWire = config.context === null ? null : contextToWire(config.context.context)
    this.state = config.offline ? 'OFFLINE' : 'INITIALIZING'

    // Bootstrap values are what the page was rendered with: newer than any cached ones.
    if (initial !== undefined) {
      this.data = {
        values: initial,
        context: this.current,
        wire: this.currentWire,
        version: 0,
        source: 'BOOTSTRAP',
        receivedAt: Date.now(),
      }
    } else if (this.current !== null) {
      this.data = this.cached(this.current)
    }

    this.events.start()
    this.attachToPage()
    if (!config.offline) this.loop = this.run()
  }

  // ----- variations ----------------------------------------------------------------------

  /** The flag's value if it is a boolean flag, else `defaultValue`. Never throws. */
  boolVariation(flagKey: string, defaultValue: boolean): boolean {
    const value = this.serve(flagKey, 'bool')
    return value === undefined ? defaultValue : (value as boolean)
  }

  /** The flag's value if it is a string flag, else `defaultValue`. Never throws. */
  stringVariation(flagKey: string, defaultValue: string): string {
    const value = this.serve(flagKey, 'string')
    return value === undefined ? defaultValue : (value as string)
  }

  /** The flag's value if it is a number flag, else `defaultValue`. Never throws. */
  numberVariation(flagKey: string, defaultValue: number): number {
    const value = this.serve(flagKey, 'number')
    return value === undefined ? defaultValue : (value as number)
  }

  /**
   * The flag's value, of any kind (no type check), else `defaultValue`. The value is frozen:
   * it is the client's own copy. Never throws.
   */
  jsonVariation<T = JsonValue>(flagKey: string, defaultValue: T): JsonValue | T {
    const value = this.serve(flagKey, 'json')
    return value === undefined ? defaultValue : value
  }

  /**
   * The flag's value with its variation, reason, experiment, flag version, source and
   * environment version. The type asked for is `type`, or that of `defaultValue` (boolean,
   * string, number; anything else: `json`). Never throws: a flag it cannot serve gives
   * `defaultValue` with an `ERROR` reason saying why.
   */
  variationDetail<T = JsonValue>(flagKey: string, defaultValue: T, type?: ValueType): EvaluationDetail<JsonValue | T> {
    const data = this.data
    if (data === null) return this.failed(flagKey, defaultValue, this.contextRejected ? 'INVALID_CONTEXT' : 'CLIENT_NOT_READY', 0, data)
    const held = data.values.get(flagKey)
    if (held === undefined) return this.failed(flagKey, defaultValue, 'FLAG_NOT_FOUND', 0, data)
    const wanted = type === undefined ? typeOf(defaultValue) : type
    if (!VALUE_TYPES.includes(wanted) || (held.value !== undefined && !admits(wanted, held.value))) {
      return this.failed(flagKey, defaultValue, 'WRONG_TYPE', held.flagVersion, data)
    }
    this.record(held, data)
    return {
      value: held.value === undefined ? defaultValue : held.value,
      variation: held.variation,
      reason: held.reason,
      inExperiment: held.inExperiment,
      experimentKey: held.experimentKey,
      flagVersion: held.flagVersion,
      source: this.sourceOf(data),
      version: data.version,
    }
  }

  /** The detail of a call answered with its default because of `kind`, counted for the summaries. */
  private failed<T>(flagKey: string, defaultValue: T, kind: ErrorKind, flagVersion: number, data: Data | null): EvaluationDetail<T> {
    this.countError(flagKey, flagVersion, kind)
    return {
      value: defaultValue,
      variation: null,
      reason: ERROR_REASONS[kind],
      inExperiment: false,
      experimentKey: null,
      flagVersion,
      source: this.sourceOf(data),
      version: data === null ? 0 : data.version,
    }
  }

  /**
   * Every flag's detail for the identified context, by flag key; `value` is `null` for a
   * flag that cannot be served. Records no exposure and no evaluation.
   */
  allFlags(): Record<string, EvaluationDetail> {
    const data = this.data
    const out: Record<string, EvaluationDetail> = {}
    if (data === null) return out
    const source = this.sourceOf(data)
    for (const [key, held] of data.values) {
      out[key] = {
        value: held.value === undefined ? null : held.value,
        variation: held.variation,
        reason: held.reason,
        inExperiment: held.inExperiment,
        experimentKey: held.experimentKey,
        flagVersion: held.flagVersion,
        source,
        version: data.version,
      }
    }
    return out
  }

  /** The typed variations' path: the held value if it has the type, else `undefined` (the default). */
  private serve(flagKey: string, type: string): JsonValue | undefined {
    const data = this.data
    if (data === null) {
      this.countError(flagKey, 0, this.contextRejected ? 'INVALID_CONTEXT' : 'CLIENT_NOT_READY')
      return undefined
    }
    const held = data.values.get(flagKey)
    if (held === undefined) {
      this.countError(flagKey, 0, 'FLAG_NOT_FOUND')
      return undefined
    }
    const value = held.value
    if (value !== undefined && type !== 'json' && typeof value !== (type === 'bool' ? 'boolean' : type)) {
      this.countError(flagKey, held.flagVersion, 'WRONG_TYPE')
      return undefined
    }
    if (this.countSummaries && held.count++ === 0) this.events.counted.push(held)
    if (held.experimentKey !== null && data.wire !== null && data.context !== null) {
      this.events.expose(held, data.context.units, data.context.context)
    }
    return value
  }

  private record(held: Held, data: Data): void {
    if (this.countSummaries && held.count++ === 0) this.events.counted.push(held)
    if (held.experimentKey !== null && data.wire !== null && data.context !== null) {
      this.events.expose(held, data.context.units, data.context.context)
    }
  }

  private countError(flagKey: string, flagVersion: number, kind: ErrorKind): void {
    if (this.countSummaries && typeof flagKey === 'string') {
      this.events.countError(flagKey, flagVersion, ERROR_KIND_NUMBERS[kind])
    }
  }

  private sourceOf(data: Data | null): Source {
    if (data === null) return 'DEFAULTS'
    if (data.source === 'NETWORK') return this.connected ? 'NETWORK' : 'STALE'
    if (data.source === 'CACHE' && Date.now() - data.receivedAt > this.config.maxCacheAgeMs) return 'STALE'
    return data.source
  }

  // ----- context, status, listeners -----------------------------------------------------

  /** The identified context (canonical form), or `null` before the first. */
  getContext(): Context | null {
    return this.current === null ? null : this.current.context
  }

  /**
   * Evaluates for `context` from now on: the stream restarts for it at once, and resolves
   * `true` when its values arrived from the server, `false` after `timeoutMs` (default 5000),
   * when the key was refused, or when another `identify` came first. Meanwhile the new
   * context's cached values are served if there are any, else the previous values. Offline,
   * resolves `true` at once (cached values or defaults). Rejects with `VEXIL_INVALID_CONTEXT`
   * for an invalid context, keeping the previous one.
   */
  identify(context: Context, timeoutMs = 5000): Promise<boolean> {
    let checked: CheckedContext
    try {
      checked = checkContext(context)
      checkTimeout('timeoutMs', timeoutMs)
    } catch (err) {
      return Promise.reject(err)
    }
    if (this.closing !== undefined) return Promise.resolve(false)
    const changed = this.current === null || this.current.key !== checked.key
    if (changed) {
      this.current = checked
      this.currentWire = contextToWire(checked.context)
      const cached = this.cached(checked)
      // Offline nothing will replace another context's values: defaults are more honest.
      if (cached !== null || this.config.offline) this.replaceData(cached, false)
      if (this.contextRejected) {
        this.contextRejected = false
        this.reason = undefined
        this.state = this.data === null ? 'INITIALIZING' : 'STALE'
      }
    }
    if (this.config.offline) return Promise.resolve(true)
    if (this.keyRefused) return Promise.resolve(false)
    const data = this.data
    if (!changed && this.connected && data !== null && data.source === 'NETWORK' && data.context?.key === checked.key) {
      return Promise.resolve(true)
    }
    // Whoever waited for the previous context will not see it now.
    for (const waiter of this.identifyWaiters.splice(0)) if (waiter.key !== checked.key) waiter.resolve(false)
    if (changed) {
      this.stopStream?.({ kind: 'identify' })
      this.wakeUp?.()
    }
    let waiter: { key: string; resolve: (arrived: boolean) => void } | undefined
    const arrival = new Promise<boolean>((resolve) => {
      waiter = { key: checked.key, resolve }
      this.identifyWaiters.push(waiter)
    })
    return within(arrival, timeoutMs, false).then((arrived) => {
      this.identifyWaiters = this.identifyWaiters.filter((w) => w !== waiter)
      return arrived
    })
  }

  /** Where the client stands now. */
  status(): ClientStatus {
    const status: ClientStatus = {
      status: this.state,
      source: this.sourceOf(this.data),
      version: this.data === null ? 0 : this.data.version,
      events: this.events.stats(),
    }
    if (this.reason !== undefined) status.reason = this.reason
    return status
  }

  /**
   * Resolves with the status once the first values arrived from the server, the key was
   * refused, the stream was lost with values held (`STALE`), or `timeoutMs` (default 5000)
   * passed (`INITIALIZING`). Bootstrap and cached values are served meanwhile.
   */
  waitForInitialization(timeoutMs = 5000): Promise<Status> {
    try {
      checkTimeout('timeoutMs', timeoutMs)
    } catch (err) {
      return Promise.reject(err)
    }
    if (this.state !== 'INITIALIZING') return Promise.resolve(this.state)
    let done: (() => void) | undefined
    const settled = new Promise<void>((resolve) => {
      done = resolve
      this.statusWaiters.push(resolve)
    })
    return within(settled, timeoutMs, undefined).then(() => {
      this.statusWaiters = this.statusWaiters.filter((w) => w !== done)
      return this.state
    })
  }

  private setStatus(status: Status, reason?: string): void {
    if (this.state === 'CLOSED') return
    const changed = this.state !== status
    this.state = status
    this.reason = reason
    if (status !== 'INITIALIZING') for (const waiter of this.statusWaiters.splice(0)) waiter()
    if (changed) {
      const now = this.status()
      for (const listener of [...this.statusListeners]) {
        try {
          listener(now)
        } catch (err) {
          this.config.logger?.error(`vexil: a status listener threw: ${String(err)}`)
        }
      }
    }
  }

  /**
   * Calls `listener` with the client's status each time it changes (`READY`, `STALE`,
   * `FAILED`, `CLOSED`…); returns a function that removes it. A listener that throws is
   * reported to the logger.
   */
  onStatus(listener: StatusListener): () => void {
    if (typeof listener !== 'function') throw new VexilError('VEXIL_INVALID_ARGUMENT', `listener: expected a function, got ${describe(listener)}`)
    this.statusListeners.push(listener)
    return () => {
      const at = this.statusListeners.lastIndexOf(listener)
      if (at >= 0) this.statusListeners.splice(at, 1)
    }
  }

  /**
   * Calls `listener` after every change of the values served: `'change'` for any flag,
   * `'change:<flag key>'` for one. A listener that throws is reported to the logger; the
   * others still run.
   */
  on(event: ChangeEvent, listener: ChangeListener): this {
    if (typeof event !== 'string' || (event !== 'change' && !event.startsWith('change:'))) {
      throw new VexilError('VEXIL_INVALID_ARGUMENT', `event: expected 'change' or 'change:<flag key>', got ${describe(event)}`)
    }
    if (typeof listener !== 'function') throw new VexilError('VEXIL_INVALID_ARGUMENT', `listener: expected a function, got ${describe(listener)}`)
    const list = this.listeners.get(event)
    if (list === undefined) this.listeners.set(event, [listener])
    else list.push(listener)
    return this
  }

  /** Removes a listener added with `on` (the most recent registration of that function). */
  off(event: ChangeEvent, listener: ChangeListener): this {
    const list = this.listeners.get(event)
    const at = list === undefined ? -1 : list.lastIndexOf(listener)
    if (list !== undefined && at >= 0) {
      list.splice(at, 1)
      if (list.length === 0) this.listeners.delete(event)
    }
    return this
  }

  /** Removes every listener of `event`, or every listener. */
  removeAllListeners(event?: ChangeEvent): this {
    if (event === undefined) this.listeners.clear()
    else this.listeners.delete(event)
    return this
  }

  listenerCount(event: ChangeEvent): number {
    return this.listeners.get(event)?.length ?? 0
  }

  private emit(flagKeys: string[], version: number): void {
    if (flagKeys.length === 0 || this.listeners.size === 0) return
    const call = (listener: ChangeListener, change: FlagChange): void => {
      try {
        listener(change)
      } catch (err) {
        this.config.logger?.error(`vexil: a change listener threw: ${String(err)}`)
      }
    }
    for (const listener of [...(this.listeners.get('change') ?? [])]) call(listener, { flagKeys: [...flagKeys], version })
    for (const key of flagKeys) {
      for (const listener of [...(this.listeners.get(`change:${key}`) ?? [])]) call(listener, { flagKeys: [key], version })
    }
  }

  // ----- data -----------------------------------------------------------------------------

  /** The cached values of `context`, as data, if the cache has them. */
  private cached(context: CheckedContext): Data | null {
    const cached = this.cache?.load(context.key)
    if (cached === undefined) return null
    return {
      values: cached.values,
      context,
      wire: contextToWire(context.context),
      version: cached.version,
      source: 'CACHE',
      receivedAt: cached.savedAt,
    }
  }

  /** Serves `next` from now on, keeps it in the cache when it came from the server, and tells the listeners. */
  private replaceData(next: Data | null, save: boolean): void {
    const before = this.data
    this.data = next
    if (save && next !== null && next.context !== null) {
      this.cache?.save(next.context.context, next.context.key, next.values, next.version, next.receivedAt)
    }
    this.emit(changedKeys(before?.values, next?.values), next === null ? 0 : next.version)
  }

  private applyValues(context: CheckedContext, message: WatchValues): void {
    const values = new Map<string, Held>()
    for (const result of message.results) values.set(result.flagKey, heldFromResult(result))
    this.replaceData(
      {
        values,
        context,
        wire: contextToWire(context.context),
        version: Number(message.environmentVersion),
        source: 'NETWORK',
        receivedAt: Date.now(),
      },
      true,
    )
  }

  private applyChanges(context: CheckedContext, message: WatchChanges): void {
    const held = this.data as Data
    const values = new Map(held.values)
    for (const result of message.updated) values.set(result.flagKey, heldFromResult(result))
    for (const key of message.removed) values.delete(key)
    this.replaceData(
      {
        values,
        context,
        wire: held.wire,
        version: Number(message.environmentVersion),
        source: 'NETWORK',
        receivedAt: Date.now(),
      },
      true,
    )
  }

  private markLive(context: CheckedContext): void {
    this.connected = true
    this.setStatus('READY')
    for (const waiter of this.identifyWaiters.filter((w) => w.key === context.key)) waiter.resolve(true)
    this.identifyWaiters = this.identifyWaiters.filter((w) => w.key !== context.key)
  }

  // ----- the stream -----------------------------------------------------------------------

  /** Watches the identified context until the client closes or the key is refused. */
  private async run(): Promise<void> {
    const backoff = new Backoff(this.config.initialBackoffMs, this.config.maxBackoffMs)
    while (this.closing === undefined) {
      const context = this.current
      if (context === null || this.contextRejected) {
        // Nothing to watch until `identify`.
        await this.pause(Infinity)
        continue
      }
      const started = Date.now()
      const { ended, gotData } = await this.watchOnce(context)
      this.connected = false
      switch (ended.kind) {
        case 'closing':
          return
        case 'identify':
          continue
        case 'refused':
          this.keyRefused = true
          this.config.logger?.error(`vexil: the server refused the SDK key; not retrying (${ended.reason})`)
          this.setStatus('FAILED', ended.reason)
          for (const waiter of this.identifyWaiters.splice(0)) waiter.resolve(false)
          return
        case 'rejected':
          this.contextRejected = true
          this.config.logger?.warn(`vexil: the server refused the context; waiting for identify (${ended.reason})`)
          this.setStatus('FAILED', `the server refused the context: ${ended.reason}`)
          for (const waiter of this.identifyWaiters.splice(0)) waiter.resolve(false)
          continue
        case 'retry':
          if (this.data !== null || gotData) this.setStatus('STALE', ended.reason)
      }
      if (Date.now() - started >= HEALTHY_AFTER_MS) backoff.reset()
      await this.pause(backoff.next())
    }
  }

  /** Waits `ms`, or less if `identify` or `close` wakes the loop. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      const wake = (): void => {
        clearTimeout(timer)
        if (this.wakeUp === wake) this.wakeUp = undefined
        resolve()
      }
      this.wakeUp = wake
      if (ms !== Infinity) timer = setTimeout(wake, ms)
    })
  }

  private async watchOnce(context: CheckedContext): Promise<{ ended: Ended; gotData: boolean }> {
    const controller = new AbortController()
    let why: Ended | undefined
    const stop = (ended: Ended): void => {
      why ??= ended
      controller.abort()
    }
    this.stopStream = stop
    let timer: ReturnType<typeof setTimeout> | undefined
    const arm = (): void => {
      clearTimeout(timer)
      timer = setTimeout(() => stop({ kind: 'retry', reason: `no message for ${this.config.streamTimeoutMs} ms` }), this.config.streamTimeoutMs)
    }
    let gotData = false
    try {
      arm()
      const held = this.data
      const request = WatchRequest.encode({
        context: contextToWire(context.context),
        flagKeys: [],
        version: held !== null && held.context?.key === context.key ? held.version : 0,
      }).finish()
      const url = `${this.config.endpoint}/vexil.v1.EvaluationService/Watch`
      for await (const bytes of call(this.fetch, url, request, { signal: controller.signal, headers: this.headers })) {
        if (why !== undefined) break
        arm()
        let event: WatchResponse['event']
        try {
          event = WatchResponse.decode(bytes).event
        } catch (err) {
          return { ended: { kind: 'retry', reason: `a message that cannot be read: ${(err as Error).message}` }, gotData }
        }
        switch (event?.$case) {
          case 'values':
            this.applyValues(context, event.value)
            gotData = true
            this.markLive(context)
            break
          case 'changes':
            if (!gotData) return { ended: { kind: 'retry', reason: 'changes arrived before values' }, gotData }
            this.applyChanges(context, event.value)
            this.markLive(context)
            break
          case 'heartbeat':
            if (gotData) this.markLive(context)
            break
        }
      }
      return { ended: why ?? { kind: 'retry', reason: 'the server ended the stream' }, gotData }
    } catch (err) {
      return { ended: why ?? classify(err), gotData }
    } finally {
      clearTimeout(timer)
      if (this.stopStream === stop) this.stopStream = undefined
      controller.abort()
    }
  }

  // ----- events ---------------------------------------------------------------------------

  /**
   * Records a metric event for the identified context, with an optional numeric value and
   * extra data (a JSON object, stored with the event). Returns at once; the event is sent in
   * the next batch. Never throws: an event that cannot be sent (no context yet, an empty
   * name, data that is not JSON) is dropped, counted and reported to the logger.
   */
  track(eventName: string, value?: number, data?: Record<string, JsonValue>): void {
    if (!this.config.events.enabled || this.closing !== undefined) return
    const drop = (why: string): void => {
      this.events.discard()
      this.config.logger?.warn(`vexil: track(${describe(eventName)}) dropped: ${why}`)
    }
    if (typeof eventName !== 'string' || eventName.length === 0 || eventName.length > MAX_KEY_LENGTH) {
      return drop(`the name must be a string of 1 to ${MAX_KEY_LENGTH} characters`)
    }
    if (this.current === null) return drop('no context identified yet')
    if (value !== undefined && typeof value !== 'number') return drop(`value: expected a number, got ${describe(value)}`)
    let extra: Record<string, JsonValue> | undefined
    if (data !== undefined) {
      if (typeof data !== 'object' || data === null || Array.isArray(data)) return drop(`data: expected an object, got ${describe(data)}`)
      try {
        extra = jsonValue(data, 'data') as Record<string, JsonValue>
      } catch (err) {
        return drop((err as Error).message)
      }
    }
    // As the Rust client: a value that is not finite is sent as no value.
    this.events.track(eventName, this.current.context, value !== undefined && Number.isFinite(value) ? value : undefined, extra)
  }

  /** Sends every pending event now; resolves whether all were delivered within `timeoutMs` (default 5000). */
  flush(timeoutMs = 5000): Promise<boolean> {
    try {
      checkTimeout('timeoutMs', timeoutMs)
    } catch (err) {
      return Promise.reject(err)
    }
    if (!this.config.events.enabled) return Promise.resolve(true)
    return within(this.events.flush(), timeoutMs, false)
  }

  private async publish(request: PublishRequest, keepalive: boolean): Promise<void> {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(), PUBLISH_TIMEOUT_MS)
    try {
      // The response (how many events were accepted) is not needed: OK means stored once.
      await unary(this.fetch, `${this.config.endpoint}/vexil.v1.EventService/Publish`, PublishRequest.encode(request).finish(), {
        headers: this.headers,
        signal: controller.signal,
        keepalive,
      })
    } finally {
      clearTimeout(timer)
    }
  }

  /** Sends what is pending when the page is hidden or left (best effort, `keepalive`). */
  private attachToPage(): void {
    if (!this.config.events.enabled || !this.config.events.flushOnPageHide) return
    const page = globalThis as unknown as Partial<Pick<EventTarget, 'addEventListener' | 'removeEventListener'>>
    const document = (globalThis as { document?: EventTarget & { visibilityState?: string } }).document
    const onHide = (): void => this.events.flushOnHide()
    const onVisibility = (): void => {
      if (document?.visibilityState === 'hidden') onHide()
    }
    document?.addEventListener('visibilitychange', onVisibility)
    page.addEventListener?.('pagehide', onHide)
    this.detach = () => {
      document?.removeEventListener('visibilitychange', onVisibility)
      page.removeEventListener?.('pagehide', onHide)
    }
  }

  /**
   * Stops the stream, sends pending events (up to 5 s) and releases the listeners; resolves
   * when done. Variation calls keep answering from the last values. Calling it again does
   * nothing more.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing
    this.closing = (async () => {
      this.detach()
      this.events.stop()
      this.setStatus('CLOSED')
      this.connected = false
      this.stopStream?.({ kind: 'closing' })
      this.wakeUp?.()
      for (const waiter of this.identifyWaiters.splice(0)) waiter.resolve(false)
      for (const waiter of this.statusWaiters.splice(0)) waiter()
      this.listeners.clear()
      this.statusListeners.length = 0
      const flushed = this.config.events.enabled ? this.events.flush() : Promise.resolve(true)
      await within(Promise.all([this.loop, flushed]), CLOSE_FLUSH_MS, undefined)
    })()
    return this.closing
  }
}
