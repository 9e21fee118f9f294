// @vexil/web in Chromium against a real vexil-server started here: gRPC-web over HTTP/1.1,
// the server's CORS and allowed origins, propagation of admin changes, a server that dies
// and comes back, a reload, identify, and events counted on the server. Admin changes go
// through the `vexil` command. Both binaries come from the workspace build
// ($CARGO_TARGET_DIR/debug; ci.sh builds them).
//
//   npm run build && npm run test:browser
//
// It also prints the figures of BENCHMARKS.md that need a real server: time to first values
// over the network and propagation from an admin call to a listener in the page.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { NO_BROWSER, eventually, launchChromium, percentile, servePage } from './page.js'
import type { Site } from './page.js'
import { NO_SERVER, VexilServer } from './vexil-server.js'

const CHECKOUT = {
  key: 'checkout', kind: 'bool', variations: [false, true], on: true, off_variation: 0, client_side: true,
  fallthrough: { variation: 1 },
  rules: [{ id: 'bob', clauses: [{ attribute: 'key', op: 'in', values: ['bob'] }], serve: { variation: 0 } }],
}
const BANNER = {
  key: 'banner', kind: 'string', variations: ['blue', 'green'], on: true, off_variation: 0, client_side: true,
  fallthrough: { variation: 0 },
}
const SECRET = { ...CHECKOUT, key: 'server-only', client_side: false, rules: [] }

type PageClient = {
  boolVariation(k: string, d: boolean): boolean
  stringVariation(k: string, d: string): string
  variationDetail(k: string, d: unknown): { value: unknown; source: string; reason: { kind: string } }
  allFlags(): Record<string, unknown>
  status(): { status: string }
  identify(context: unknown, timeoutMs?: number): Promise<boolean>
  on(event: string, listener: () => void): void
  track(name: string, value?: number): void
  flush(timeoutMs?: number): Promise<boolean>
  waitForInitialization(timeoutMs?: number): Promise<string>
  close(): Promise<void>
}
type PageWindow = { client: PageClient; changes: number[] }

/** Creates `window.client`; returns what it served at once and once initialised, and how long that took. */
async function startClient(page: Page, endpoint: string, key: string, storage = true) {
  return page.evaluate(
    async ({ endpoint, key, storage }) => {
      const { VexilClient } = await import('/vexil-web.min.js' as string)
      const started = performance.now()
      const client: PageClient = new VexilClient(key, {
        endpoint,
        context: { kind: 'user', key: 'alice' },
        initialBackoffMs: 100,
        maxBackoffMs: 500,
        events: { flushIntervalMs: 3_600_000 },
        ...(storage ? {} : { storage: null }),
      })
      const w = window as unknown as PageWindow
      w.client = client
      w.changes = []
      client.on('change:checkout', () => w.changes.push(Date.now()))
      const sourceAtStart = client.variationDetail('checkout', false).source
      const status = await client.waitForInitialization(5000)
      const ms = performance.now() - started
      const detail = client.variationDetail('checkout', false)
      return { sourceAtStart, status, checkout: detail.value, source: detail.source, ms, flags: Object.keys(client.allFlags()) }
    },
    { endpoint, key, storage },
  )
}

function statusIn(page: Page): Promise<string> {
  return page.evaluate(() => (window as unknown as PageWindow).client.status().status)
}

describe('in Chromium against vexil-server', { skip: NO_BROWSER || NO_SERVER }, () => {
  const server = new VexilServer()
  let browser: Browser
  let site: Site
  let elsewhere: Site

  before(async () => {
    await server.start()
    await server.importFlags([CHECKOUT, BANNER, SECRET])
    site = await servePage('127.0.0.1')
    // The same machine under another name: another origin, which no environment allows.
    elsewhere = await servePage('localhost')
    // Set before any page calls, so no instance remembers the development default.
    await server.cli('environments', 'update', 'production', '--allowed-origin', site.origin)
    await server.cli('environments', 'update', 'development', '--allowed-origin', 'https://dev.example.com')
    browser = await launchChromium()
  })

  after(async () => {
    await browser?.close()
    await site?.close()
    await elsewhere?.close()
    server.stop()
  })

  test('first values, a change to a listener, a reload from the cache, STALE while the server is down', async () => {
    const page = await browser.newPage()
    await page.goto(site.origin)
    const first = await startClient(page, server.endpoint, server.clientKey)
    assert.deepEqual(
      [first.sourceAtStart, first.status, first.checkout, first.source],
      ['DEFAULTS', 'READY', true, 'NETWORK'],
    )
    assert.deepEqual(first.flags.sort(), ['banner', 'checkout'], 'a client key sees client-side flags only')

    // The first values were a change too (from the defaults).
    const seenBefore = await page.evaluate(() => (window as unknown as PageWindow).changes.length)
    await server.cli('flags', 'toggle', 'checkout', 'off')
    await eventually(async () => (await page.evaluate(() => (window as unknown as PageWindow).changes.length)) > seenBefore, 'the change in the page')
    assert.equal(await page.evaluate(() => (window as unknown as PageWindow).client.boolVariation('checkout', true)), false)

    await page.reload()
    await server.cli('flags', 'toggle', 'checkout', 'on')
    const again = await startClient(page, server.endpoint, server.clientKey)
    assert.equal(again.sourceAtStart, 'CACHE', 'the reload starts from localStorage')
    assert.deepEqual([again.status, again.checkout, again.source], ['READY', true, 'NETWORK'])

    server.kill()
    await eventually(async () => (await statusIn(page)) === 'STALE', 'STALE after the server died')
    const stale = await page.evaluate(() => (window as unknown as PageWindow).client.variationDetail('checkout', false))
    assert.deepEqual([stale.value, stale.source], [true, 'STALE'], 'the last values, marked STALE')
    await server.start()
    await eventually(async () => (await statusIn(page)) === 'READY', 'READY once the server is back', 15_000)
    await page.evaluate(() => (window as unknown as PageWindow).client.close())
    await page.close()
  })

  test('identify streams the new context\'s values', async () => {
    const page = await browser.newPage()
    await page.goto(site.origin)
    await startClient(page, server.endpoint, server.clientKey, false)
    const bob = await page.evaluate(async () => {
      const client = (window as unknown as PageWindow).client
      const arrived = await client.identify({ kind: 'user', key: 'bob' })
      const detail = client.variationDetail('checkout', true)
      await client.close()
      return { arrived, value: detail.value, reason: detail.reason.kind }
    })
    assert.deepEqual(bob, { arrived: true, value: false, reason: 'RULE_MATCH' })
    await page.close()
  })

  test('track events reach the server once, those sent as the page is left included', async () => {
    const environment = 'environment="default/production"'
    const before = await server.metric('vexil_events_total', `${environment},type="track"`)
    const page = await browser.newPage()
    await page.goto(site.origin)
    await startClient(page, server.endpoint, server.clientKey, false)
    const flushed = await page.evaluate(() => {
      const client = (window as unknown as PageWindow).client
      client.track('purchase', 5)
      client.track('purchase', 7)
      return client.flush()
    })
    assert.equal(flushed, true)
    await page.evaluate(() => (window as unknown as PageWindow).client.track('leaving'))
    // Leaving the page sends what is pending; nothing already sent goes again.
    await page.goto('about:blank')
    await eventually(async () => (await server.metric('vexil_events_total', `${environment},type="track"`)) >= before + 3, 'the events on the server')
    await new Promise((done) => setTimeout(done, 500))
    assert.equal(await server.metric('vexil_events_total', `${environment},type="track"`), before + 3)
    await page.close()
  })

  test('a page of an origin no environment allows is refused by CORS; a server key is refused from any page', async () => {
    const page = await browser.newPage()
    await page.goto(elsewhere.origin)
    const refused = await page.evaluate(async ({ endpoint, key }) => {
      const { VexilClient } = await import('/vexil-web.min.js' as string)
      const client = new VexilClient(key, { endpoint, context: { key: 'alice' }, storage: null, logger: null })
      const status = await client.waitForInitialization(1500)
      await client.close()
      return status
    }, { endpoint: server.endpoint, key: server.clientKey })
    assert.equal(refused, 'INITIALIZING', 'the browser never lets the stream start')

    // The SDK itself refuses a server key, so the page calls by hand, as a careless one would.
    await page.goto(site.origin)
    const serverKey = await page.evaluate(async ({ endpoint, key }) => {
      const emptyRequest = new Uint8Array(5)
      const response = await fetch(`${endpoint}/vexil.v1.EvaluationService/EvaluateAll`, {
        method: 'POST',
        headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1', authorization: `Bearer ${key}` },
        body: emptyRequest,
      })
      return { status: response.headers.get('grpc-status'), message: decodeURIComponent(response.headers.get('grpc-message') ?? '') }
    }, { endpoint: server.endpoint, key: server.serverKey })
    assert.equal(serverKey.status, '7', `PERMISSION_DENIED: ${serverKey.message}`)
    assert.match(serverKey.message, /client SDK key/)
    await page.close()
  })

  test('figures: first values over the network, propagation to a listener (printed)', async () => {
    const page = await browser.newPage()
    await page.goto(site.origin)
    const firstValues: number[] = []
    for (let i = 0; i < 100; i++) {
      const started = await startClient(page, server.endpoint, server.clientKey, false)
      assert.equal(started.status, 'READY')
      firstValues.push(started.ms)
      await page.evaluate(() => (window as unknown as PageWindow).client.close())
    }
    console.log(`new to first values over the network: p50 ${percentile(firstValues, 50).toFixed(1)} ms, p95 ${percentile(firstValues, 95).toFixed(1)} ms (${firstValues.length} clients)`)

    // From the cache a reload left, and from bootstrap values: served by the constructor.
    await startClient(page, server.endpoint, server.clientKey)
    await page.evaluate(() => (window as unknown as PageWindow).client.close())
    // No function is declared inside the page's code: the test runner's compiler would wrap it
    // in a helper the page does not have.
    const bootstrap = { checkout: { value: true, variation: 1, reason: { kind: 'FALLTHROUGH' } } }
    const local = await page.evaluate(async ({ endpoint, key, cases }) => {
      const { VexilClient } = await import('/vexil-web.min.js' as string)
      const out: Record<string, number[]> = {}
      for (const { from, options, expected } of cases) {
        out[from] = []
        for (let i = 0; i < 20; i++) {
          const started = performance.now()
          const client = new VexilClient(key, { endpoint, context: { kind: 'user', key: 'alice' }, ...options })
          const source = client.variationDetail('checkout', false).source
          out[from].push(performance.now() - started)
          void client.close()
          if (source !== expected) throw new Error(`${expected} expected, ${source} served`)
        }
      }
      return out
    }, {
      endpoint: server.endpoint,
      key: server.clientKey,
      cases: [
        { from: 'the cache', options: {}, expected: 'CACHE' },
        { from: 'bootstrap values', options: { storage: null, bootstrap }, expected: 'BOOTSTRAP' },
      ],
    })
    for (const [from, samples] of Object.entries(local)) {
      console.log(`new to first values from ${from}: p50 ${percentile(samples, 50).toFixed(2)} ms, p95 ${percentile(samples, 95).toFixed(2)} ms (${samples.length} clients)`)
    }

    await startClient(page, server.endpoint, server.clientKey, false)
    // 100 changes, so that the 99th percentile is a measured one, not the maximum of a few.
    const propagation: number[] = []
    for (let i = 0; i < 100; i++) {
      const seenBefore = await page.evaluate(() => (window as unknown as PageWindow).changes.length)
      const called = Date.now()
      await server.cli('flags', 'toggle', 'checkout', i % 2 === 0 ? 'off' : 'on')
      await eventually(async () => (await page.evaluate(() => (window as unknown as PageWindow).changes.length)) > seenBefore, 'a change')
      const seen = await page.evaluate((n) => (window as unknown as PageWindow).changes[n], seenBefore)
      propagation.push(seen - called)
    }
    console.log(`admin call to listener in the page: p50 ${percentile(propagation, 50)} ms, p99 ${percentile(propagation, 99)} ms, max ${Math.max(...propagation)} ms (${propagation.length} changes, including the vexil command's start)`)
    assert.equal(propagation.length, 100)
    await page.evaluate(() => (window as unknown as PageWindow).client.close())
    await page.close()
  })
})
