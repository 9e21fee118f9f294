// The web SDK's conformance testee: a page in headless Chromium (Debian's `chromium`,
// driven by playwright-core) holds the client, loaded from the built bundle on a site of
// its own origin; this process reads the commands of conformance/PROTOCOL.md on standard
// input, hands each to the page (page.js) in order, and writes the page's answers on
// standard output. The page talks gRPC-web to the server like any site would.

import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { createInterface } from 'node:readline'
import { chromium } from 'playwright-core'

const BUNDLE = new URL('../dist/vexil-web.min.js', import.meta.url)
const PAGE_SCRIPT = new URL('./page.js', import.meta.url)
const COMMON_SCRIPT = new URL('../../conformance/tools/testee.mjs', import.meta.url)
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

const site = createServer((request, response) => {
  const script = { '/vexil-web.min.js': BUNDLE, '/testee.js': PAGE_SCRIPT, '/testee-common.js': COMMON_SCRIPT }[request.url]
  if (script !== undefined) {
    response.writeHead(200, { 'content-type': 'text/javascript' })
    return void response.end(readFileSync(script))
  }
  response.writeHead(200, { 'content-type': 'text/html' })
  response.end('<!doctype html><title>vexil testee</title><script type="module" src="/testee.js"></script>')
})
await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve))

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
})
const page = await browser.newPage()
page.on('console', (message) => process.stderr.write(`page: ${message.text()}\n`))
await page.goto(`http://127.0.0.1:${site.address().port}/`)
await page.waitForFunction(() => typeof window.vexilTestee === 'function')

// One command at a time, in order, as the protocol requires.
for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim() === '') continue
  let answer
  try {
    const command = JSON.parse(line)
    answer = await page.evaluate((c) => window.vexilTestee(c), command)
  } catch (err) {
    answer = { id: null, ok: false, error: err instanceof Error ? err.message : String(err) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}
await browser.close()
site.close()
