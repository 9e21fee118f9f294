// Offline evaluation from a ruleset file, in TypeScript: no network at all.
//
//   node --experimental-strip-types examples/offline.mts flags.json   (Node 22.6+),
//   or compile with tsc; `tsc -p examples` type-checks it against index.d.ts.

import { Client, Context, type EvaluationDetail, type VexilError } from '@vexil/node'

const bootstrap = process.argv[2] ?? 'flags.json'
let client: Client
try {
  client = new Client('vxl-server-offline', { offline: true, bootstrap })
} catch (err) {
  const { code, message } = err as VexilError
  console.error(`${code}: ${message}`)
  process.exit(1)
}

const org = new Context({
  kind: 'multi',
  contexts: [
    { kind: 'user', key: 'alice' },
    { kind: 'organization', key: 'acme', attributes: { plan: 'pro' } },
  ],
})
const detail: EvaluationDetail = client.variationDetail('new-checkout', org, false)
console.log(detail.value, detail.reason.kind, detail.source)
const limit: number = client.numberVariation('upload-limit-mb', org, 10)
const theme: string = client.stringVariation('theme', { key: 'alice' }, 'light')
console.log({ limit, theme }, client.status().status)
await client.close()
