// `@vexil/web/openfeature` under OpenFeature's own web SDK (`@openfeature/web-sdk`) against a
// real vexil-server: the SDK's flow as an application sees it (values, details, reasons,
// errors, context changes, events, tracking, shutdown). It runs in Node, whose fetch streams
// gRPC-web like a browser's; the browser itself is covered by server.test.ts.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { OpenFeature, ProviderEvents, ProviderStatus } from '@openfeature/web-sdk'
import type { EventDetails } from '@openfeature/web-sdk'
import { VexilWebProvider } from '../../src/openfeature.js'
import { eventually } from './page.js'
import { NO_SERVER, VexilServer } from './vexil-server.js'

const FLAGS = [
  {
    key: 'checkout', kind: 'bool', variations: [false, true], on: true, off_variation: 0, client_side: true,
    fallthrough: { variation: 1 },
    rules: [{ id: 'bob', clauses: [{ attribute: 'key', op: 'in', values: ['bob'] }], serve: { variation: 0 } }],
  },
  { key: 'banner', kind: 'string', variations: ['blue', 'green'], on: true, off_variation: 1, client_side: true, fallthrough: { variation: 0 } },
  {
    key: 'seats', kind: 'number', variations: [5, 50], on: true, off_variation: 0, client_side: true, fallthrough: { variation: 0 },
    rules: [{ id: 'big', clauses: [{ context_kind: 'org', attribute: 'plan', op: 'in', values: ['enterprise'] }], serve: { variation: 1 } }],
  },
  { key: 'limits', kind: 'json', variations: [{ max: 3 }], on: true, client_side: true, fallthrough: { variation: 0 } },
]

describe('VexilWebProvider under @openfeature/web-sdk against vexil-server', { skip: NO_SERVER }, () => {
  const server = new VexilServer()
  let provider: VexilWebProvider

  before(async () => {
    await server.start()
    await server.importFlags(FLAGS)
    await OpenFeature.setContext({ targetingKey: 'alice', plan: 'free' })
    provider = new VexilWebProvider(server.clientKey, {
      endpoint: server.endpoint,
      storage: null,
      initialBackoffMs: 100,
      maxBackoffMs: 500,
      events: { flushIntervalMs: 3_600_000 },
    })
    await OpenFeature.setProviderAndWait(provider)
  })

  after(async () => {
    await OpenFeature.close()
    server.stop()
  })

  test('values, details and reasons', () => {
    const client = OpenFeature.getClient()
    assert.equal(client.providerStatus, ProviderStatus.READY)
    const checkout = client.getBooleanDetails('checkout', false)
    assert.deepEqual([checkout.value, checkout.reason, checkout.variant], [true, 'DEFAULT', '1'])
    assert.deepEqual([checkout.flagMetadata.vexilReason, checkout.flagMetadata.source], ['FALLTHROUGH', 'NETWORK'])
    assert.equal(client.getStringValue('banner', 'none'), 'blue')
    assert.equal(client.getNumberValue('seats', 0), 5)
    assert.deepEqual(client.getObjectValue('limits', {}), { max: 3 })
  })

  test('errors: flag not found, type mismatch', () => {
    const client = OpenFeature.getClient()
    const missing = client.getBooleanDetails('nope', true)
    assert.deepEqual([missing.value, missing.reason, missing.errorCode], [true, 'ERROR', 'FLAG_NOT_FOUND'])
    const wrong = client.getNumberDetails('banner', 7)
    assert.deepEqual([wrong.value, wrong.errorCode], [7, 'TYPE_MISMATCH'])
  })

  test('a context change identifies the new context; multi-kind by the documented convention', async () => {
    await OpenFeature.setContext({ targetingKey: 'bob' })
    const bob = OpenFeature.getClient().getBooleanDetails('checkout', true)
    assert.deepEqual([bob.value, bob.reason, bob.flagMetadata.ruleId], [false, 'TARGETING_MATCH', 'bob'])
    await OpenFeature.setContext({ kind: 'multi', user: { targetingKey: 'alice' }, org: { targetingKey: 'acme', plan: 'enterprise' } })
    assert.equal(OpenFeature.getClient().getNumberValue('seats', 0), 50)
    await OpenFeature.setContext({ targetingKey: 'alice' })
  })

  test('an invalid context is an error, and the previous values stay', async () => {
    // The SDK reports the failed reconciliation; the provider keeps the previous context.
    const errors: string[] = []
    const handler = (details?: EventDetails) => errors.push(details?.message ?? '')
    OpenFeature.addHandler(ProviderEvents.Error, handler)
    await OpenFeature.setContext({ targetingKey: 'alice', kind: 'not a kind!' })
    OpenFeature.removeHandler(ProviderEvents.Error, handler)
    assert.equal(errors.length, 1, 'one error event')
    assert.equal(OpenFeature.getClient().getBooleanValue('checkout', false), true)
    await OpenFeature.setContext({ targetingKey: 'alice' })
  })

  test('CONFIGURATION_CHANGED names the flags changed', async () => {
    const changed: string[][] = []
    const handler = (details?: EventDetails) => changed.push((details as { flagsChanged?: string[] } | undefined)?.flagsChanged ?? [])
    OpenFeature.getClient().addHandler(ProviderEvents.ConfigurationChanged, handler)
    await server.cli('flags', 'toggle', 'banner', 'off')
    await eventually(() => changed.length > 0, 'CONFIGURATION_CHANGED')
    OpenFeature.getClient().removeHandler(ProviderEvents.ConfigurationChanged, handler)
    assert.deepEqual(changed[0], ['banner'])
    assert.equal(OpenFeature.getClient().getStringValue('banner', 'none'), 'green')
  })

  test('track events reach the server', async () => {
    const counted = () => server.metric('vexil_events_total', 'environment="default/production",type="track"')
    const before = await counted()
    OpenFeature.getClient().track('purchase', { value: 42, currency: 'EUR' })
    assert.equal(await provider.client.flush(), true)
    assert.equal(await counted(), before + 1)
  })

  test('STALE while the server is down, READY when it is back', async () => {
    const events: string[] = []
    const stale = () => events.push('stale')
    const ready = () => events.push('ready')
    OpenFeature.addHandler(ProviderEvents.Stale, stale)
    OpenFeature.addHandler(ProviderEvents.Ready, ready)
    server.kill()
    await eventually(() => events.includes('stale'), 'PROVIDER_STALE', 10_000)
    const held = OpenFeature.getClient().getBooleanDetails('checkout', false)
    assert.deepEqual([held.value, held.reason], [true, 'STALE'], 'the last values, marked STALE')
    // READY from now on means "back" (the SDK also announces READY after each context change).
    events.length = 0
    await server.start()
    await eventually(() => events.includes('ready'), 'PROVIDER_READY again', 15_000)
    OpenFeature.removeHandler(ProviderEvents.Stale, stale)
    OpenFeature.removeHandler(ProviderEvents.Ready, ready)
    assert.equal(OpenFeature.getClient().providerStatus, ProviderStatus.READY)
  })

  test('shutdown closes the client', async () => {
    await OpenFeature.clearProviders()
    assert.equal(provider.client.status().status, 'CLOSED')
  })
})
