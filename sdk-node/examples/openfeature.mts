// Vexil behind OpenFeature's server SDK, in TypeScript: the application code speaks only
// OpenFeature; the provider line is the one that names Vexil.
//
//   VEXIL_SDK_KEY=vxl-server-… node --experimental-strip-types examples/openfeature.mts
//   (Node 22.6+), or compile with tsc; `tsc -p examples` type-checks it.

import { OpenFeature } from '@openfeature/server-sdk'
import { VexilProvider } from '@vexil/node/openfeature'

const provider = new VexilProvider(process.env.VEXIL_SDK_KEY ?? 'vxl-server-example', {
  endpoint: process.env.VEXIL_ENDPOINT ?? 'http://127.0.0.1:50051',
  initTimeoutMs: 5000,
})
await OpenFeature.setProviderAndWait(provider)
const client = OpenFeature.getClient()
const context = { targetingKey: 'alice', plan: 'pro' }
const details = await client.getBooleanDetails('new-checkout', false, context)
console.log(details.value, details.reason, details.flagMetadata.vexilReason)
client.track('checkout-viewed', context, { value: 1 })
await OpenFeature.close()
