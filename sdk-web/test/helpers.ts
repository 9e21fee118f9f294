// In-memory fakes of the server's EvaluationService and EventService behind a Connect router
// transport, a fake localStorage and a fake page, for the unit tests of the client.

import { Code, ConnectError, createRouterTransport } from '@connectrpc/connect'
import type { MessageInitShape } from '@bufbuild/protobuf'
import type { ValueSchema } from '@bufbuild/protobuf/wkt'
import { mock } from 'node:test'
import { EvaluationService } from '../src/gen/vexil/v1/evaluation_pb.js'
import type { WatchRequest, WatchResponseSchema } from '../src/gen/vexil/v1/evaluation_pb.js'
import { EventService } from '../src/gen/vexil/v1/events_pb.js'
import type { PublishRequest } from '../src/gen/vexil/v1/events_pb.js'
import { ErrorKind, ReasonKind } from '../src/gen/vexil/v1/model_pb.js'
import type { EvaluationResultSchema } from '../src/gen/vexil/v1/model_pb.js'
import type { JsonValue, Logger, StorageLike } from '../src/types.js'
import { VexilClient } from '../src/index.js'
import type { VexilOptions } from '../src/index.js'

const live = new Set<VexilClient>()

/**
 * A client the tests close even when an assertion fails half-way: one left running would
 * keep reconnecting on real timers and hold the test process open.
 */
export class TestClient extends VexilClient {
  constructor(sdkKey: string, options?: VexilOptions) {
    super(sdkKey, options)
    live.add(this)
  }
}

/** Closes every client a test made (run after each test, and before fake timers end). */
export async function closeAll(): Promise<void> {
  const clients = [...live]
  live.clear()
  await Promise.all(clients.map((client) => client.close()))
  await settle()
}

export const KEY = 'vxl-client-test-0123456789'
export const ALICE = { kind: 'user', key: 'alice' } as const
export const BOB = { kind: 'user', key: 'bob' } as const

type WatchMessage = MessageInitShape<typeof WatchResponseSchema>
type ResultInit = MessageInitShape<typeof EvaluationResultSchema>

/** Lets every pending promise callback, and the I/O they start in memory, run. */
export async function settle(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve))
}

type ValueInit = MessageInitShape<typeof ValueSchema>

export function valueInit(value: JsonValue): ValueInit {
  if (value === null) return { kind: { case: 'nullValue', value: 0 } }
  switch (typeof value) {
    case 'boolean':
      return { kind: { case: 'boolValue', value } }
    case 'number':
      return { kind: { case: 'numberValue', value } }
    case 'string':
      return { kind: { case: 'stringValue', value } }
  }
  if (Array.isArray(value)) return { kind: { case: 'listValue', value: { values: value.map(valueInit) } } }
  const fields: Record<string, ValueInit> = {}
  for (const [name, item] of Object.entries(value)) fields[name] = valueInit(item)
  return { kind: { case: 'structValue', value: { fields } } }
}

export interface ResultOptions {
  variation?: number
  reason?: 'OFF' | 'TARGET_MATCH' | 'FALLTHROUGH' | { ruleIndex: number; ruleId: string } | { prerequisiteKey: string }
  error?: keyof typeof ErrorKind
  inExperiment?: boolean
  experimentKey?: string
  flagVersion?: number
}

/** An EvaluationResult as the server sends it: a served value, or (`value` undefined) an error. */
export function result(flagKey: string, value: JsonValue | undefined, options: ResultOptions = {}): ResultInit {
  let reason: ResultInit['reason']
  if (options.error !== undefined) reason = { kind: ReasonKind.ERROR, errorKind: ErrorKind[options.error] }
  else if (typeof options.reason === 'object' && 'ruleId' in options.reason) {
    reason = { kind: ReasonKind.RULE_MATCH, ruleIndex: options.reason.ruleIndex, ruleId: options.reason.ruleId }
  } else if (typeof options.reason === 'object') {
    reason = { kind: ReasonKind.PREREQUISITE_FAILED, prerequisiteKey: options.reason.prerequisiteKey }
  } else reason = { kind: ReasonKind[options.reason ?? 'FALLTHROUGH'] }
  const out: ResultInit = {
    flagKey,
    reason,
    inExperiment: options.inExperiment ?? false,
    flagVersion: BigInt(options.flagVersion ?? 1),
    experimentKey: options.experimentKey ?? '',
  }
  if (value !== undefined) {
    out.value = valueInit(value)
    out.variation = options.variation ?? 0
  }
  return out
}

export function values(version: number, ...results: ResultInit[]): WatchMessage {
  return { event: { case: 'values', value: { results, environmentVersion: BigInt(version) } } }
}

export function changes(version: number, updated: ResultInit[], removed: string[] = []): WatchMessage {
  return { event: { case: 'changes', value: { updated, removed, environmentVersion: BigInt(version) } } }
}

export function heartbeat(version: number): WatchMessage {
  return { event: { case: 'heartbeat', value: { environmentVersion: BigInt(version) } } }
}

/** One Watch call the client made, driven by the test. */
export class WatchCall {
  private queue: (WatchMessage | ConnectError | null)[] = []
  private wake: (() => void) | undefined
  cancelled = false

  constructor(
    readonly request: WatchRequest,
    readonly headers: Headers,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener('abort', () => {
      this.cancelled = true
      this.wake?.()
    })
  }

  /** The context the client asked for, as JSON. */
  get context(): unknown {
    const c = this.request.context
    return c === undefined ? undefined : { kind: c.kind, key: c.key, ...(c.attributes ? { attributes: c.attributes } : {}) }
  }

  send(...messages: WatchMessage[]): void {
    this.queue.push(...messages)
    this.wake?.()
  }

  /** Ends the stream normally (the server closed it). */
  end(): void {
    this.queue.push(null)
    this.wake?.()
  }

  fail(code: Code, message = 'failed'): void {
    this.queue.push(new ConnectError(message, code))
    this.wake?.()
  }

  async *messages(): AsyncGenerator<WatchMessage> {
    for (;;) {
      if (this.signal.aborted) return
      const next = this.queue.shift()
      if (next === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve))
        this.wake = undefined
        continue
      }
      if (next === null) return
      if (next instanceof ConnectError) throw next
      yield next
    }
  }
}

export interface PublishCall {
  request: PublishRequest
  headers: Headers
}

/** What a fake Publish answers: nothing (success) or a status code. */
export type PublishAnswer = Code | undefined

export class FakeServer {
  readonly watches: WatchCall[] = []
  readonly publishes: PublishCall[] = []
  /** Answers for the next Publish calls, in order; success once empty. */
  publishAnswers: PublishAnswer[] = []
  /** While set, Publish calls wait for it (a slow network). */
  publishGate: Promise<void> | undefined
  /** Refuses every new Watch with this code, when set. */
  refuseWatch: Code | undefined
  readonly transport = createRouterTransport(({ service }) => {
    service(EvaluationService, {
      watch: (request, context) => {
        if (this.refuseWatch !== undefined) throw new ConnectError('refused', this.refuseWatch)
        const watch = new WatchCall(request, context.requestHeader, context.signal)
        this.watches.push(watch)
        return watch.messages()
      },
    })
    service(EventService, {
      publish: async (request, context) => {
        this.publishes.push({ request, headers: context.requestHeader })
        const answer = this.publishAnswers.shift()
        if (this.publishGate !== undefined) await this.publishGate
        if (answer !== undefined) throw new ConnectError('publish failed', answer)
        return { accepted: request.exposures.length + request.trackEvents.length + request.summaries.length }
      },
    })
  })

  get last(): WatchCall {
    const watch = this.watches.at(-1)
    if (watch === undefined) throw new Error('no Watch call yet')
    return watch
  }

  /** Waits (in memory) until the client has made `count` Watch calls. */
  async watchCount(count: number): Promise<WatchCall> {
    for (let i = 0; i < 200 && this.watches.length < count; i++) await settle(1)
    if (this.watches.length < count) throw new Error(`${this.watches.length} Watch calls, expected ${count}`)
    return this.watches[count - 1]
  }
}

export class MemoryStorage implements StorageLike {
  readonly items = new Map<string, string>()
  getItem(key: string): string | null {
    return this.items.get(key) ?? null
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value)
  }
  removeItem(key: string): void {
    this.items.delete(key)
  }
}

export class MemoryLogger implements Logger {
  readonly warnings: string[] = []
  readonly errors: string[] = []
  warn(message: string): void {
    this.warnings.push(message)
  }
  error(message: string): void {
    this.errors.push(message)
  }
}

/** Fakes `document` (visibility) and the window's `pagehide` for one test. */
export class FakePage {
  readonly document = Object.assign(new EventTarget(), { visibilityState: 'visible' })
  readonly window = new EventTarget()
  private readonly saved: PropertyDescriptor[] = []

  install(): this {
    const g = globalThis as Record<string, unknown>
    this.saved.push(
      Object.getOwnPropertyDescriptor(g, 'document') ?? { value: undefined, configurable: true, writable: true },
      Object.getOwnPropertyDescriptor(g, 'addEventListener') ?? { value: undefined, configurable: true, writable: true },
      Object.getOwnPropertyDescriptor(g, 'removeEventListener') ?? { value: undefined, configurable: true, writable: true },
    )
    Object.defineProperty(g, 'document', { value: this.document, configurable: true, writable: true })
    Object.defineProperty(g, 'addEventListener', { value: this.window.addEventListener.bind(this.window), configurable: true, writable: true })
    Object.defineProperty(g, 'removeEventListener', { value: this.window.removeEventListener.bind(this.window), configurable: true, writable: true })
    return this
  }

  uninstall(): void {
    const g = globalThis as Record<string, unknown>
    const [document, add, remove] = this.saved
    Object.defineProperty(g, 'document', document)
    Object.defineProperty(g, 'addEventListener', add)
    Object.defineProperty(g, 'removeEventListener', remove)
  }

  hide(): void {
    this.document.visibilityState = 'hidden'
    this.document.dispatchEvent(new Event('visibilitychange'))
  }

  leave(): void {
    this.window.dispatchEvent(new Event('pagehide'))
  }
}

/** Fake timers and clock for one test; `Math.random` fixed to `random`. */
export function fakeTime(random = 0.5, now = 1_700_000_000_000): { tick(ms: number): Promise<void>; restore(): Promise<void> } {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now })
  const randomMock = mock.method(Math, 'random', () => random)
  return {
    async tick(ms: number) {
      // Step by step, so that timers set by callbacks of earlier ones fire in order.
      const step = Math.max(1, Math.min(ms, 50))
      await settle(3)
      for (let done = 0; done < ms; done += step) {
        mock.timers.tick(Math.min(step, ms - done))
        await settle(3)
      }
      await settle()
    },
    async restore() {
      await closeAll()
      randomMock.mock.restore()
      mock.timers.reset()
    },
  }
}
