// The default transport as a browser runs it: gRPC-web over `fetch`, spoken by a fake
// server written from the protocol (length-prefixed frames, trailers in the body).

import assert from 'node:assert/strict'
import { afterEach, describe, test } from 'node:test'
import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import type { DescMessage, MessageInitShape } from '@bufbuild/protobuf'
import { WatchRequestSchema, WatchResponseSchema } from '../src/gen/vexil/v1/evaluation_pb.js'
import { PublishRequestSchema, PublishResponseSchema } from '../src/gen/vexil/v1/events_pb.js'
import {
  ALICE,
  closeAll,
  FakePage,
  KEY,
  result,
  settle,
  TestClient,
  values,
} from './helpers.js'

afterEach(closeAll)

function frame(flags: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length)
  out[0] = flags
  new DataView(out.buffer).setUint32(1, payload.length)
  out.set(payload, 5)
  return out
}

function message<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Uint8Array {
  return frame(0, toBinary(schema, create(schema, init)))
}

function trailer(status: number, text = ''): Uint8Array {
  return frame(0x80, new TextEncoder().encode(`grpc-status: ${status}\r\ngrpc-message: ${text}\r\n`))
}

/** The one message of a request body. */
async function requestMessage<D extends DescMessage>(schema: D, init: RequestInit): Promise<ReturnType<typeof fromBinary<D>>> {
  const body = new Uint8Array(await new Response(init.body).arrayBuffer())
  assert.equal(body[0], 0, 'an uncompressed data frame')
  const length = new DataView(body.buffer, body.byteOffset).getUint32(1)
  return fromBinary(schema, body.subarray(5, 5 + length))
}

interface Call {
  url: string
  init: RequestInit
  headers: Headers
  /** For a Watch: pushes frames to the open response. */
  push?: (bytes: Uint8Array) => void
}

function grpcWebHeaders(extra: Record<string, string> = {}): Headers {
  return new Headers({ 'content-type': 'application/grpc-web+proto', ...extra })
}

/** A fake server behind `fetch`: Watch streams stay open for the test to push to; Publish succeeds. */
function fakeFetch(calls: Call[], refuseWatch?: number): typeof globalThis.fetch {
  return async (input, init = {}) => {
    const url = String(input)
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
      const bytes = new Uint8Array([...message(PublishResponseSchema, { accepted: 1 }), ...trailer(0)])
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
    const page = new FakePage().install()
    try {
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
      const request = await requestMessage(WatchRequestSchema, watch.init)
      assert.equal(request.context?.key, 'alice')
      assert.deepEqual(request.context?.attributes, { plan: 'pro' })

      watch.push?.(message(WatchResponseSchema, values(3, result('checkout', true, { variation: 1 }), result('layout', { a: [1, 'b'] }))))
      assert.equal(await client.waitForInitialization(1000), 'READY')
      assert.equal(client.boolVariation('checkout', false), true)
      assert.deepEqual(client.jsonVariation('layout', null), { a: [1, 'b'] })

      client.track('purchase', 3)
      assert.equal(await client.flush(), true)
      const publish = calls[1]
      assert.equal(publish.url, 'http://flags.test:8080/vexil/vexil.v1.EventService/Publish')
      assert.notEqual(publish.init.keepalive, true)
      const batch = await requestMessage(PublishRequestSchema, publish.init)
      assert.deepEqual(batch.trackEvents.map((e) => [e.name, e.value]), [['purchase', 3]])

      client.track('leaving')
      page.hide()
      await waitFor(() => calls.length === 3, 'the last-chance publish')
      assert.equal(calls[2].init.keepalive, true, 'fetch with keepalive outlives the page')
      const last = await requestMessage(PublishRequestSchema, calls[2].init)
      assert.deepEqual(last.trackEvents.map((e) => e.name), ['leaving'])
      await client.close()
      assert.equal((watch.init.signal as AbortSignal).aborted, true, 'close cancels the fetch of the stream')
    } finally {
      page.uninstall()
    }
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
