// Prints what @vexil/web costs a page: each variant bundled and minified by esbuild (as an
// application's build would), raw and gzip -9 sizes, and where the bytes of the whole come from.
//
//   node scripts/size.mjs          the table
//   node scripts/size.mjs --json   the same figures as JSON
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const TARGET_GZIP = 30 * 1024

/** Leaves modules whose resolved path matches `pattern` out of the bundle. */
function leaveOut(name, pattern) {
  return {
    name,
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind === 'entry-point') return undefined
        const path = args.path.startsWith('.') ? join(args.resolveDir, args.path) : args.path
        return pattern.test(path) ? { path: args.path, external: true } : undefined
      })
    },
  }
}

async function measure(entry, plugins = [], external = []) {
  const result = await build({
    entryPoints: [join(root, entry)],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    platform: 'browser',
    write: false,
    metafile: true,
    external,
    plugins,
    logLevel: 'error',
  })
  const bytes = result.outputFiles[0].contents
  return { min: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length, metafile: result.metafile }
}

const dependencies = /^@bufbuild\//
const generated = /[/\\]gen[/\\]vexil[/\\]/
const variants = [
  ['@vexil/web, everything a page loads (SDK, generated code, protobuf wire runtime)', await measure('src/index.ts')],
  ['  SDK code and generated code (the protobuf wire runtime left out)', await measure('src/index.ts', [leaveOut('deps', dependencies)])],
  ['  SDK code alone (generated code and the protobuf wire runtime left out)', await measure('src/index.ts', [leaveOut('deps', dependencies), leaveOut('gen', generated)])],
  ['@vexil/web/react alone (the SDK and React left out)', await measure('src/react.ts', [leaveOut('sdk', /src[/\\](client|errors|types)/)], ['react'])],
]

// Where the bytes of the whole bundle come from (minified, before gzip).
const whole = variants[0][1].metafile
const parts = {}
for (const [path, input] of Object.entries(Object.values(whole.outputs)[0].inputs)) {
  const part = path.includes('node_modules/')
    ? path.split('node_modules/')[1].split('/').slice(0, 2).join('/')
    : generated.test(path)
      ? 'generated code (src/gen)'
      : 'SDK code (src)'
  parts[part] = (parts[part] ?? 0) + input.bytesInOutput
}

const kb = (n) => `${(n / 1024).toFixed(1)} KB`
if (process.argv.includes('--json')) {
  console.log(JSON.stringify({ variants: variants.map(([name, m]) => ({ name: name.trim(), min: m.min, gzip: m.gzip })), parts }, null, 2))
} else {
  console.log('bundle sizes (esbuild --bundle --minify, ES2020 module; gzip -9)')
  for (const [name, m] of variants) console.log(`  ${name.padEnd(84)} ${kb(m.min).padStart(9)} min ${kb(m.gzip).padStart(9)} gzip`)
  console.log('where the whole bundle comes from (minified bytes)')
  for (const [part, bytes] of Object.entries(parts).sort((a, b) => b[1] - a[1])) console.log(`  ${part.padEnd(84)} ${kb(bytes).padStart(9)} min`)
  const total = variants[0][1].gzip
  console.log(`target: the SDK as a page loads it <= ${kb(TARGET_GZIP)} gzip: ${total <= TARGET_GZIP ? 'met' : 'NOT met'} (${kb(total)})`)
}
