// In-memory fakes of the server's EvaluationService and EventService behind a fake
// `fetch` that speaks gRPC-web (length-prefixed frames, the status in a trailer frame), a
// fake localStorage and a fake page, for the unit tests of the client.

import assert from 'node:assert/strict'
import { mock } from 'node:test'
import { WatchRequest, WatchResponse } from '../src/gen/vexil/v1/evaluation.js'
import { PublishRequest, PublishResponse } from '../src/gen/vexil/v1/events.js'
import { ErrorKind, ReasonKind } from '../src/gen/vexil/v1/model.js'
import type { EvaluationResult, Reason } from '../src/gen/vexil/v1/model.js'
import { Code } from '../src/grpc-web.js'
import type { JsonValue, Logger, StorageLike } from '../src/types.js'
import { VexilClient } from '../src/index.js'
import type { VexilOptions } from '../src/index.js'

export { Code }

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

type WatchMessage = WatchResponse

/** Lets every pending promise callback, and the I/O they start in memory, run. */
export async function settle(rounds = 30): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve))
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
export function result(flagKey: string, value: JsonValue | undefined, options: ResultOptions = {}): EvaluationResult {
  const reason: Reason = { kind: ReasonKind.FALLTHROUGH, ruleIndex: undefined, ruleId: '', prerequisiteKey: '', errorKind: ErrorKind.UNSPECIFIED }
  if (options.error !== undefined) Object.assign(reason, { kind: ReasonKind.ERROR, errorKind: ErrorKind[options.error] })
  else if (typeof options.reason === 'object' && 'ruleId' in options.reason) {
    Object.assign(reason, { kind: ReasonKind.RULE_MATCH, ruleIndex: options.reason.ruleIndex, ruleId: options.reason.ruleId })
  } else if (typeof options.reason === 'object') {
    Object.assign(reason, { kind: ReasonKind.PREREQUISITE_FAILED, prerequisiteKey: options.reason.prerequisiteKey })
  } else reason.kind = ReasonKind[options.reason ?? 'FALLTHROUGH']
  return {
    flagKey,
    value,
    variation: value === undefined ? undefined : (options.variation ?? 0),
    reason,
    inExperiment: options.inExperiment ?? false,
    flagVersion: options.flagVersion ?? 1,
    experimentKey: options.experimentKey ?? '',
  }
}

export function values(version: number, ...results: EvaluationResult[]): WatchMessage {
  return { event: { $case: 'values', value: { results, environmentVersion: version } } }
}

export function changes(version: number, updated: EvaluationResult[], removed: string[] = []): WatchMessage {
  return { event: { $case: 'changes', value: { updated, removed, environmentVersion: version } } }
}

export function heartbeat(version: number): WatchMessage {
  return { event: { $case: 'heartbeat', value: { environmentVersion: version, serverTime: undefined } } }
}

// ----- gRPC-web framing, written here from the protocol (not with the SDK's reader) ---------

export function frame(flags: number, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + payload.length)
  out[0] = flags
  new DataView(out.buffer).setUint32(1, payload.length)
  out.set(payload, 5)
  return out
}

/** A trailer frame carrying a status (its message percent-encoded, as gRPC sends it). */
export function trailer(status: number, text = ''): Uint8Array<ArrayBuffer> {
  return frame(0x80, new TextEncoder().encode(`grpc-status: ${status}\r\ngrpc-message: ${encodeURIComponent(text)}\r\n`))
}

export function grpcWebHeaders(extra: Record<string, string> = {}): Headers {
  return new Headers({ 'content-type': 'application/grpc-web+proto', ...extra })
}

/** The one message of a gRPC-web request body. */
export async function requestMessage(init: RequestInit): Promise<Uint8Array> {
  const body = new Uint8Array(await new Response(init.body).arrayBuffer())
  assert.equal(body[0], 0, 'an uncompressed data frame')
  const length = new DataView(body.buffer, body.byteOffset).getUint32(1)
  assert.equal(body.length, 5 + length, 'one frame')
  return body.subarray(5, 5 + length)
}

/** One Watch call the client made, driven by the test. */
export class WatchCall {
  private controller: ReadableStreamDefaultController<Uint8Array> | undefined
  private finished = false
  cancelled = false
  readonly body: ReadableStream<Uint8Array>

  constructor(
    readonly request: WatchRequest,
    readonly headers: Headers,
    signal: AbortSignal | undefined,
  ) {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller
      },
      cancel: () => {
        this.cancelled = true
      },
    })
    signal?.addEventListener('abort', () => {
      this.cancelled = true
      this.close((controller) => controller.error(new DOMException('The operation was aborted.', 'AbortError')))
    })
  }

  /** The context the client asked for, as JSON. */
  get context(): unknown {
    const c = this.request.context
    return c === undefined ? undefined : { kind: c.kind, key: c.key, ...(c.attributes ? { attributes: c.attributes } : {}) }
  }

  send(...messages: WatchMessage[]): void {
    for (const message of messages) {
      if (!this.finished) this.controller?.enqueue(frame(0, WatchResponse.encode(message).finish()))
    }
  }

  /** Ends the stream normally (the server closed it). */
  end(): void {
    this.close((controller) => {
      controller.enqueue(trailer(0))
      controller.close()
    })
  }

  fail(code: number, message = 'failed'): void {
    this.close((controller) => {
      controller.enqueue(trailer(code, message))
      controller.close()
    })
  }

  private close(how: (controller: ReadableStreamDefaultController<Uint8Array>) => void): void {
    if (this.finished || this.controller === undefined) return
    this.finished = true
    how(this.controller)
  }
}

export interface PublishCall {
  request: PublishRequest
  headers: Headers
  keepalive: boolean
}

/** What a fake Publish answers: nothing (success) or a status code. */
export type PublishAnswer = number | undefined

export class FakeServer {
  readonly watches: WatchCall[] = []
  readonly publishes: PublishCall[] = []
  /** Answers for the next Publish calls, in order; success once empty. */
  publishAnswers: PublishAnswer[] = []
  /** While set, Publish calls wait for it (a slow network). */
  publishGate: Promise<void> | undefined
  /** Refuses every new Watch with this code, when set. */
  refuseWatch: number | undefined

  /** The client's `fetch`: gRPC-web to the fake services. */
  readonly fetch = async (url: string, init: RequestInit): Promise<Response> => {
    const headers = new Headers(init.headers)
    assert.equal(headers.get('content-type'), 'application/grpc-web+proto')
    const message = await requestMessage(init)
    // As fetch does: a call aborted before its response arrives rejects.
    if (init.signal?.aborted === true) throw new DOMException('The operation was aborted.', 'AbortError')
    if (url.endsWith('/vexil.v1.EvaluationService/Watch')) {
      if (this.refuseWatch !== undefined) {
        // Trailers-only: the status in the response headers, no body.
        return new Response(null, { status: 200, headers: grpcWebHeaders({ 'grpc-status': String(this.refuseWatch), 'grpc-message': 'refused' }) })
      }
      const watch = new WatchCall(WatchRequest.decode(message), headers, init.signal ?? undefined)
      this.watches.push(watch)
      return new Response(watch.body, { status: 200, headers: grpcWebHeaders() })
    }
    if (url.endsWith('/vexil.v1.EventService/Publish')) {
      const request = PublishRequest.decode(message)
      this.publishes.push({ request, headers, keepalive: init.keepalive === true })
      const answer = this.publishAnswers.shift()
      if (this.publishGate !== undefined) await this.publishGate
      if (answer !== undefined) return new Response(trailer(answer, 'publish failed'), { status: 200, headers: grpcWebHeaders() })
      const accepted = request.exposures.length + request.trackEvents.length + request.summaries.length
      const body = new Uint8Array([...frame(0, PublishResponse.encode({ accepted, duplicate: false }).finish()), ...trailer(0)])
      return new Response(body, { status: 200, headers: grpcWebHeaders() })
    }
    return new Response(null, { status: 404 })
  }

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

/**
 * A client of `server` for alice: no storage, logger or events unless `options` gives them
 * (the tests of one feature turn on the others they need).
 */
export function serverClient(server: FakeServer, options: VexilOptions = {}): VexilClient {
  return new TestClient(KEY, {
    fetch: server.fetch,
    context: ALICE,
    storage: null,
    logger: null,
    events: { enabled: false },
    ...options,
  })
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

/** Runs `body` with a fake page installed, uninstalled after it whatever happens. */
export async function withFakePage(body: (page: FakePage) => Promise<void>): Promise<void> {
  const page = new FakePage().install()
  try {
    await body(page)
  } finally {
    page.uninstall()
  }
}

export interface FakeTime {
  tick(ms: number): Promise<void>
  restore(): Promise<void>
}

/** Fake timers and clock for one test; `Math.random` fixed to `random`. */
export function fakeTime(random = 0.5, now = 1_700_000_000_000): FakeTime {
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

/** Runs `body` with fake timers and clock (see fakeTime), restored after it whatever happens. */
export async function withFakeTime(body: (time: FakeTime) => Promise<void>): Promise<void> {
  const time = fakeTime()
  try {
    await body(time)
  } finally {
    await time.restore()
  }
}
