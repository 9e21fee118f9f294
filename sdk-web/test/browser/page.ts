// What the Chromium tests share: Debian's Chromium launched through playwright-core, a site
// that serves the built bundle from an origin of its own, and waiting.

import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before } from 'node:test'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'
export const BUNDLE = new URL('../../dist/vexil-web.min.js', import.meta.url)
/** Why the browser tests cannot run here, or `false`. */
export const NO_BROWSER = existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (apt-get install chromium)`

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(BUNDLE)) throw new Error('dist/vexil-web.min.js: run npm run build first')
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}

export interface Site {
  origin: string
  close(): Promise<void>
}

/**
 * Serves an empty page and the bundle on `host` (`127.0.0.1` or `localhost`), the origin the
 * SDK runs in, and the other `scripts` (path → JavaScript).
 */
export async function servePage(host = '127.0.0.1', scripts: Record<string, string> = {}): Promise<Site> {
  const server = createServer((request, response) => {
    const script = request.url === '/vexil-web.min.js' ? readFileSync(BUNDLE) : scripts[request.url ?? '']
    if (script !== undefined) {
      response.writeHead(200, { 'content-type': 'text/javascript' })
      return void response.end(script)
    }
    response.writeHead(200, { 'content-type': 'text/html' })
    response.end('<!doctype html><title>vexil</title><p>test page</p>')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    origin: `http://${host}:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** Polls `check` until it is true, or fails after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The `p`-th percentile (0–100) of `samples`, nearest rank. */
export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/** The published web SDK and OFREP web provider as one module a page can import. */
export async function openFeatureForPages(): Promise<string> {
  const bundled = await build({
    stdin: {
      contents: "export { OpenFeature, ProviderEvents } from '@openfeature/web-sdk'\n" +
        "export { OFREPWebProvider } from '@openfeature/ofrep-web-provider'\n",
      resolveDir: fileURLToPath(new URL('../..', import.meta.url)),
      loader: 'js',
    },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
  })
  return bundled.outputFiles[0].text
}

/**
 * A Chromium page, for the tests of the suite this is called in, on a site of its own that
 * also serves the OpenFeature web SDK with its OFREP provider (`/openfeature.js`): opened
 * before the suite's tests, closed after them. The tests reach it as `page()`.
 */
export function openFeaturePage(): () => Page {
  let browser: Browser | undefined
  let site: Site | undefined
  let page: Page | undefined

  before(async () => {
    site = await servePage('127.0.0.1', { '/openfeature.js': await openFeatureForPages() })
    browser = await launchChromium()
    page = await browser.newPage()
    await page.goto(site.origin)
  })

  after(async () => {
    await browser?.close()
    await site?.close()
  })

  return () => {
    if (page === undefined) throw new Error('the page is not open (outside the suite\'s tests)')
    return page
  }
}
