// The event pipeline seen from the server: exposures deduplicated, track events and
// evaluation summaries in batches, batch ids kept across retries, bounds, page hide, close.

import assert from 'node:assert/strict'
import { afterEach, describe, test } from 'node:test'
import { Code } from '../src/grpc-web.js'
import type { VexilClient } from '../src/index.js'
import type { EventOptions, VexilOptions } from '../src/index.js'
import {
  BOB,
  closeAll,
  FakeServer,
  KEY,
  MemoryLogger,
  result,
  serverClient,
  settle,
  TestClient,
  values,
  withFakePage,
  withFakeTime,
} from './helpers.js'

afterEach(closeAll)

/** A client that holds values for alice, events flushed only when asked (unless `events` says otherwise). */
async function ready(server: FakeServer, events: EventOptions = {}, options: VexilOptions = {}): Promise<VexilClient> {
  const client = serverClient(server, { events: { flushIntervalMs: 3_600_000, ...events }, ...options })
  ;(await server.watchCount(server.watches.length + 1)).send(
    values(
      4,
      result('checkout', true, { variation: 1, flagVersion: 7 }),
      result('experiment', 'b', { variation: 1, inExperiment: true, experimentKey: 'button-test', flagVersion: 2 }),
    ),
  )
  await client.waitForInitialization(1000)
  return client
}

describe('exposures', () => {
  test('one per context, flag and variation within the window, for the context the values were evaluated for', async () => {
    await withFakeTime(async (time) => {
      const server = new FakeServer()
      const client = await ready(server, { exposureWindowMs: 60_000, summaries: false })
      for (let i = 0; i < 3; i++) assert.equal(client.stringVariation('experiment', 'a'), 'b')
      client.variationDetail('experiment', 'a')
      client.boolVariation('checkout', false) // not in an experiment: no exposure
      assert.equal(await client.flush(), true)
      assert.equal(server.publishes.length, 1)
      const [exposure] = server.publishes[0].request.exposures
      assert.equal(server.publishes[0].request.exposures.length, 1)
      assert.equal(exposure.flagKey, 'experiment')
      assert.equal(exposure.experimentKey, 'button-test')
      assert.equal(exposure.variation, 1)
      assert.equal(exposure.inExperiment, true)
      assert.equal(exposure.flagVersion, 2)
      assert.equal(exposure.context?.key, 'alice')
      assert.equal(Number(exposure.time?.seconds) * 1000, Math.floor(Date.now() / 1000) * 1000)

      // Bob is identified; until his values arrive, alice's are served: exposures are hers.
      void client.identify(BOB)
      client.stringVariation('experiment', 'a')
      ;(await server.watchCount(2)).send(values(5, result('experiment', 'b', { variation: 1, inExperiment: true, experimentKey: 'button-test' })))
      await time.tick(10)
      client.stringVariation('experiment', 'a')
      client.stringVariation('experiment', 'a')
      assert.equal(await client.flush(), true)
      assert.deepEqual(
        server.publishes[1].request.exposures.map((e) => e.context?.key),
        ['bob'],
      )

      // After the window, the same exposure is sent again.
      await time.tick(60_000)
      client.stringVariation('experiment', 'a')
      assert.equal(await client.flush(), true)
      assert.deepEqual(server.publishes[2].request.exposures.map((e) => e.context?.key), ['bob'])
      await client.close()
    })
  })

  test('the deduplication memory is bounded: a context forgotten is exposed again', async () => {
    const server = new FakeServer()
    const client = await ready(server, { exposureMemory: 1, summaries: false })
    const exposed = async (): Promise<number> => {
      await client.flush()
      return server.publishes.reduce((n, p) => n + p.request.exposures.length, 0)
    }
    client.stringVariation('experiment', 'a')
    assert.equal(await exposed(), 1)
    client.stringVariation('experiment', 'a')
    assert.equal(await exposed(), 1, 'remembered')
    // Another flag variation pushes the first one out of a memory of one.
    server.last.send(values(5, result('experiment', 'c', { variation: 2, inExperiment: true, experimentKey: 'button-test' })))
    await settle()
    client.stringVariation('experiment', 'a')
    server.last.send(values(6, result('experiment', 'b', { variation: 1, inExperiment: true, experimentKey: 'button-test' })))
    await settle()
    client.stringVariation('experiment', 'a')
    assert.equal(await exposed(), 3)
    await client.close()
  })
})

describe('batches', () => {
  test('carry track events and evaluation summaries, with the SDK name, the key and a fresh id', async () => {
    const server = new FakeServer()
    const client = await ready(server)
    for (let i = 0; i < 3; i++) client.boolVariation('checkout', false)
    client.variationDetail('checkout', false)
    client.boolVariation('missing', false)
    client.boolVariation('missing', false)
    client.numberVariation('checkout', 0)
    client.track('purchase', 9.5, { currency: 'EUR', items: [1, 2], when: new Date(0) as unknown as string })
    client.track('signup')
    client.track('weird', Number.POSITIVE_INFINITY)
    assert.equal(client.status().events.queued, 3)
    assert.equal(await client.flush(), true)

    assert.equal(server.publishes.length, 1)
    const { request, headers } = server.publishes[0]
    assert.equal(headers.get('authorization'), `Bearer ${KEY}`)
    assert.match(request.batchId, /^[0-9a-f]{32}$/)
    assert.equal(request.sdkName, 'vexil-web')
    assert.equal(request.sdkVersion, '0.1.0')
    assert.deepEqual(
      request.trackEvents.map((e) => [e.name, e.value, e.data, e.context?.key]),
      [
        ['purchase', 9.5, { currency: 'EUR', items: [1, 2], when: '1970-01-01T00:00:00.000Z' }, 'alice'],
        ['signup', undefined, undefined, 'alice'],
        ['weird', undefined, undefined, 'alice'],
      ],
    )
    const summaries = Object.fromEntries(
      request.summaries.map((s) => [
        s.flagKey,
        s.counters.map((c) => ({ flagVersion: Number(c.flagVersion), variation: c.variation, errorKind: c.errorKind, count: Number(c.count) })),
      ]),
    )
    assert.deepEqual(summaries, {
      checkout: [
        { flagVersion: 7, variation: 1, errorKind: 0, count: 4 },
        { flagVersion: 7, variation: undefined, errorKind: 2, count: 1 },
      ],
      missing: [{ flagVersion: 0, variation: undefined, errorKind: 1, count: 2 }],
    })
    for (const summary of request.summaries) {
      assert.ok(summary.start !== undefined && summary.end !== undefined && summary.end.seconds >= summary.start.seconds)
    }
    assert.deepEqual(client.status().events, { dropped: 0, sent: 5, failedBatches: 0, queued: 0 })

    // Nothing new: nothing sent.
    assert.equal(await client.flush(), true)
    assert.equal(server.publishes.length, 1)
    await client.close()
  })

  test('a batch that fails keeps its id across every retry, and later events go in a new batch', async () => {
    await withFakeTime(async (time) => {
      const server = new FakeServer()
      const client = await ready(server, { attempts: 3, summaries: false })
      client.track('first')
      server.publishAnswers = [Code.Unavailable, Code.Unavailable, Code.Unavailable]
      let delivered: boolean | undefined
      void client.flush(60_000).then((d) => (delivered = d))
      await time.tick(150)
      assert.equal(server.publishes.length, 1)
      await time.tick(100) // 200 ms after the first attempt
      assert.equal(server.publishes.length, 2)
      await time.tick(400) // then 400 ms
      assert.equal(server.publishes.length, 3)
      assert.equal(delivered, false)
      assert.deepEqual(client.status().events, { dropped: 0, sent: 0, failedBatches: 1, queued: 1 })

      client.track('second')
      assert.equal(await client.flush(), true)
      const ids = server.publishes.map((p) => p.request.batchId)
      assert.equal(ids.length, 5)
      assert.equal(new Set(ids.slice(0, 4)).size, 1, 'the same id on every try, the last one delivered')
      assert.notEqual(ids[4], ids[0])
      assert.deepEqual(server.publishes[3].request.trackEvents.map((e) => e.name), ['first'])
      assert.deepEqual(server.publishes[4].request.trackEvents.map((e) => e.name), ['second'])
      assert.equal(client.status().events.sent, 2)
      await client.close()
    })
  })

  test('a batch the server refuses is dropped and counted, not retried', async () => {
    const server = new FakeServer()
    const logger = new MemoryLogger()
    const client = await ready(server, { summaries: false }, { logger })
    client.track('a')
    client.track('b')
    server.publishAnswers = [Code.InvalidArgument]
    assert.equal(await client.flush(), true)
    assert.equal(await client.flush(), true)
    assert.equal(server.publishes.length, 1)
    assert.deepEqual(client.status().events, { dropped: 2, sent: 0, failedBatches: 0, queued: 0 })
    assert.equal(logger.warnings.length, 1)
    await client.close()
  })

  test('the queue is bounded: beyond capacity events are dropped and counted', async () => {
    const server = new FakeServer()
    const client = await ready(server, { capacity: 3, batchSize: 100, summaries: false })
    for (let i = 0; i < 5; i++) client.track(`e${i}`)
    assert.deepEqual(client.status().events, { dropped: 2, sent: 0, failedBatches: 0, queued: 3 })
    await client.flush()
    assert.deepEqual(server.publishes[0].request.trackEvents.map((e) => e.name), ['e0', 'e1', 'e2'])
    await client.close()
  })

  test('a full batch is sent at once, and pending events every flushIntervalMs', async () => {
    await withFakeTime(async (time) => {
      const server = new FakeServer()
      const client = await ready(server, { batchSize: 2, flushIntervalMs: 1000, summaries: false })
      client.track('a')
      await time.tick(10)
      assert.equal(server.publishes.length, 0)
      client.track('b')
      await time.tick(10)
      assert.equal(server.publishes.length, 1, 'two events fill a batch')
      client.track('c')
      await time.tick(1000)
      assert.equal(server.publishes.length, 2, 'the periodic flush')
      assert.deepEqual(server.publishes[1].request.trackEvents.map((e) => e.name), ['c'])
      await client.close()
    })
  })

  test('track drops what cannot be sent, without throwing', async () => {
    const server = new FakeServer()
    const logger = new MemoryLogger()
    const noContext = new TestClient(KEY, { fetch: server.fetch, storage: null, logger })
    noContext.track('early')
    assert.equal(noContext.status().events.dropped, 1)
    await noContext.close()
    const client = await ready(server, { summaries: false }, { logger })
    const bad: unknown[][] = [[''], [42], ['x'.repeat(257)], ['ok', 'ten'], ['ok', 1, [1]], ['ok', 1, { f: () => 1 }]]
    for (const args of bad) (client.track as (...a: unknown[]) => void)(...args)
    assert.equal(client.status().events.dropped, bad.length)
    assert.equal(logger.warnings.length, bad.length + 1)
    assert.equal(await client.flush(), true)
    assert.equal(server.publishes.length, 0)
    await client.close()
  })

  test('private attributes leave with their names only; evaluation still reads them', async () => {
    const server = new FakeServer()
    const client = await ready(server, { summaries: false, privateAttributes: ['email', '/address/street', 'key'] })
    const carolUser = {
      kind: 'user',
      key: 'carol',
      private_attributes: ['name', '/tags/0'],
      attributes: { email: 'c@example.com', name: 'Carol', address: { street: 'Quai', city: 'Paris' }, tags: ['t'] },
    }
    const carol = {
      kind: 'multi' as const,
      contexts: [carolUser, { kind: 'org', key: 'acme', attributes: { email: 'billing@acme.example' } }],
    }
    const identified = client.identify(carol, 1000)
    const watch = await server.watchCount(2)
    // The server is watched with every attribute: its rules may read private ones.
    const watched = watch.request.context
    assert.equal(watched?.contexts.find((c) => c.kind === 'user')?.attributes?.email, 'c@example.com')
    watch.send(values(5, result('experiment', 'b', { variation: 1, inExperiment: true, experimentKey: 'button-test' })))
    assert.equal(await identified, true)
    client.stringVariation('experiment', 'a')
    client.track('purchase', 1)
    assert.equal(await client.flush(), true)
    const { exposures, trackEvents } = server.publishes[0].request
    for (const context of [exposures[0].context, trackEvents[0].context]) {
      const [org, user] = context?.contexts ?? []
      assert.deepEqual(user.attributes, { address: { city: 'Paris' }, tags: ['t'] })
      assert.deepEqual(user.redactedAttributes, ['email', '/address/street', 'name'])
      assert.equal(user.key, 'carol')
      assert.equal(org.attributes, undefined)
      assert.deepEqual(org.redactedAttributes, ['email'])
    }
    // The caller's context is untouched.
    assert.equal(carolUser.attributes.address.street, 'Quai')
    await client.close()

    const published = new FakeServer()
    const everyAttribute = await ready(published, { summaries: false, allAttributesPrivate: true })
    // identify makes dan the context of track at once, before his values arrive.
    const pending = everyAttribute.identify({ key: 'dan', attributes: { email: 'd@x', plan: 'pro' } }, 50)
    everyAttribute.track('signup')
    assert.equal(await everyAttribute.flush(), true)
    const sent = published.publishes[0].request.trackEvents[0].context
    assert.deepEqual([sent?.key, sent?.attributes, sent?.redactedAttributes], ['dan', undefined, ['email', 'plan']])
    await everyAttribute.close()
    await pending
  })

  test('with events disabled nothing is queued or sent', async () => {
    const server = new FakeServer()
    const client = await ready(server, { enabled: false })
    client.stringVariation('experiment', 'a')
    client.track('purchase')
    assert.equal(await client.flush(), true)
    await client.close()
    assert.equal(server.publishes.length, 0)
  })
})

describe('page hide and close', () => {
  test('hiding the page sends what is pending at once, and leaving it then sends nothing twice', async () => {
    await withFakePage(async (page) => {
      const server = new FakeServer()
      const client = await ready(server)
      client.track('viewed')
      client.boolVariation('checkout', false)
      page.hide()
      await settle()
      assert.equal(server.publishes.length, 1)
      assert.deepEqual(server.publishes[0].request.trackEvents.map((e) => e.name), ['viewed'])
      assert.equal(server.publishes[0].request.summaries.length, 1)
      page.leave()
      await settle()
      assert.equal(server.publishes.length, 1)
      await client.close()
    })
  })

  test('a batch still on its way when the page is left is sent again with the same id', async () => {
    await withFakePage(async (page) => {
      const server = new FakeServer()
      const client = await ready(server, { summaries: false })
      let open: () => void = () => {}
      server.publishGate = new Promise((resolve) => (open = resolve))
      client.track('slow')
      const flushed = client.flush()
      await settle()
      client.track('later')
      page.leave()
      await settle()
      open()
      server.publishGate = undefined
      assert.equal(await flushed, true)
      const batches = server.publishes.map((p) => [p.request.batchId, p.request.trackEvents.map((e) => e.name).join()])
      assert.equal(batches.length, 3)
      assert.equal(batches[0][0], batches[1][0], 'the batch on its way, sent again with its id')
      assert.equal(batches[1][1], 'slow')
      assert.equal(batches[2][1], 'later')
      assert.equal(client.status().events.sent, 2, 'counted once')
      await client.close()
    })
  })

  test('close sends pending events, stops the stream and the page listeners; variations keep answering', async () => {
    await withFakePage(async (page) => {
      const server = new FakeServer()
      const client = await ready(server, { summaries: false })
      client.track('bye')
      await client.close()
      assert.equal(server.publishes.length, 1)
      assert.equal(server.last.cancelled, true)
      assert.equal(client.status().status, 'CLOSED')
      const detail = client.variationDetail('checkout', false)
      assert.equal(detail.value, true)
      assert.equal(detail.source, 'STALE')
      client.track('after')
      page.hide()
      await settle()
      assert.equal(server.publishes.length, 1)
      assert.equal(await client.flush(), true)
      await client.close()
      assert.equal(await client.waitForInitialization(10), 'CLOSED')
    })
  })
})
