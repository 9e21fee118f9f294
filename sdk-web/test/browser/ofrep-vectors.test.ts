// Every conformance vector through the server's OFREP endpoint and OpenFeature's published
// OFREP providers, unmodified: each file's flags are imported into a real server and each
// case is asked for through the OpenFeature client, its context in OpenFeature's form
// (`targetingKey`, `kind`, multi-kind as one object per kind). What is compared, and what is
// left out because OpenFeature cannot ask it, is in vectors.ts.
//
// * `@openfeature/ofrep-provider` under `@openfeature/server-sdk`, in Node: the single-flag
//   endpoint, each case with its own context;
// * `@openfeature/ofrep-web-provider` under `@openfeature/web-sdk`, in Chromium: the bulk
//   endpoint, on the client key (flags made client-side), each context set in turn. A context
//   the server refuses leaves that provider on the previous context's values (it reports the
//   refusal as an error event, as static-context providers do), so the cases that expect
//   INVALID_CONTEXT are asked through the Node provider only.

import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { OpenFeature } from '@openfeature/server-sdk'
import type { EvaluationContext, EvaluationDetails, JsonValue } from '@openfeature/server-sdk'
import { OFREPProvider } from '@openfeature/ofrep-provider'
import { NO_BROWSER, openFeaturePage } from './page.js'
import { askedType, check, openFeatureContext, vectorFiles } from './vectors.js'
import type { Answer, Json } from './vectors.js'
import { NO_SERVER, VexilServer } from './vexil-server.js'

const files = vectorFiles()

describe('every vector through OFREP and @openfeature/ofrep-provider', { skip: NO_SERVER }, () => {
  after(async () => {
    await OpenFeature.close()
  })

  for (const file of files) {
    test(file.name, async () => {
      const server = new VexilServer()
      try {
        await server.start()
        await server.importFlags(file.flags, file.segments)
        await OpenFeature.setProviderAndWait(new OFREPProvider({
          baseUrl: `http://127.0.0.1:${server.httpPort}`,
          headers: [['Authorization', `Bearer ${server.serverKey}`]],
        }))
        const client = OpenFeature.getClient()
        const failures: string[] = []
        let asked = 0
        for (const c of file.cases) {
          const type = askedType(c)
          if (type === undefined) continue
          const context = openFeatureContext(c.context) as EvaluationContext
          let detail: EvaluationDetails<JsonValue>
          if (type === 'bool') detail = await client.getBooleanDetails(c.flag, c.default as boolean, context)
          else if (type === 'string') detail = await client.getStringDetails(c.flag, c.default as string, context)
          else if (type === 'number') detail = await client.getNumberDetails(c.flag, c.default as number, context)
          else detail = await client.getObjectDetails(c.flag, c.default as JsonValue, context)
          asked++
          failures.push(...check(c, detail))
        }
        assert.ok(asked > 0)
        assert.deepEqual(failures.slice(0, 8), [], `${failures.length} of ${asked} cases`)
      } finally {
        await OpenFeature.clearProviders()
        server.stop()
      }
    })
  }
})

/** What the page is given: plain data, so that page.evaluate's types stay shallow. */
type PageGroups = { baseUrl: string; key: string; groups: { context: unknown; asked: { flag: string; default: unknown; type: string }[] }[] }

describe('every vector through OFREP and @openfeature/ofrep-web-provider, in Chromium', { skip: NO_SERVER || NO_BROWSER }, () => {
  const page = openFeaturePage()

  for (const file of files) {
    test(file.name, async () => {
      const server = new VexilServer()
      try {
        await server.start()
        const flags = file.flags.map((flag) => ({ ...(flag as object), client_side: true }))
        await server.importFlags(flags, file.segments)
        // The cases of each context together: the web provider evaluates one context at a time.
        const byContext = new Map<string, { context: Record<string, Json>; cases: typeof file.cases }>()
        for (const c of file.cases) {
          if (askedType(c) === undefined || c.expect.reason.error_kind === 'INVALID_CONTEXT') continue
          const context = openFeatureContext(c.context) as Record<string, Json>
          const id = JSON.stringify(context)
          const group = byContext.get(id) ?? { context, cases: [] }
          group.cases.push(c)
          byContext.set(id, group)
        }
        const groups = [...byContext.values()]
        const given: PageGroups = {
          baseUrl: `http://127.0.0.1:${server.httpPort}`,
          key: server.clientKey,
          groups: groups.map((g) => ({
            context: g.context,
            asked: g.cases.map((c) => ({ flag: c.flag, default: c.default as unknown, type: askedType(c) as string })),
          })),
        }
        const answers = await page().evaluate(async ({ baseUrl, key, groups }: PageGroups) => {
          const { OpenFeature, OFREPWebProvider } = await import('/openfeature.js' as string)
          await OpenFeature.setContext(groups[0]?.context ?? {})
          await OpenFeature.setProviderAndWait(new OFREPWebProvider({
            baseUrl,
            headers: [['Authorization', `Bearer ${key}`]],
            pollInterval: 0,
            cacheMode: 'disabled',
          }))
          const client = OpenFeature.getClient()
          const out: unknown[][] = []
          for (const group of groups) {
            await OpenFeature.setContext(group.context)
            const answers: unknown[] = []
            for (const c of group.asked) {
              const detail = c.type === 'bool' ? client.getBooleanDetails(c.flag, c.default)
                : c.type === 'string' ? client.getStringDetails(c.flag, c.default)
                  : c.type === 'number' ? client.getNumberDetails(c.flag, c.default)
                    : client.getObjectDetails(c.flag, c.default)
              answers.push({
                value: detail.value, reason: detail.reason, variant: detail.variant,
                errorCode: detail.errorCode, errorMessage: detail.errorMessage, flagMetadata: detail.flagMetadata,
              })
            }
            out.push(answers)
          }
          await OpenFeature.clearProviders()
          return out
        }, given)
        const failures: string[] = []
        let asked = 0
        groups.forEach((group, i) => group.cases.forEach((c, j) => {
          asked++
          failures.push(...check(c, answers[i][j] as Answer))
        }))
        assert.ok(asked > 0)
        assert.deepEqual(failures.slice(0, 8), [], `${failures.length} of ${asked} cases`)
      } finally {
        server.stop()
      }
    })
  }
})
