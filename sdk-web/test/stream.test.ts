// The Watch stream: first values, changes reaching listeners, heartbeats and the stream
// timeout, reconnection with jittered backoff, refused keys and contexts, identify.

import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, test } from 'node:test'
import { Code } from '../src/grpc-web.js'
import type { FlagChange } from '../src/index.js'
import { Backoff } from '../src/backoff.js'
import {
  ALICE,
  BOB,
  changes,
  closeAll,
  FakeServer,
  fakeTime,
  heartbeat,
  KEY,
  MemoryLogger,
  result,
  serverClient,
  settle,
  values,
  withFakeTime,
} from './helpers.js'

afterEach(closeAll)

describe('first values', () => {
  test('are watched for the context with the key as a bearer token, and served once they arrive', async () => {
    const server = new FakeServer()
    const client = serverClient(server, { context: { kind: 'user', key: 'alice', attributes: { plan: 'pro' } } })
    assert.equal(client.status().status, 'INITIALIZING')
    assert.equal(client.boolVariation('checkout', false), false)
    assert.deepEqual(client.variationDetail('checkout', false).reason, { kind: 'ERROR', errorKind: 'CLIENT_NOT_READY' })
    assert.equal(client.variationDetail('checkout', false).source, 'DEFAULTS')

    const watch = await server.watchCount(1)
    assert.deepEqual(watch.context, { kind: 'user', key: 'alice', attributes: { plan: 'pro' } })
    assert.equal(watch.headers.get('authorization'), `Bearer ${KEY}`)
    assert.match(watch.headers.get('x-user-agent') ?? '', /^vexil-web\//)
    assert.equal(watch.request.version, 0, 'nothing held: version 0')

    watch.send(
      values(
        7,
        result('checkout', true, { variation: 1, reason: { ruleIndex: 2, ruleId: 'beta' }, flagVersion: 4 }),
        result('banner', 'blue', { variation: 0 }),
        result('limit', 25, { variation: 2, reason: 'TARGET_MATCH' }),
        result('layout', { columns: [1, 2], dense: false }, { variation: 0, reason: 'OFF' }),
        result('broken', undefined, { error: 'MALFORMED_FLAG', flagVersion: 3 }),
      ),
    )
    assert.equal(await client.waitForInitialization(1000), 'READY')
    assert.equal(client.boolVariation('checkout', false), true)
    assert.equal(client.stringVariation('banner', 'red'), 'blue')
    assert.equal(client.numberVariation('limit', 0), 25)
    assert.deepEqual(client.jsonVariation('layout', null), { columns: [1, 2], dense: false })
    assert.deepEqual(client.variationDetail('checkout', false), {
      value: true,
      variation: 1,
      reason: { kind: 'RULE_MATCH', ruleIndex: 2, ruleId: 'beta' },
      inExperiment: false,
      experimentKey: null,
      flagVersion: 4,
      source: 'NETWORK',
      version: 7,
    })
    const broken = client.variationDetail('broken', 'fallback')
    assert.equal(broken.value, 'fallback')
    assert.deepEqual(broken.reason, { kind: 'ERROR', errorKind: 'MALFORMED_FLAG' })
    assert.equal(broken.flagVersion, 3)
    assert.deepEqual(client.status(), {
      status: 'READY',
      source: 'NETWORK',
      version: 7,
      events: { dropped: 0, sent: 0, failedBatches: 0, queued: 0 },
    })
    await client.close()
  })

  test('waitForInitialization resolves INITIALIZING after its timeout when nothing arrives', async () => {
    await withFakeTime(async (time) => {
      const server = new FakeServer()
      const client = serverClient(server)
      let status: string | undefined
      void client.waitForInitialization(3000).then((s) => (status = s))
      await time.tick(2900)
      assert.equal(status, undefined)
      await time.tick(200)
      assert.equal(status, 'INITIALIZING')
      await client.close()
    })
  })

  test('without a context nothing is watched until identify', async () => {
    const server = new FakeServer()
    const client = serverClient(server, { context: undefined })
    await settle()
    assert.equal(server.watches.length, 0)
    const arrived = client.identify(BOB, 1000)
    const watch = await server.watchCount(1)
    assert.deepEqual(watch.context, { kind: 'user', key: 'bob' })
    watch.send(values(1, result('checkout', false, { variation: 0 })))
    assert.equal(await arrived, true)
    assert.equal(client.status().status, 'READY')
    await client.close()
  })
})

describe('changes', () => {
  test('reach every listener with the changed keys and version; per-flag listeners see only theirs', async () => {
    const server = new FakeServer()
    const logger = new MemoryLogger()
    const client = serverClient(server, { logger })
    const all: FlagChange[] = []
    const banner: FlagChange[] = []
    const checkout: FlagChange[] = []
    client.on('change', (change) => all.push(change))
    client.on('change', () => {
      throw new Error('a broken listener')
    })
    client.on('change:banner', (change) => banner.push(change))
    client.on('change:checkout', (change) => checkout.push(change))
    const watch = await server.watchCount(1)
    watch.send(values(1, result('checkout', true, { variation: 1 }), result('banner', 'blue')))
    await settle()
    assert.deepEqual(all, [{ flagKeys: ['banner', 'checkout'], version: 1 }])
    assert.deepEqual(checkout, [{ flagKeys: ['checkout'], version: 1 }])
    assert.equal(logger.errors.length, 1, 'the throwing listener is reported, the others still ran')

    watch.send(changes(2, [result('banner', 'green', { variation: 1 })]))
    await settle()
    assert.deepEqual(all.at(-1), { flagKeys: ['banner'], version: 2 })
    assert.deepEqual(banner.at(-1), { flagKeys: ['banner'], version: 2 })
    assert.equal(checkout.length, 1, 'checkout did not change')
    assert.equal(client.stringVariation('banner', 'red'), 'green')

    watch.send(changes(3, [], ['checkout']))
    await settle()
    assert.deepEqual(checkout.at(-1), { flagKeys: ['checkout'], version: 3 })
    assert.deepEqual(client.variationDetail('checkout', false).reason, { kind: 'ERROR', errorKind: 'FLAG_NOT_FOUND' })
    assert.equal(client.status().version, 3)

    // The same values again on a new stream change nothing a listener could see.
    const count = all.length
    watch.send(values(3, result('banner', 'green', { variation: 1 })))
    await settle()
    assert.equal(all.length, count)

    client.removeAllListeners('change')
    assert.equal(client.listenerCount('change'), 0)
    assert.equal(client.listenerCount('change:banner'), 1)
    await client.close()
    assert.equal(client.listenerCount('change:banner'), 0, 'close releases the listeners')
  })

  test('off removes the most recent registration of that function only', async () => {
    const server = new FakeServer()
    const client = serverClient(server)
    let calls = 0
    const listener = (): void => void calls++
    client.on('change', listener).on('change', listener).off('change', listener)
    assert.equal(client.listenerCount('change'), 1)
    ;(await server.watchCount(1)).send(values(1, result('a', true)))
    await settle()
    assert.equal(calls, 1)
    assert.throws(() => client.on('update' as 'change', listener), { code: 'VEXIL_INVALID_ARGUMENT' })
    await client.close()
  })

  test('changes before values on a stream are a protocol error: the stream is restarted', async () => {
    const time = fakeTime(0)
    try {
      const server = new FakeServer()
      const client = serverClient(server)
      const first = await server.watchCount(1)
      first.send(changes(2, [result('a', true)]))
      await time.tick(10)
      assert.equal(first.cancelled, true)
      assert.equal(client.boolVariation('a', false), false)
      await time.tick(10)
      await server.watchCount(2)
      await client.close()
    } finally {
      await time.restore()
    }
  })
})

describe('a lost stream', () => {
  let time: ReturnType<typeof fakeTime>
  beforeEach(() => {
    time = fakeTime(0.5)
  })
  afterEach(async () => await time.restore())

  test('serves the last values as STALE and reconnects after a jittered, growing delay', async () => {
    const server = new FakeServer()
    const client = serverClient(server, { initialBackoffMs: 1000, maxBackoffMs: 4000 })
    const first = await server.watchCount(1)
    first.send(values(5, result('checkout', true, { variation: 1 })))
    await time.tick(10)
    assert.equal(client.status().status, 'READY')

    first.fail(Code.Unavailable, 'connection reset')
    await time.tick(10)
    const status = client.status()
    assert.equal(status.status, 'STALE')
    assert.match(status.reason ?? '', /Unavailable: connection reset/)
    const detail = client.variationDetail('checkout', false)
    assert.equal(detail.value, true, 'the last good value')
    assert.equal(detail.source, 'STALE')

    // Random 0.5 of a 1000 ms step: 500 ms.
    await time.tick(480)
    assert.equal(server.watches.length, 1)
    await time.tick(20)
    const second = await server.watchCount(2)
    assert.equal(second.request.version, 5, 'resumes from the version held')

    // It fails again at once: the next step is 2000 ms, so 1000 ms.
    second.fail(Code.Unavailable)
    await time.tick(990)
    assert.equal(server.watches.length, 2)
    await time.tick(20)
    const third = await server.watchCount(3)
    third.send(values(6, result('checkout', false, { variation: 0 })))
    await time.tick(10)
    assert.equal(client.status().status, 'READY')
    assert.equal(client.variationDetail('checkout', true).source, 'NETWORK')
    assert.equal(client.boolVariation('checkout', true), false)
    await client.close()
  })

  test('a stream silent for streamTimeoutMs is restarted; heartbeats keep it alive', async () => {
    const server = new FakeServer()
    const client = serverClient(server, { streamTimeoutMs: 1000, initialBackoffMs: 100 })
    const first = await server.watchCount(1)
    first.send(values(1, result('a', true)))
    for (let i = 0; i < 5; i++) {
      await time.tick(900)
      first.send(heartbeat(1))
    }
    await time.tick(10)
    assert.equal(first.cancelled, false, 'heartbeats every 900 ms keep a 1000 ms timeout at bay')
    assert.equal(client.status().status, 'READY')
    await time.tick(1000)
    assert.equal(first.cancelled, true)
    assert.match(client.status().reason ?? '', /no message for 1000 ms/)
    await time.tick(60)
    await server.watchCount(2)
    await client.close()
  })

  test('a stream ended by the server is reconnected too', async () => {
    const server = new FakeServer()
    const client = serverClient(server, { initialBackoffMs: 100 })
    const first = await server.watchCount(1)
    first.send(values(1, result('a', true)))
    first.end()
    await time.tick(10)
    assert.equal(client.status().reason, 'the server ended the stream')
    await time.tick(60)
    await server.watchCount(2)
    await client.close()
  })

  test('the backoff starts over only after a stream stayed healthy for a minute', async () => {
    const server = new FakeServer()
    const client = serverClient(server, { initialBackoffMs: 1000, maxBackoffMs: 64_000 })
    let watch = await server.watchCount(1)
    // Four quick failures: steps 1, 2, 4, 8 s (delays of half each).
    const delays = [500, 1000, 2000, 4000]
    for (let i = 0; i < delays.length; i++) {
      watch.fail(Code.Unavailable)
      await time.tick(delays[i] - 20)
      assert.equal(server.watches.length, i + 1, `no reconnection before ${delays[i]} ms`)
      await time.tick(40)
      watch = await server.watchCount(i + 2)
    }
    // This one lives 61 s, then fails: the delay is back to half of 1 s.
    watch.send(values(1, result('a', true)))
    for (let i = 0; i < 6; i++) {
      await time.tick(10_000)
      watch.send(heartbeat(1))
    }
    await time.tick(1000)
    watch.fail(Code.Unavailable)
    await time.tick(480)
    assert.equal(server.watches.length, 5)
    await time.tick(40)
    await server.watchCount(6)
    await client.close()
  })

  test('a server that accepts and drops streams at once is not hammered', async () => {
    const server = new FakeServer()
    const client = serverClient(server, { initialBackoffMs: 1000, maxBackoffMs: 30_000 })
    // Every stream gets values and is dropped right away, for ten simulated minutes.
    for (let elapsed = 0; elapsed < 600_000; elapsed += 1000) {
      const watch = server.watches.at(-1)
      if (watch !== undefined && !watch.cancelled) {
        watch.send(values(1, result('a', true)))
        watch.fail(Code.Unavailable)
      }
      await time.tick(1000)
    }
    // Delays of half of 1, 2, 4, 8, 16 s, then of the 30 s cap: 5 streams in the first 16 s,
    // then one each 15 s (plus the 1 s granularity of this loop): about 45. Reconnecting at
    // once, or starting the backoff over after each good stream, would make hundreds.
    assert.ok(server.watches.length <= 46, `${server.watches.length} streams in ten minutes`)
    assert.ok(server.watches.length >= 35, `${server.watches.length} streams: it must keep trying`)
    await client.close()
  })
})

describe('Backoff', () => {
  test('draws each delay uniformly below a step that doubles up to the cap, and resets', async () => {
    const time = fakeTime(0.999)
    try {
      const backoff = new Backoff(100, 1000)
      assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => backoff.next()), [99, 199, 399, 799, 999, 999])
      backoff.reset()
      assert.equal(backoff.next(), 99)
    } finally {
      await time.restore()
    }
    const zero = fakeTime(0)
    try {
      const backoff = new Backoff(100, 1000)
      assert.deepEqual([backoff.next(), backoff.next()], [0, 0], 'full jitter reaches down to 0')
    } finally {
      await zero.restore()
    }
  })
})

describe('refused', () => {
  test('UNAUTHENTICATED fails the client for good: FAILED, no more streams, cached data still served', async () => {
    await withFakeTime(async (time) => {
      const server = new FakeServer()
      const logger = new MemoryLogger()
      const client = serverClient(server, { logger, bootstrap: { checkout: true } })
      const watch = await server.watchCount(1)
      watch.fail(Code.Unauthenticated, 'unknown key')
      assert.equal(await client.waitForInitialization(1000), 'FAILED')
      assert.match(client.status().reason ?? '', /Unauthenticated: unknown key/)
      assert.equal(logger.errors.length, 1)
      await time.tick(120_000)
      assert.equal(server.watches.length, 1, 'never retried')
      assert.equal(client.boolVariation('checkout', false), true)
      assert.equal(await client.identify(BOB, 1000), false)
      await client.close()
    })
  })

  test('PERMISSION_DENIED on the first call fails the client as well', async () => {
    const server = new FakeServer()
    server.refuseWatch = Code.PermissionDenied
    const client = serverClient(server)
    assert.equal(await client.waitForInitialization(1000), 'FAILED')
    await client.close()
  })

  test('INVALID_ARGUMENT refuses the context: INVALID_CONTEXT until identify gives another', async () => {
    await withFakeTime(async (time) => {
      const server = new FakeServer()
      const client = serverClient(server, { logger: new MemoryLogger() })
      ;(await server.watchCount(1)).fail(Code.InvalidArgument, 'context.attributes: too large')
      assert.equal(await client.waitForInitialization(1000), 'FAILED')
      assert.deepEqual(client.variationDetail('a', false).reason, { kind: 'ERROR', errorKind: 'INVALID_CONTEXT' })
      await time.tick(120_000)
      assert.equal(server.watches.length, 1, 'the same context is not sent again')
      const arrived = client.identify(BOB, 5000)
      const second = await server.watchCount(2)
      second.send(values(1, result('a', true)))
      assert.equal(await arrived, true)
      assert.equal(client.status().status, 'READY')
      await client.close()
    })
  })
})

describe('identify', () => {
  test('restarts the stream for the new context at once and resolves when its values arrive', async () => {
    await withFakeTime(async (time) => {
      const server = new FakeServer()
      const client = serverClient(server, { initialBackoffMs: 10_000 })
      const first = await server.watchCount(1)
      first.send(values(1, result('checkout', true, { variation: 1 })))
      await time.tick(10)
      let arrived: boolean | undefined
      void client.identify({ kind: 'user', key: 'bob', attributes: { beta: true } }).then((a) => (arrived = a))
      await time.tick(10)
      assert.equal(first.cancelled, true, 'the old stream is cancelled')
      const second = await server.watchCount(2)
      assert.deepEqual(second.context, { kind: 'user', key: 'bob', attributes: { beta: true } })
      assert.equal(second.request.version, 0, 'the values held are for another context')
      assert.equal(arrived, undefined)
      assert.equal(client.boolVariation('checkout', false), true, "alice's values are served meanwhile")
      second.send(values(2, result('checkout', false, { variation: 0 })))
      await time.tick(10)
      assert.equal(arrived, true)
      assert.equal(client.boolVariation('checkout', true), false)
      assert.deepEqual(client.getContext(), { kind: 'user', key: 'bob', attributes: { beta: true } })
      // The same context again: already there.
      assert.equal(await client.identify({ key: 'bob', attributes: { beta: true } }), true)
      assert.equal(server.watches.length, 2)
      await client.close()
    })
  })

  test('resolves false after its timeout, and when another identify comes first', async () => {
    await withFakeTime(async (time) => {
      const server = new FakeServer()
      const client = serverClient(server)
      await server.watchCount(1)
      let first: boolean | undefined
      let second: boolean | undefined
      void client.identify(BOB, 2000).then((a) => (first = a))
      await time.tick(100)
      void client.identify({ key: 'carol' }, 2000).then((a) => (second = a))
      await time.tick(10)
      assert.equal(first, false)
      await time.tick(2100)
      assert.equal(second, false)
      assert.equal(server.watches.length, 3)
      await client.close()
    })
  })

  test('rejects an invalid context with VEXIL_INVALID_CONTEXT and keeps the previous one', async () => {
    const server = new FakeServer()
    const client = serverClient(server)
    await assert.rejects(client.identify({ kind: 'user', key: '' }), { code: 'VEXIL_INVALID_CONTEXT', message: /context\.key/ })
    await assert.rejects(client.identify(ALICE, -1), { code: 'VEXIL_INVALID_ARGUMENT', message: /timeoutMs/ })
    assert.deepEqual(client.getContext(), ALICE)
    await client.close()
    assert.equal(await client.identify(BOB), false, 'a closed client identifies nothing')
  })
})
