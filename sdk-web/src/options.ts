// The client's options, checked once at construction: a mistake there is the caller's and is
// thrown with the option's name, so that it is found at the first page load, not in a
// flag that silently serves its default.

import { checkContext, parseReference } from './context.js'
import type { CheckedContext } from './context.js'
import type { EventConfig } from './events.js'
import { describe, VexilError } from './errors.js'
import type { Bootstrap, Context, EventOptions, Logger, StorageLike } from './types.js'

/** Options of `new VexilClient(sdkKey, options)`. Every field is optional. */
export interface VexilOptions {
  /**
   * The server's gRPC-web address (default `http://127.0.0.1:50051`): `http://` or
   * `https://`, with a path prefix if a proxy serves it under one.
   */
  endpoint?: string
  /** The context whose values are watched first; without one, nothing is watched until `identify`. */
  context?: Context
  /**
   * Values to serve until the stream answers, for the first context (see `Bootstrap`): what
   * server-side rendering evaluated for this page. They take precedence over the cache,
   * being newer than any earlier visit's values.
   */
  bootstrap?: Bootstrap
  /** No network at all: bootstrap, cache or defaults; no events are sent. */
  offline?: boolean
  /**
   * Where the last values of each context are kept for the next page load (default
   * `window.localStorage` when the page may use it); `null` keeps nothing.
   */
  storage?: StorageLike | null
  /** Cached values older than this are reported `STALE` (default 7 days). */
  maxCacheAgeMs?: number
  /** A stream with no message (not even a heartbeat) for this long is reconnected (default 60000). */
  streamTimeoutMs?: number
  /** The first reconnection delay's upper bound, doubling up to `maxBackoffMs` (default 1000). */
  initialBackoffMs?: number
  /** The longest reconnection delay (default 30000). */
  maxBackoffMs?: number
  events?: EventOptions
  /**
   * The `fetch` the gRPC-web calls go through (default `globalThis.fetch`): to add headers a
   * proxy needs, or to observe the calls in tests.
   */
  fetch?: (input: string, init: RequestInit) => Promise<Response>
  /** Where problems are reported (default `console`); `null`: nowhere. */
  logger?: Logger | null
}

export interface Config {
  sdkKey: string
  endpoint: string
  context: CheckedContext | null
  bootstrap: Bootstrap | undefined
  offline: boolean
  storage: StorageLike | null
  maxCacheAgeMs: number
  streamTimeoutMs: number
  initialBackoffMs: number
  maxBackoffMs: number
  events: EventConfig
  fetch: ((input: string, init: RequestInit) => Promise<Response>) | undefined
  logger: Logger | null
}

const DAY_MS = 24 * 3600 * 1000

function invalid(path: string, expected: string, value: unknown): VexilError {
  return new VexilError('VEXIL_INVALID_ARGUMENT', `${path}: expected ${expected}, got ${describe(value)}`)
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function knownFields(path: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const name of Object.keys(value)) {
    if (!known.includes(name)) {
      throw new VexilError('VEXIL_INVALID_ARGUMENT', `${path}.${name}: unknown option (known: ${known.join(', ')})`)
    }
  }
}

function wholeNumber(path: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw invalid(path, `a whole number of at least ${min}`, value)
  }
  return value
}

function flag(path: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw invalid(path, 'true or false', value)
  return value
}

function checkKey(sdkKey: unknown): string {
  if (typeof sdkKey !== 'string') {
    throw new VexilError('VEXIL_INVALID_KEY', `sdkKey: expected a client key (vxl-client-…), got ${typeof sdkKey}`)
  }
  if (sdkKey.startsWith('vxl-server-')) {
    throw new VexilError(
      'VEXIL_INVALID_KEY',
      'sdkKey: a server key can read every flag\'s rules and must never reach a browser; use the environment\'s client key (vxl-client-…)',
    )
  }
  const prefix = ['vxl-client-', 'vxl-mobile-'].find((p) => sdkKey.startsWith(p))
  if (prefix === undefined || sdkKey.length === prefix.length) {
    throw new VexilError('VEXIL_INVALID_KEY', 'sdkKey: a client key starts with vxl-client- (or vxl-mobile-)')
  }
  return sdkKey
}

function checkEndpoint(value: unknown): string {
  if (value === undefined) return 'http://127.0.0.1:50051'
  if (typeof value !== 'string') {
    throw new VexilError('VEXIL_INVALID_ENDPOINT', `options.endpoint: expected a string, got ${describe(value)}`)
  }
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new VexilError('VEXIL_INVALID_ENDPOINT', `options.endpoint: ${describe(value)} is not an absolute URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new VexilError('VEXIL_INVALID_ENDPOINT', `options.endpoint: must start with http:// or https://, got ${describe(value)}`)
  }
  if (url.search !== '' || url.hash !== '') {
    throw new VexilError('VEXIL_INVALID_ENDPOINT', `options.endpoint: must not have a query or fragment, got ${describe(value)}`)
  }
  return value.replace(/\/+$/, '')
}

function defaultStorage(): StorageLike | null {
  try {
    // Reading localStorage throws where the page may not use it (sandboxed frames, some
    // privacy settings), and is missing outside browsers.
    const storage = (globalThis as { localStorage?: StorageLike }).localStorage
    return storage ?? null
  } catch {
    return null
  }
}

function checkStorage(value: unknown): StorageLike | null {
  if (value === undefined) return defaultStorage()
  if (value === null) return null
  if (!isRecord(value) || ['getItem', 'setItem', 'removeItem'].some((m) => typeof value[m] !== 'function')) {
    throw invalid('options.storage', 'null or an object with getItem, setItem and removeItem', value)
  }
  return value as unknown as StorageLike
}

function checkLogger(value: unknown): Logger | null {
  if (value === undefined) return typeof console === 'undefined' ? null : console
  if (value === null) return null
  if (!isRecord(value) && typeof value !== 'function') throw invalid('options.logger', 'null or an object with warn and error', value)
  const logger = value as Record<string, unknown>
  if (typeof logger.warn !== 'function' || typeof logger.error !== 'function') {
    throw invalid('options.logger', 'null or an object with warn and error', value)
  }
  return value as unknown as Logger
}

const EVENT_OPTIONS = [
  'enabled',
  'capacity',
  'batchSize',
  'flushIntervalMs',
  'exposureWindowMs',
  'exposureMemory',
  'summaries',
  'attempts',
  'flushOnPageHide',
  'privateAttributes',
  'allAttributesPrivate',
] as const

function checkEvents(value: unknown, offline: boolean): EventConfig {
  const events = value === undefined ? {} : value
  if (!isRecord(events)) throw invalid('options.events', 'an object', value)
  knownFields('options.events', events, EVENT_OPTIONS)
  return {
    enabled: flag('options.events.enabled', events.enabled, true) && !offline,
    capacity: wholeNumber('options.events.capacity', events.capacity, 10_000, 1),
    batchSize: wholeNumber('options.events.batchSize', events.batchSize, 500, 1),
    flushIntervalMs: wholeNumber('options.events.flushIntervalMs', events.flushIntervalMs, 5000, 10),
    exposureWindowMs: wholeNumber('options.events.exposureWindowMs', events.exposureWindowMs, 3600_000, 0),
    exposureMemory: wholeNumber('options.events.exposureMemory', events.exposureMemory, 10_000, 1),
    summaries: flag('options.events.summaries', events.summaries, true),
    attempts: wholeNumber('options.events.attempts', events.attempts, 3, 1),
    flushOnPageHide: flag('options.events.flushOnPageHide', events.flushOnPageHide, true),
    redaction: {
      all: flag('options.events.allAttributesPrivate', events.allAttributesPrivate, false),
      references: references('options.events.privateAttributes', events.privateAttributes),
    },
  }
}

function references(field: string, value: unknown): string[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw invalid(field, 'an array of attribute references', value)
  return value.map((reference: unknown, i: number) => {
    if (typeof reference !== 'string' || parseReference(reference) === null) {
      throw invalid(`${field}[${i}]`, 'an attribute reference (a name, or a JSON Pointer such as "/address/street")', reference)
    }
    return reference
  })
}

function checkBootstrap(value: unknown): Bootstrap | undefined {
  if (value === undefined || value === null) return undefined
  if (!isRecord(value)) throw invalid('options.bootstrap', 'an object of flag key to value or detail', value)
  return value as Bootstrap
}

const OPTIONS = [
  'endpoint',
  'context',
  'bootstrap',
  'offline',
  'storage',
  'maxCacheAgeMs',
  'streamTimeoutMs',
  'initialBackoffMs',
  'maxBackoffMs',
  'events',
  'fetch',
  'logger',
] as const

/** Checks the key and options; throws a `VexilError` naming the first problem. */
export function readConfig(sdkKey: unknown, options: unknown): Config {
  const key = checkKey(sdkKey)
  const given = options === undefined ? {} : options
  if (!isRecord(given)) throw invalid('options', 'an object', options)
  knownFields('options', given, OPTIONS)
  const offline = flag('options.offline', given.offline, false)
  const initialBackoffMs = wholeNumber('options.initialBackoffMs', given.initialBackoffMs, 1000, 1)
  if (given.fetch !== undefined && typeof given.fetch !== 'function') throw invalid('options.fetch', 'a function', given.fetch)
  return {
    sdkKey: key,
    endpoint: checkEndpoint(given.endpoint),
    context: given.context === undefined || given.context === null ? null : checkContext(given.context, 'options.context'),
    bootstrap: checkBootstrap(given.bootstrap),
    offline,
    storage: checkStorage(given.storage),
    maxCacheAgeMs: wholeNumber('options.maxCacheAgeMs', given.maxCacheAgeMs, 7 * DAY_MS, 0),
    streamTimeoutMs: wholeNumber('options.streamTimeoutMs', given.streamTimeoutMs, 60_000, 1),
    initialBackoffMs,
    maxBackoffMs: wholeNumber('options.maxBackoffMs', given.maxBackoffMs, 30_000, initialBackoffMs),
    events: checkEvents(given.events, offline),
    fetch: given.fetch as Config['fetch'],
    logger: checkLogger(given.logger),
  }
}
