// The server's OFREP endpoint through clients no one here wrote: OpenFeature's published
// OFREP providers under their OpenFeature SDKs, against a real vexil-server:
//
// * in Chromium, `@openfeature/web-sdk` with `@openfeature/ofrep-web-provider` (bundled
//   for the page by esbuild), on the environment's client key, across origins: bulk
//   evaluation, polling with ETags, a change seen as PROVIDER_CONFIGURATION_CHANGED, a new
//   context;
// * in Node, `@openfeature/server-sdk` with `@openfeature/ofrep-provider`, on the server key.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { OpenFeature } from '@openfeature/server-sdk'
import { OFREPProvider } from '@openfeature/ofrep-provider'
import { NO_BROWSER, eventually, openFeaturePage } from './page.js'
import { NO_SERVER, VexilServer } from './vexil-server.js'

const FLAGS = [
  {
    key: 'checkout', kind: 'bool', variations: [false, true], on: true, off_variation: 0, client_side: true,
    fallthrough: { variation: 1 },
    rules: [{ id: 'bob', clauses: [{ attribute: 'key', op: 'in', values: ['bob'] }], serve: { variation: 0 } }],
  },
  { key: 'banner', kind: 'string', variations: ['blue', 'green'], on: true, off_variation: 1, client_side: true, fallthrough: { variation: 0 } },
  { key: 'server-only', kind: 'bool', variations: [false, true], on: true, off_variation: 0, fallthrough: { variation: 1 } },
]

type PageState = {
  client: {
    getBooleanDetails(key: string, fallback: boolean): { value: boolean; reason: string; variant?: string; errorCode?: string }
    getStringValue(key: string, fallback: string): string
  }
  changed: string[][]
  setContext(context: Record<string, unknown>): Promise<void>
}

describe('published OFREP providers against vexil-server', { skip: NO_SERVER }, () => {
  const server = new VexilServer()

  before(async () => {
    await server.start()
    await server.importFlags(FLAGS)
  })

  after(async () => {
    await OpenFeature.close()
    server.stop()
  })

  test('in Node: @openfeature/server-sdk with @openfeature/ofrep-provider', async () => {
    await OpenFeature.setProviderAndWait(new OFREPProvider({
      baseUrl: `http://127.0.0.1:${server.httpPort}`,
      headers: [['Authorization', `Bearer ${server.serverKey}`]],
    }))
    const client = OpenFeature.getClient()
    const alice = await client.getBooleanDetails('checkout', false, { targetingKey: 'alice' })
    assert.deepEqual([alice.value, alice.reason, alice.variant], [true, 'DEFAULT', '1'])
    assert.equal(alice.flagMetadata.vexilReason, 'FALLTHROUGH')
    const bob = await client.getBooleanDetails('checkout', true, { targetingKey: 'bob' })
    assert.deepEqual([bob.value, bob.reason, bob.flagMetadata.ruleId], [false, 'TARGETING_MATCH', 'bob'])
    assert.equal(await client.getBooleanValue('server-only', false, { targetingKey: 'alice' }), true)
    const missing = await client.getStringDetails('nope', 'fallback', { targetingKey: 'alice' })
    assert.deepEqual([missing.value, missing.errorCode], ['fallback', 'FLAG_NOT_FOUND'])
    const noKey = await client.getBooleanDetails('checkout', true, { plan: 'pro' })
    assert.deepEqual([noKey.value, noKey.errorCode], [true, 'TARGETING_KEY_MISSING'])
    const wrongType = await client.getNumberDetails('banner', 7, { targetingKey: 'alice' })
    assert.deepEqual([wrongType.value, wrongType.errorCode], [7, 'TYPE_MISMATCH'])
  })

  describe('in Chromium: @openfeature/web-sdk with @openfeature/ofrep-web-provider', { skip: NO_BROWSER }, () => {
    const page = openFeaturePage()

    test('bulk values for the page\'s context, a change by polling with ETags, a new context', async () => {
      const ready = await page().evaluate(async ({ baseUrl, key }) => {
        const { OpenFeature, OFREPWebProvider, ProviderEvents } = await import('/openfeature.js' as string)
        const w = window as unknown as PageState
        w.changed = []
        await OpenFeature.setContext({ targetingKey: 'alice' })
        await OpenFeature.setProviderAndWait(new OFREPWebProvider({
          baseUrl,
          headers: [['Authorization', `Bearer ${key}`]],
          pollInterval: 200,
        }))
        const client = OpenFeature.getClient()
        client.addHandler(ProviderEvents.ConfigurationChanged, (event: { flagsChanged?: string[] }) => {
          w.changed.push(event.flagsChanged ?? [])
        })
        w.client = client
        w.setContext = (context) => OpenFeature.setContext(context)
        return {
          checkout: client.getBooleanDetails('checkout', false),
          banner: client.getStringValue('banner', 'none'),
          hidden: client.getBooleanDetails('server-only', false),
        }
      }, { baseUrl: `http://127.0.0.1:${server.httpPort}`, key: server.clientKey })
      assert.deepEqual([ready.checkout.value, ready.checkout.reason, ready.checkout.variant], [true, 'DEFAULT', '1'])
      assert.equal(ready.banner, 'blue')
      assert.deepEqual([ready.hidden.value, ready.hidden.errorCode], [false, 'FLAG_NOT_FOUND'], 'a client key sees client-side flags only')

      await server.cli('flags', 'toggle', 'banner', 'off')
      await eventually(async () => (await page().evaluate(() => (window as unknown as PageState).changed.length)) > 0, 'PROVIDER_CONFIGURATION_CHANGED', 10_000)
      const changed = await page().evaluate(() => (window as unknown as PageState).changed[0])
      assert.deepEqual(changed, ['banner'])
      assert.equal(await page().evaluate(() => (window as unknown as PageState).client.getStringValue('banner', 'none')), 'green')

      const bob = await page().evaluate(async () => {
        const w = window as unknown as PageState
        await w.setContext({ targetingKey: 'bob' })
        return w.client.getBooleanDetails('checkout', true)
      })
      assert.deepEqual([bob.value, bob.reason], [false, 'TARGETING_MATCH'])
    })
  })
})
