// The ES module entry of @vexil/node/openfeature: the same provider as the CommonJS entry.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const provider = require('./openfeature.js')

export const { VexilProvider, toVexilContext, toResolution } = provider
export default provider
