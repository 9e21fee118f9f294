// Starting without the network: the localStorage cache (source CACHE), bootstrap values
// (source BOOTSTRAP) and offline mode.

import assert from 'node:assert/strict'
import { afterEach, describe, test } from 'node:test'
import type { VexilClient } from '../src/index.js'
import type { VexilOptions } from '../src/index.js'
import { hash64, MAX_CONTEXTS } from '../src/cache.js'
import {
  ALICE,
  BOB,
  closeAll,
  FakeServer,
  fakeTime,
  KEY,
  MemoryLogger,
  MemoryStorage,
  result,
  serverClient,
  settle,
  TestClient,
  values,
} from './helpers.js'

afterEach(closeAll)

function newClient(server: FakeServer, storage: MemoryStorage | null, options: VexilOptions = {}): VexilClient {
  return serverClient(server, { storage, ...options })
}

/** A client that received `results` for `context` and wrote them to `storage`. */
async function warm(storage: MemoryStorage, context = ALICE as object, version = 9): Promise<void> {
  const server = new FakeServer()
  const client = newClient(server, storage, { context: context as typeof ALICE })
  ;(await server.watchCount(1)).send(
    values(
      version,
      result('checkout', true, { variation: 1, reason: { ruleIndex: 0, ruleId: 'pro' }, flagVersion: 3 }),
      result('layout', { columns: 2 }, { variation: 0 }),
      result('gone', undefined, { error: 'MALFORMED_FLAG' }),
    ),
  )
  await client.waitForInitialization(1000)
  await client.close()
}

describe('the cache', () => {
  test('a reload starts with the last values (source CACHE) before the stream answers, then NETWORK', async () => {
    const storage = new MemoryStorage()
    await warm(storage)
    assert.ok(
      [...storage.items.keys()].every((key) => !key.includes(KEY)),
      'the storage never holds the SDK key itself',
    )

    const server = new FakeServer()
    const client = newClient(server, storage)
    // Synchronously, straight from the constructor.
    const detail = client.variationDetail('checkout', false)
    assert.deepEqual(detail, {
      value: true,
      variation: 1,
      reason: { kind: 'RULE_MATCH', ruleIndex: 0, ruleId: 'pro' },
      inExperiment: false,
      experimentKey: null,
      flagVersion: 3,
      source: 'CACHE',
      version: 9,
    })
    assert.deepEqual(client.jsonVariation('layout', null), { columns: 2 })
    assert.deepEqual(client.variationDetail('gone', 1).reason, { kind: 'ERROR', errorKind: 'MALFORMED_FLAG' })
    assert.equal(client.status().status, 'INITIALIZING')

    const watch = await server.watchCount(1)
    assert.equal(watch.request.version, 9, 'the stream is told the version the cache came from')
    watch.send(values(10, result('checkout', false, { variation: 0 })))
    await settle()
    assert.equal(client.variationDetail('checkout', true).source, 'NETWORK')
    assert.equal(client.boolVariation('checkout', true), false)
    await client.close()
  })

  test('is kept per context and per key: another context or key starts empty', async () => {
    const storage = new MemoryStorage()
    await warm(storage)
    const server = new FakeServer()
    const bob = newClient(server, storage, { context: BOB })
    assert.equal(bob.variationDetail('checkout', false).source, 'DEFAULTS')
    await bob.close()
    const other = new TestClient('vxl-client-another-key', { fetch: server.fetch, context: ALICE, storage, logger: null })
    assert.equal(other.variationDetail('checkout', false).source, 'DEFAULTS')
    await other.close()
    // The same context written differently (attribute order, default kind) is the same entry.
    await warm(storage, { key: 'carol', attributes: { b: 1, a: [true, null] } })
    const carol = newClient(server, storage, { context: { kind: 'user', key: 'carol', attributes: { a: [true, null], b: 1 } } })
    assert.equal(carol.variationDetail('checkout', false).source, 'CACHE')
    await carol.close()
  })

  test('identify serves the new context cached values at once', async () => {
    const storage = new MemoryStorage()
    await warm(storage, BOB, 4)
    const server = new FakeServer()
    const client = newClient(server, storage)
    const changed: string[][] = []
    client.on('change', (change) => changed.push(change.flagKeys))
    ;(await server.watchCount(1)).send(values(5, result('checkout', false, { variation: 0 })))
    await settle()
    void client.identify(BOB, 100)
    const detail = client.variationDetail('checkout', false)
    assert.equal(detail.value, true)
    assert.equal(detail.source, 'CACHE')
    assert.deepEqual(changed.at(-1), ['checkout', 'gone', 'layout'])
    await client.close()
  })

  test('values older than maxCacheAgeMs are reported STALE', async () => {
    const time = fakeTime()
    try {
      const storage = new MemoryStorage()
      await warm(storage)
      await time.tick(5000)
      const server = new FakeServer()
      const fresh = newClient(server, storage, { maxCacheAgeMs: 10_000 })
      const old = newClient(server, storage, { maxCacheAgeMs: 1000 })
      assert.equal(fresh.variationDetail('checkout', false).source, 'CACHE')
      assert.equal(old.variationDetail('checkout', false).source, 'STALE')
      assert.equal(old.boolVariation('checkout', false), true, 'still the last known value')
      await fresh.close()
      await old.close()
    } finally {
      await time.restore()
    }
  })

  test('keeps the last five contexts of a key, most recent first', async () => {
    const storage = new MemoryStorage()
    const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'].map((key) => ({ kind: 'user', key }))
    for (const user of users) await warm(storage, user)
    const server = new FakeServer()
    const cached = users.map((user) => {
      const client = newClient(server, storage, { context: user as typeof ALICE })
      const source = client.variationDetail('checkout', false).source
      void client.close()
      return source
    })
    assert.equal(MAX_CONTEXTS, 5)
    assert.deepEqual(cached, ['DEFAULTS', 'CACHE', 'CACHE', 'CACHE', 'CACHE', 'CACHE'])
    assert.equal(storage.items.size, MAX_CONTEXTS + 1, 'five entries and the index')
  })

  test('an unreadable entry is ignored, reported and removed', async () => {
    const storage = new MemoryStorage()
    await warm(storage)
    const [entry] = [...storage.items.keys()].filter((key) => !key.endsWith(':contexts'))
    for (const damage of ['{ not json', JSON.stringify({ format: 99 }), JSON.stringify({ format: 1, context: ALICE, values: { f: { reason: 'x' } } })]) {
      storage.items.set(entry, damage)
      const logger = new MemoryLogger()
      const client = newClient(new FakeServer(), storage, { logger })
      assert.equal(client.variationDetail('checkout', false).source, 'DEFAULTS')
      assert.equal(logger.warnings.length, 1, logger.warnings.join('; '))
      assert.equal(storage.items.has(entry), false)
      await client.close()
    }
  })

  test('a storage that throws costs the cache, never the client', async () => {
    const broken = {
      getItem(): string {
        throw new Error('SecurityError')
      },
      setItem(): void {
        throw new Error('QuotaExceededError')
      },
      removeItem(): void {},
    }
    const logger = new MemoryLogger()
    const server = new FakeServer()
    const client = new TestClient(KEY, { fetch: server.fetch, context: ALICE, storage: broken, logger, events: { enabled: false } })
    const watch = await server.watchCount(1)
    watch.send(values(1, result('a', true)))
    await settle()
    watch.send(values(2, result('a', false)))
    await settle()
    assert.equal(client.boolVariation('a', true), false)
    assert.equal(logger.warnings.length, 1, 'one warning, not one per change')
    assert.match(logger.warnings[0], /SecurityError/)
    await client.close()
  })

  test('defaults to window.localStorage, and storage: null keeps nothing', async () => {
    const storage = new MemoryStorage()
    const g = globalThis as { localStorage?: unknown }
    g.localStorage = storage
    try {
      const server = new FakeServer()
      const client = new TestClient(KEY, { fetch: server.fetch, context: ALICE, logger: null, events: { enabled: false } })
      ;(await server.watchCount(1)).send(values(1, result('a', true)))
      await settle()
      await client.close()
      assert.equal(storage.items.has(`vexil:${hash64(KEY)}:contexts`), true)
      storage.items.clear()
      const none = newClient(server, null)
      ;(await server.watchCount(2)).send(values(1, result('a', true)))
      await settle()
      await none.close()
      assert.equal(storage.items.size, 0)
    } finally {
      delete g.localStorage
    }
  })
})

describe('bootstrap', () => {
  test('plain values and details are served at once (source BOOTSTRAP), before and over the cache', async () => {
    const storage = new MemoryStorage()
    await warm(storage)
    const server = new FakeServer()
    const checkout = {
      value: false,
      variation: 0,
      reason: { kind: 'TARGET_MATCH' },
      inExperiment: true,
      experimentKey: 'checkout-test',
      flagVersion: 12,
    } as const
    const client = newClient(server, storage, {
      bootstrap: {
        banner: 'spring',
        limit: 3,
        layout: { columns: 3 },
        checkout,
        unservable: { value: null, variation: null, reason: { kind: 'ERROR', errorKind: 'MALFORMED_FLAG' } },
        'looks-like-detail': { value: 1 },
      },
    })
    assert.equal(client.stringVariation('banner', 'x'), 'spring')
    assert.equal(client.numberVariation('limit', 0), 3)
    assert.deepEqual(client.jsonVariation('layout', null), { columns: 3 })
    assert.deepEqual(client.jsonVariation('looks-like-detail', null), { value: 1 }, 'no reason: a plain JSON value')
    assert.deepEqual(client.variationDetail('checkout', true), { ...checkout, source: 'BOOTSTRAP', version: 0 })
    const plain = client.variationDetail('banner', 'x')
    assert.equal(plain.variation, null)
    assert.equal(plain.source, 'BOOTSTRAP')
    assert.equal(client.stringVariation('unservable', 'd'), 'd')
    assert.equal(client.numberVariation('banner', 7), 7, 'a bootstrap value has its type too')

    const changed: string[][] = []
    client.on('change', (change) => changed.push(change.flagKeys))
    ;(await server.watchCount(1)).send(values(3, result('banner', 'spring'), result('checkout', true, { variation: 1 })))
    await settle()
    assert.equal(client.variationDetail('checkout', false).source, 'NETWORK')
    assert.deepEqual(
      changed,
      [['banner', 'checkout', 'layout', 'limit', 'looks-like-detail', 'unservable']],
      'banner kept its value but gained a variation and reason; the others went away',
    )
    await client.close()
  })

  test('a bootstrap value that is not JSON is refused at construction, naming it', () => {
    const make = (bootstrap: unknown): VexilClient =>
      new TestClient(KEY, { bootstrap: bootstrap as Record<string, null>, offline: true, storage: null })
    assert.throws(() => make({ good: 1, bad: () => 1 }), { code: 'VEXIL_INVALID_ARGUMENT', message: /options\.bootstrap\["bad"\]: expected a JSON value, got a function/ })
    assert.throws(() => make({ n: Number.NaN }), { code: 'VEXIL_INVALID_ARGUMENT', message: /bootstrap\["n"\]/ })
    assert.throws(() => make({ d: { value: 1, variation: -1, reason: { kind: 'OFF' } } }), { code: 'VEXIL_INVALID_ARGUMENT', message: /variation/ })
    assert.throws(() => make([1, 2]), { code: 'VEXIL_INVALID_ARGUMENT', message: /options\.bootstrap/ })
  })
})

describe('offline', () => {
  test('never touches the network: status OFFLINE, bootstrap or cache or defaults, identify at once', async () => {
    const storage = new MemoryStorage()
    await warm(storage, BOB)
    const server = new FakeServer()
    const client = newClient(server, storage, { offline: true, bootstrap: { checkout: false }, events: { flushIntervalMs: 10 } })
    assert.equal(await client.waitForInitialization(1000), 'OFFLINE')
    assert.equal(client.boolVariation('checkout', true), false)
    assert.equal(client.variationDetail('checkout', true).source, 'BOOTSTRAP')
    client.track('purchase', 10)
    assert.equal(await client.flush(), true)

    assert.equal(await client.identify(BOB), true)
    assert.equal(client.variationDetail('checkout', false).source, 'CACHE', "bob's cached values")
    assert.equal(await client.identify({ key: 'dave' }), true)
    const detail = client.variationDetail('checkout', true)
    assert.equal(detail.source, 'DEFAULTS', 'nothing known about dave, and nothing will come')
    assert.deepEqual(detail.reason, { kind: 'ERROR', errorKind: 'CLIENT_NOT_READY' })
    await settle()
    await client.close()
    assert.equal(server.watches.length, 0)
    assert.equal(server.publishes.length, 0)
    assert.equal(client.status().status, 'CLOSED')
  })
})
