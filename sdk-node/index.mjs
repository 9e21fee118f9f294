// The ES module entry of @vexil/node: the same native classes as the CommonJS entry.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const binding = require('./index.js')

export const { Client, Context, TestData } = binding
export default binding
