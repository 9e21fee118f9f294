'use strict'
// Local evaluation with a server key: wait for the flags, evaluate, react to changes.
//
//   VEXIL_SDK_KEY=vxl-server-… node examples/quickstart.js

const { Client, Context } = require('@vexil/node')

async function main() {
  const client = new Client(process.env.VEXIL_SDK_KEY, {
    endpoint: process.env.VEXIL_ENDPOINT ?? 'http://127.0.0.1:50051',
    cacheDir: '.vexil-cache',
  })
  const status = await client.waitForInitialization(5000)
  console.log(`client ${status}`)

  // A plain object works everywhere; a Context made once is faster for repeated calls.
  const alice = new Context({ kind: 'user', key: 'alice', attributes: { plan: 'enterprise' } })
  console.log('new-checkout:', client.boolVariation('new-checkout', alice, false))
  console.log('detail:', client.variationDetail('new-checkout', alice, false))

  client.on('change', (change) => {
    console.log(`changed at version ${change.version}: ${change.flagKeys.join(', ')}`)
    console.log('new-checkout now:', client.boolVariation('new-checkout', alice, false))
  })
  client.track('checkout-completed', alice, 99)

  // Watch for changes for 30 seconds, then close (which flushes pending events).
  setTimeout(() => client.close(), 30_000)
}

main().catch((err) => {
  console.error(`${err.code ?? 'error'}: ${err.message}`)
  process.exit(1)
})
