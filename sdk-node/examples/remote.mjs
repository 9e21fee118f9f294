// Remote evaluation with a mobile or client key, as an ES module: the server evaluates for
// the identified context; identify switches it.
//
//   VEXIL_SDK_KEY=vxl-mobile-… node examples/remote.mjs

import { Client } from '@vexil/node'

const client = new Client(process.env.VEXIL_SDK_KEY, {
  endpoint: process.env.VEXIL_ENDPOINT ?? 'http://127.0.0.1:50051',
  context: { kind: 'user', key: 'alice' },
})
console.log('status:', await client.waitForInitialization(5000))
console.log('flags for alice:', client.allFlags({ kind: 'user', key: 'alice' }))

const bob = { kind: 'user', key: 'bob' }
if (await client.identify(bob, 5000)) {
  console.log('flags for bob:', client.allFlags(bob))
}
await client.close()
