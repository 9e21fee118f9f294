'use strict'
// `@vexil/node/openfeature` under OpenFeature's own server SDK (`@openfeature/server-sdk`)
// against a real vexil-server: the SDK's flow as an application sees it.

const assert = require('node:assert/strict')
const { after, before, describe, test } = require('node:test')
const { OpenFeature, ProviderEvents, ProviderStatus } = require('@openfeature/server-sdk')

const { VexilProvider, toVexilContext } = require('../openfeature.js')
const { Server, eventually } = require('./helpers')

const FLAGS = [
  {
    key: 'checkout', kind: 'bool', variations: [false, true], on: true, off_variation: 0, fallthrough: { variation: 1 },
    rules: [{ id: 'bob', clauses: [{ attribute: 'key', op: 'in', values: ['bob'] }], serve: { variation: 0 } }],
  },
  { key: 'banner', kind: 'string', variations: ['blue', 'green'], on: true, off_variation: 1, fallthrough: { variation: 0 } },
  {
    key: 'seats', kind: 'number', variations: [5, 50], on: true, off_variation: 0, fallthrough: { variation: 0 },
    rules: [{ id: 'big', clauses: [{ context_kind: 'org', attribute: 'plan', op: 'in', values: ['enterprise'] }], serve: { variation: 1 } }],
  },
  { key: 'limits', kind: 'json', variations: [{ max: 3 }], on: true, fallthrough: { variation: 0 } },
]
const ALICE = { targetingKey: 'alice', plan: 'free' }

test('the context convention', () => {
  const when = new Date('2026-01-02T03:04:05Z')
  assert.deepEqual(toVexilContext({ targetingKey: 'u1', kind: 'org', seats: 5, since: when }),
    { kind: 'org', key: 'u1', attributes: { seats: 5, since: '2026-01-02T03:04:05.000Z' } })
  assert.deepEqual(toVexilContext({ kind: 'multi', user: { targetingKey: 'u1' }, org: { targetingKey: 'o1', plan: 'pro' } }), {
    kind: 'multi',
    contexts: [{ kind: 'user', key: 'u1', attributes: {} }, { kind: 'org', key: 'o1', attributes: { plan: 'pro' } }],
  })
  assert.equal(toVexilContext({ plan: 'pro' }), null)
})

describe('VexilProvider under @openfeature/server-sdk against vexil-server', () => {
  let server
  let provider

  before(async () => {
    server = await Server.start()
    server.importFlags(FLAGS)
    provider = new VexilProvider(server.keys.server, {
      endpoint: server.endpoint,
      initialBackoffMs: 100,
      maxBackoffMs: 500,
      events: { flushIntervalMs: 3600000 },
    })
    await OpenFeature.setProviderAndWait(provider)
  })

  after(async () => {
    await OpenFeature.close()
    server.stop()
  })

  test('values, details and reasons', async () => {
    const client = OpenFeature.getClient()
    assert.equal(client.providerStatus, ProviderStatus.READY)
    const checkout = await client.getBooleanDetails('checkout', false, ALICE)
    assert.deepEqual([checkout.value, checkout.reason, checkout.variant], [true, 'DEFAULT', '1'])
    assert.deepEqual([checkout.flagMetadata.vexilReason, checkout.flagMetadata.source], ['FALLTHROUGH', 'NETWORK'])
    const bob = await client.getBooleanDetails('checkout', true, { targetingKey: 'bob' })
    assert.deepEqual([bob.value, bob.reason, bob.flagMetadata.ruleId], [false, 'TARGETING_MATCH', 'bob'])
    assert.equal(await client.getStringValue('banner', 'none', ALICE), 'blue')
    assert.equal(await client.getNumberValue('seats', 0, ALICE), 5)
    assert.deepEqual(await client.getObjectValue('limits', {}, ALICE), { max: 3 })
    const org = { kind: 'multi', user: { targetingKey: 'alice' }, org: { targetingKey: 'acme', plan: 'enterprise' } }
    assert.equal(await client.getNumberValue('seats', 0, org), 50)
  })

  test('errors: flag not found, type mismatch, invalid context, no targeting key', async () => {
    const client = OpenFeature.getClient()
    const missing = await client.getBooleanDetails('nope', true, ALICE)
    assert.deepEqual([missing.value, missing.errorCode], [true, 'FLAG_NOT_FOUND'])
    const wrong = await client.getNumberDetails('banner', 7, ALICE)
    assert.deepEqual([wrong.value, wrong.errorCode], [7, 'TYPE_MISMATCH'])
    const invalid = await client.getBooleanDetails('checkout', false, { targetingKey: 'a', kind: 'no spaces!' })
    assert.deepEqual([invalid.value, invalid.errorCode], [false, 'INVALID_CONTEXT'])
    const noKey = await client.getBooleanDetails('checkout', false, { plan: 'pro' })
    assert.deepEqual([noKey.value, noKey.errorCode], [false, 'TARGETING_KEY_MISSING'])
  })

  test('CONFIGURATION_CHANGED names the flags changed', async () => {
    const changed = []
    const handler = (details) => changed.push(details?.flagsChanged ?? [])
    OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, handler)
    server.cli('flags', 'toggle', 'banner', 'off')
    await eventually(() => changed.length > 0, 'CONFIGURATION_CHANGED')
    OpenFeature.removeHandler(ProviderEvents.ConfigurationChanged, handler)
    assert.deepEqual(changed[0], ['banner'])
    assert.equal(await OpenFeature.getClient().getStringValue('banner', 'none', ALICE), 'green')
  })

  test('track events reach the server', async () => {
    const counted = () => server.metric('vexil_events_total{environment="default/production",type="track"}')
    const before = await counted()
    OpenFeature.getClient().track('purchase', ALICE, { value: 42 })
    assert.equal(await provider.client.flush(5000), true)
    assert.equal(await counted(), before + 1)
  })

  test('STALE while the server is down, READY when it is back', async () => {
    const events = []
    const stale = () => events.push('stale')
    const ready = () => events.push('ready')
    OpenFeature.addHandler(ProviderEvents.Stale, stale)
    OpenFeature.addHandler(ProviderEvents.Ready, ready)
    server.kill()
    await eventually(() => events.includes('stale'), 'PROVIDER_STALE')
    const held = await OpenFeature.getClient().getBooleanDetails('checkout', false, ALICE)
    assert.deepEqual([held.value, held.reason], [true, 'STALE'], 'the last values, marked STALE')
    events.length = 0
    await server.run()
    await eventually(() => events.includes('ready'), 'PROVIDER_READY again')
    OpenFeature.removeHandler(ProviderEvents.Stale, stale)
    OpenFeature.removeHandler(ProviderEvents.Ready, ready)
    assert.equal(OpenFeature.getClient().providerStatus, ProviderStatus.READY)
  })

  test('shutdown closes the client', async () => {
    await OpenFeature.clearProviders()
    assert.equal(provider.client.status().status, 'CLOSED')
  })
})
