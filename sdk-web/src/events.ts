// The event pipeline: exposures (deduplicated), `track` events and evaluation summaries,
// queued in memory (bounded, drops counted) and published in batches to
// EventService.Publish. A batch keeps its id across every retry, including the last-chance
// send when the page is hidden, so the server stores it once however often it arrives.

import { contextForEvents } from './context.js'
import type { Redaction } from './context.js'
import type { EvaluationCounter, EvaluationSummary, ExposureEvent, PublishRequest, TrackEvent } from './gen/vexil/v1/events.js'
import { Code, GrpcError } from './grpc-web.js'
import type { Context, EventStats, JsonValue, Logger } from './types.js'
import type { Held } from './wire.js'
import { ERROR_KIND_NUMBERS, timestamp } from './wire.js'


/** Sends one batch; rejects when it was not delivered. `keepalive`: the page is going away. */
export type Publish = (request: PublishRequest, keepalive: boolean) => Promise<void>

export interface EventConfig {
  enabled: boolean
  capacity: number
  batchSize: number
  flushIntervalMs: number
  exposureWindowMs: number
  exposureMemory: number
  summaries: boolean
  attempts: number
  flushOnPageHide: boolean
  /** The private attributes, removed from every context before an event is queued. */
  redaction: Redaction
}

/** A batch built once and sent, with the same id, until delivered or refused. */
interface Batch {
  readonly request: PublishRequest
  readonly events: number
  /** Delivered or refused: nothing more to do, whichever send finished first. */
  done: boolean
  /** Sends going on now; the batch goes back to the pending list when the last one fails. */
  holders: number
  /** A `keepalive` send of it is going on (the page is being left): no need for another. */
  keptAlive: boolean
}

type Queued = { exposure: ExposureEvent; track?: undefined } | { track: TrackEvent; exposure?: undefined }

interface ErrorCount {
  flagKey: string
  flagVersion: number
  errorKind: number
  count: number
}

/** Statuses for which sending the same batch again cannot succeed. */
const REFUSED = new Set<number>([Code.InvalidArgument, Code.Unauthenticated, Code.PermissionDenied])

/** Longest flag key or event name the server accepts. */
export const MAX_KEY_LENGTH = 256

function batchId(): string {
  const bytes = new Uint8Array(16)
  const crypto = globalThis.crypto
  if (crypto !== undefined && typeof crypto.getRandomValues === 'function') {
    crypto.getRandomValues(bytes)
  } else {
    // Without a secure generator, ids need only be unique, not unguessable.
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256)
  }
  let id = ''
  for (const byte of bytes) id += byte.toString(16).padStart(2, '0')
  return id
}

export class EventPipeline {
  /** Values that served evaluations since the last batch (their `count` is above 0). */
  readonly counted: Held[] = []
  private readonly errors = new Map<string, ErrorCount>()
  private summaryStart: number
  private queue: Queued[] = []
  /** Built batches not delivered yet, sent again (same id) before anything new. */
  private pending: Batch[] = []
  private readonly active = new Set<Batch>()
  private readonly exposures = new Map<string, number>()
  private running: Promise<boolean> = Promise.resolve(true)
  private busy = false
  private timer: ReturnType<typeof setTimeout> | undefined
  private stopped = false
  private dropped = 0
  private sent = 0
  private failedBatches = 0

  constructor(
    readonly config: EventConfig,
    private readonly sdk: { name: string; version: string },
    private readonly publish: Publish,
    private readonly logger: Logger | null,
  ) {
    this.summaryStart = Date.now()
  }

  /** Starts the periodic flush. */
  start(): void {
    if (!this.config.enabled || this.stopped) return
    this.schedule()
  }

  private schedule(): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.flush().finally(() => {
        if (!this.stopped) this.schedule()
      })
    }, this.config.flushIntervalMs)
  }

  /** Stops the periodic flush; `flush` still sends what is pending. */
  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
  }

  stats(): EventStats {
    return {
      dropped: this.dropped,
      sent: this.sent,
      failedBatches: this.failedBatches,
      queued: this.held(),
    }
  }

  private held(): number {
    let held = this.queue.length
    for (const batch of this.pending) held += batch.events
    return held
  }

  /** Counts an evaluation that could not be served from a held value. */
  countError(flagKey: string, flagVersion: number, errorKind: number): void {
    if (!this.config.enabled || !this.config.summaries) return
    if (flagKey.length === 0 || flagKey.length > MAX_KEY_LENGTH) return
    const key = `${flagKey}\u0000${flagVersion}\u0000${errorKind}`
    const known = this.errors.get(key)
    if (known !== undefined) known.count++
    else this.errors.set(key, { flagKey, flagVersion, errorKind, count: 1 })
  }

  private push(event: Queued): void {
    if (!this.config.enabled) return
    if (this.held() >= this.config.capacity) {
      this.dropped++
      return
    }
    this.queue.push(event)
    if (this.queue.length >= this.config.batchSize && !this.busy && !this.stopped) void this.flush()
  }

  /**
   * Queues an exposure of `held` for the context whose kinds and keys are `units`, unless the
   * same context saw the same variation of the flag within the window.
   */
  expose(held: Held, units: string, context: Context): void {
    if (!this.config.enabled || held.experimentKey === null || held.variation === null) return
    const now = Date.now()
    // The common case, a value evaluated again for the same context: no lookup at all.
    if (held.exposedTo === units && now - held.exposedAt < this.config.exposureWindowMs) return
    const fingerprint = `${units}\u0002${held.flagKey}\u0002${held.variation}`
    const seen = this.exposures.get(fingerprint)
    if (seen !== undefined && now - seen < this.config.exposureWindowMs) {
      held.exposedTo = units
      held.exposedAt = seen
      return
    }
    // Setting a known key keeps its place, so the oldest first sight is forgotten first.
    this.exposures.set(fingerprint, now)
    while (this.exposures.size > this.config.exposureMemory) {
      const oldest = this.exposures.keys().next().value as string
      this.exposures.delete(oldest)
    }
    held.exposedTo = units
    held.exposedAt = now
    this.push({
      exposure: {
        time: timestamp(now),
        flagKey: held.flagKey,
        flagVersion: held.flagVersion,
        experimentKey: held.experimentKey,
        variation: held.variation,
        context: contextForEvents(context, this.config.redaction),
        inExperiment: held.inExperiment,
      },
    })
  }

  /** Counts an event the caller gave that cannot be sent. */
  discard(): void {
    this.dropped++
  }

  track(name: string, context: Context, value: number | undefined, data: Record<string, JsonValue> | undefined): void {
    const event: TrackEvent = { time: timestamp(Date.now()), name, context: contextForEvents(context, this.config.redaction) }
    if (value !== undefined) event.value = value
    if (data !== undefined) event.data = data
    this.push({ track: event })
  }

  /** Counters since the last batch, as summaries (one per flag). */
  private drainSummaries(): EvaluationSummary[] {
    const start = this.summaryStart
    const end = Date.now()
    this.summaryStart = end
    const byFlag = new Map<string, Map<string, EvaluationCounter>>()
    const add = (flagKey: string, flagVersion: number, variation: number | null, errorKind: number, count: number): void => {
      let counters = byFlag.get(flagKey)
      if (counters === undefined) byFlag.set(flagKey, (counters = new Map()))
      const outcome = `${flagVersion}\u0000${variation}\u0000${errorKind}`
      const known = counters.get(outcome)
      if (known !== undefined) {
        known.count += count
        return
      }
      const counter: EvaluationCounter = { flagVersion, errorKind, count }
      if (variation !== null) counter.variation = variation
      counters.set(outcome, counter)
    }
    for (const held of this.counted) {
      // A value served without a variation came from a bootstrap that did not say which:
      // counted, it would read as "the default was returned".
      const known = held.value === undefined || held.variation !== null
      if (known && held.flagKey.length > 0 && held.flagKey.length <= MAX_KEY_LENGTH) {
        const errorKind = held.value === undefined ? ERROR_KIND_NUMBERS[held.reason.errorKind ?? 'MALFORMED_FLAG'] : 0
        add(held.flagKey, held.flagVersion, held.variation, errorKind, held.count)
      }
      held.count = 0
    }
    this.counted.length = 0
    for (const error of this.errors.values()) add(error.flagKey, error.flagVersion, null, error.errorKind, error.count)
    this.errors.clear()
    const summaries: EvaluationSummary[] = []
    for (const flagKey of [...byFlag.keys()].sort()) {
      summaries.push({
        start: timestamp(start),
        end: timestamp(end),
        flagKey,
        counters: [...(byFlag.get(flagKey) as Map<string, EvaluationCounter>).values()],
      })
    }
    return summaries
  }

  /** The next batch to send: one kept from a failed send, else a new one, else none. */
  private nextBatch(): Batch | undefined {
    const kept = this.pending.shift()
    if (kept !== undefined) return kept
    const events = this.queue.splice(0, this.config.batchSize)
    const summaries = this.config.summaries ? this.drainSummaries() : []
    if (events.length === 0 && summaries.length === 0) return undefined
    const request: PublishRequest = {
      batchId: batchId(),
      sdkName: this.sdk.name,
      sdkVersion: this.sdk.version,
      exposures: [],
      trackEvents: [],
      summaries,
    }
    for (const event of events) {
      if (event.exposure !== undefined) request.exposures.push(event.exposure)
      else request.trackEvents.push(event.track)
    }
    return { request, events: events.length + summaries.length, done: false, holders: 0, keptAlive: false }
  }

  /** One send of `batch`: whether it is settled (delivered, or refused and dropped). */
  private async sendOnce(batch: Batch, keepalive: boolean): Promise<boolean> {
    try {
      await this.publish(batch.request, keepalive)
      if (!batch.done) {
        batch.done = true
        this.sent += batch.events
      }
      return true
    } catch (err) {
      if (err instanceof GrpcError && REFUSED.has(err.code)) {
        if (!batch.done) {
          batch.done = true
          this.dropped += batch.events
          this.logger?.warn(`vexil: the server refused a batch of ${batch.events} events; dropped (${err.message})`)
        }
        return true
      }
      return batch.done
    }
  }

  private hold(batch: Batch): void {
    batch.holders++
    this.active.add(batch)
  }

  /** Ends one send of `batch`; the last one to end puts an unsettled batch back in front. */
  private release(batch: Batch): void {
    batch.holders--
    if (batch.holders > 0) return
    this.active.delete(batch)
    if (!batch.done && !this.pending.includes(batch)) this.pending.unshift(batch)
  }

  /** Sends `batch` with up to `attempts` tries, 200 ms apart and doubling; whether it settled. */
  private async send(batch: Batch): Promise<boolean> {
    this.hold(batch)
    try {
      let delay = 200
      for (let attempt = 0; attempt < Math.max(1, this.config.attempts); attempt++) {
        if (attempt > 0) {
          await new Promise((resolve) => setTimeout(resolve, delay))
          delay *= 2
        }
        if (await this.sendOnce(batch, false)) return true
      }
      this.failedBatches++
      return false
    } finally {
      this.release(batch)
    }
  }

  private async sendAll(): Promise<boolean> {
    for (;;) {
      const batch = this.nextBatch()
      if (batch === undefined) return true
      if (!(await this.send(batch))) return false
    }
  }

  /**
   * Sends everything pending; resolves whether all of it was delivered. Flushes run one at a
   * time: one asked for during another runs after it, and sends what was queued meanwhile.
   */
  flush(): Promise<boolean> {
    if (!this.config.enabled) return Promise.resolve(true)
    const run = this.running.then(async () => {
      this.busy = true
      try {
        return await this.sendAll()
      } finally {
        this.busy = false
      }
    })
    this.running = run.catch(() => false)
    return run
  }

  /**
   * The page is being hidden or left: start sending everything at once with `keepalive`
   * requests, which the browser completes after the page is gone. Batches being sent by a
   * flush are sent again too (same id: the server stores them once), since the page may not
   * live to see their answer. Best effort: a failure keeps the batch for a later flush.
   */
  flushOnHide(): void {
    if (!this.config.enabled || !this.config.flushOnPageHide) return
    const batches = [...this.active].filter((batch) => !batch.done && !batch.keptAlive)
    for (let batch = this.pending.shift(); batch !== undefined; batch = this.pending.shift()) batches.push(batch)
    for (let batch = this.nextBatch(); batch !== undefined; batch = this.nextBatch()) batches.push(batch)
    for (const batch of batches) {
      this.hold(batch)
      batch.keptAlive = true
      void this.sendOnce(batch, true).finally(() => {
        batch.keptAlive = false
        this.release(batch)
      })
    }
  }
}
