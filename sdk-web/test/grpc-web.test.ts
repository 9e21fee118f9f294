// The default transport as a browser runs it: gRPC-web over `fetch`, spoken by a fake
// server written from the protocol (length-prefixed frames, trailers in the body).

import assert from 'node:assert/strict'
import { afterEach, describe, test } from 'node:test'
import { WatchRequest, WatchResponse } from '../src/gen/vexil/v1/evaluation.js'
import { PublishRequest, PublishResponse } from '../src/gen/vexil/v1/events.js'
import { call, Code, GrpcError, unary } from '../src/grpc-web.js'
import type { CallOptions } from '../src/grpc-web.js'
import {
  ALICE,
  closeAll,
  frame,
  grpcWebHeaders,
  KEY,
  requestMessage,
  result,
  settle,
  TestClient,
  trailer,
  values,
  withFakePage,
} from './helpers.js'

afterEach(closeAll)

interface Call {
  url: string
  init: RequestInit
  headers: Headers
  /** For a Watch: pushes frames to the open response. */
  push?: (bytes: Uint8Array) => void
}

/** A fake server behind `fetch`: Watch streams stay open for the test to push to; Publish succeeds. */
function fakeFetch(calls: Call[], refuseWatch?: number): (url: string, init: RequestInit) => Promise<Response> {
  return async (url, init) => {
    const call: Call = { url, init, headers: new Headers(init.headers) }
    calls.push(call)
    if (url.endsWith('/vexil.v1.EvaluationService/Watch')) {
      if (refuseWatch !== undefined) {
        return new Response(null, { status: 200, headers: grpcWebHeaders({ 'grpc-status': String(refuseWatch), 'grpc-message': 'unknown%20key' }) })
      }
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          call.push = (bytes) => controller.enqueue(bytes)
          init.signal?.addEventListener('abort', () => controller.error(new DOMException('aborted', 'AbortError')))
        },
      })
      return new Response(body, { status: 200, headers: grpcWebHeaders() })
    }
    if (url.endsWith('/vexil.v1.EventService/Publish')) {
      const bytes = new Uint8Array([...frame(0, PublishResponse.encode({ accepted: 1, duplicate: false }).finish()), ...trailer(0)])
      return new Response(bytes, { status: 200, headers: grpcWebHeaders() })
    }
    return new Response(null, { status: 404 })
  }
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await settle(1)
  assert.ok(check(), `timed out waiting for ${what}`)
}

describe('gRPC-web over fetch', () => {
  test('Watch and Publish go to the endpoint with the gRPC-web headers, and page hide publishes with keepalive', async () => {
    await withFakePage(async (page) => {
      const calls: Call[] = []
      const client = new TestClient(KEY, {
        endpoint: 'http://flags.test:8080/vexil/',
        fetch: fakeFetch(calls),
        context: { kind: 'user', key: 'alice', attributes: { plan: 'pro' } },
        storage: null,
        logger: null,
        events: { flushIntervalMs: 3_600_000 },
      })
      await waitFor(() => calls[0]?.push !== undefined, 'the Watch call')
      const watch = calls[0]
      assert.equal(watch.url, 'http://flags.test:8080/vexil/vexil.v1.EvaluationService/Watch')
      assert.equal(watch.init.method, 'POST')
      assert.equal(watch.headers.get('content-type'), 'application/grpc-web+proto')
      assert.equal(watch.headers.get('x-grpc-web'), '1')
      assert.equal(watch.headers.get('authorization'), `Bearer ${KEY}`)
      assert.equal(watch.headers.get('x-user-agent'), 'vexil-web/0.1.0')
      assert.equal(watch.headers.get('grpc-timeout'), null, 'no header a CORS policy would also have to allow')
      assert.notEqual(watch.init.keepalive, true)
      const request = WatchRequest.decode(await requestMessage(watch.init))
      assert.equal(request.context?.key, 'alice')
      assert.deepEqual(request.context?.attributes, { plan: 'pro' })

      watch.push?.(frame(0, WatchResponse.encode(values(3, result('checkout', true, { variation: 1 }), result('layout', { a: [1, 'b'] }))).finish()))
      assert.equal(await client.waitForInitialization(1000), 'READY')
      assert.equal(client.boolVariation('checkout', false), true)
      assert.deepEqual(client.jsonVariation('layout', null), { a: [1, 'b'] })

      client.track('purchase', 3)
      assert.equal(await client.flush(), true)
      const publish = calls[1]
      assert.equal(publish.url, 'http://flags.test:8080/vexil/vexil.v1.EventService/Publish')
      assert.notEqual(publish.init.keepalive, true)
      const batch = PublishRequest.decode(await requestMessage(publish.init))
      assert.deepEqual(batch.trackEvents.map((e) => [e.name, e.value]), [['purchase', 3]])

      client.track('leaving')
      page.hide()
      await waitFor(() => calls.length === 3, 'the last-chance publish')
      assert.equal(calls[2].init.keepalive, true, 'fetch with keepalive outlives the page')
      const last = PublishRequest.decode(await requestMessage(calls[2].init))
      assert.deepEqual(last.trackEvents.map((e) => e.name), ['leaving'])
      await client.close()
      assert.equal((watch.init.signal as AbortSignal).aborted, true, 'close cancels the fetch of the stream')
    })
  })

  test('a status in the response headers (trailers-only) is read: UNAUTHENTICATED fails the client', async () => {
    const calls: Call[] = []
    const client = new TestClient(KEY, { fetch: fakeFetch(calls, 16), context: ALICE, storage: null, logger: null })
    assert.equal(await client.waitForInitialization(1000), 'FAILED')
    assert.match(client.status().reason ?? '', /Unauthenticated: unknown key/)
    assert.equal(calls[0].url, 'http://127.0.0.1:50051/vexil.v1.EvaluationService/Watch', 'the default endpoint')
    await client.close()
  })
})

/** A `fetch` answering every call with `status`, `headers` and a body given in chunks. */
function answer(chunks: Uint8Array[], status = 200, headers: Headers = grpcWebHeaders()): (url: string, init: RequestInit) => Promise<Response> {
  return async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk)
        controller.close()
      },
    })
    return new Response(status === 204 ? null : body, { status, headers })
  }
}

const OPTIONS: CallOptions = { headers: {}, signal: new AbortController().signal }

async function collect(fetch: (url: string, init: RequestInit) => Promise<Response>): Promise<{ messages: string[]; error?: GrpcError }> {
  const messages: string[] = []
  try {
    for await (const payload of call(fetch, 'http://x/s/M', new Uint8Array([1, 2]), OPTIONS)) messages.push(new TextDecoder().decode(payload))
    return { messages }
  } catch (err) {
    assert.ok(err instanceof GrpcError, String(err))
    return { messages, error: err }
  }
}

const text = (value: string): Uint8Array => new TextEncoder().encode(value)

describe('gRPC-web framing', () => {
  test('messages split across chunks, and several in one chunk, arrive whole and in order', async () => {
    const bytes = new Uint8Array([...frame(0, text('first')), ...frame(0, text('')), ...frame(0, text('third')), ...trailer(0)])
    for (const size of [1, 3, 7, bytes.length]) {
      const chunks: Uint8Array[] = []
      for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.slice(at, at + size))
      assert.deepEqual(await collect(answer(chunks)), { messages: ['first', '', 'third'] }, `chunks of ${size} bytes`)
    }
  })

  test('the request is one uncompressed frame, POSTed with the gRPC-web headers and the caller\'s', async () => {
    let seen: RequestInit | undefined
    const fetch = async (_url: string, init: RequestInit): Promise<Response> => {
      seen = init
      return new Response(new Uint8Array([...frame(0, text('ok')), ...trailer(0)]), { status: 200, headers: grpcWebHeaders() })
    }
    const reply = await unary(fetch, 'http://x/s/M', text('hello'), { headers: { authorization: 'Bearer k' }, signal: OPTIONS.signal, keepalive: true })
    assert.equal(new TextDecoder().decode(reply), 'ok')
    assert.equal(seen?.method, 'POST')
    assert.equal(seen?.keepalive, true)
    const headers = new Headers(seen?.headers)
    assert.equal(headers.get('content-type'), 'application/grpc-web+proto')
    assert.equal(headers.get('x-grpc-web'), '1')
    assert.equal(headers.get('authorization'), 'Bearer k')
    assert.equal(new TextDecoder().decode(await requestMessage(seen as RequestInit)), 'hello')
  })

  test('a status in the trailer ends the call with its code and decoded message, after the messages before it', async () => {
    const result = await collect(answer([frame(0, text('a')), trailer(Code.InvalidArgument, 'context.key: must not be empty ✓')]))
    assert.deepEqual(result.messages, ['a'])
    assert.equal(result.error?.code, Code.InvalidArgument)
    assert.equal(result.error?.detail, 'context.key: must not be empty ✓')
    assert.equal(result.error?.message, 'InvalidArgument: context.key: must not be empty ✓')
  })

  test('every way a response can go wrong is an error with a code, never a silent end', async () => {
    const cases: [string, (url: string, init: RequestInit) => Promise<Response>, number, RegExp][] = [
      ['trailers-only status', answer([], 200, grpcWebHeaders({ 'grpc-status': '16', 'grpc-message': 'unknown%20key' })), Code.Unauthenticated, /unknown key/],
      ['HTTP 403 without a status (CORS refused)', answer([], 403, new Headers()), Code.PermissionDenied, /HTTP 403/],
      ['HTTP 503 from a proxy', answer([text('<html>')], 503, new Headers({ 'content-type': 'text/html' })), Code.Unavailable, /HTTP 503/],
      ['HTTP 404', answer([], 404, new Headers()), Code.Unimplemented, /HTTP 404/],
      ['200 that is not gRPC-web', answer([text('<html>')], 200, new Headers({ 'content-type': 'text/html' })), Code.Unknown, /not gRPC-web/],
      ['body ends without a trailer', answer([frame(0, text('a'))]), Code.Unavailable, /without a status/],
      ['body ends inside a frame', answer([frame(0, text('abc')).subarray(0, 6)]), Code.Unavailable, /without a status/],
      ['trailer without grpc-status', answer([frame(0x80, text('x-other: 1\r\n'))]), Code.Internal, /no grpc-status/],
      ['unreadable grpc-status', answer([frame(0x80, text('grpc-status: ok\r\n'))]), Code.Internal, /invalid grpc-status/],
      ['compressed message', answer([frame(1, text('zz')), trailer(0)]), Code.Internal, /compressed/],
      ['frame too large to buffer', answer([new Uint8Array([0, 0x7f, 0xff, 0xff, 0xff])]), Code.ResourceExhausted, /bytes/],
      ['fetch rejects (network down)', async () => Promise.reject(new TypeError('Failed to fetch')), Code.Unavailable, /Failed to fetch/],
    ]
    for (const [name, fetch, code, message] of cases) {
      const result = await collect(fetch)
      assert.equal(result.error?.code, code, name)
      assert.match(result.error?.message ?? '', message, name)
    }
  })

  test('a unary call with no message or two is an error; an aborted call is CANCELED', async () => {
    await assert.rejects(unary(answer([trailer(0)]), 'http://x/s/M', text(''), OPTIONS), { code: Code.Unimplemented, message: /no message/ })
    await assert.rejects(unary(answer([frame(0, text('a')), frame(0, text('b')), trailer(0)]), 'http://x/s/M', text(''), OPTIONS), {
      code: Code.Unimplemented,
      message: /more than one/,
    })
    const controller = new AbortController()
    const pending = unary(
      (_url, init) => new Promise((_resolve, reject) => init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')))),
      'http://x/s/M',
      text(''),
      { headers: {}, signal: controller.signal },
    )
    controller.abort()
    await assert.rejects(pending, { code: Code.Canceled })
  })
})
