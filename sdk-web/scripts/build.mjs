// Generates src/gen from proto/ (ts-proto through buf), then builds dist/: the ES modules and their type declarations, emitted by tsc from src/ (so the
// .d.ts files are the API the code has), and dist/vexil-web.min.js, one self-contained
// minified module (dependencies included) for pages without a bundler.
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
execFileSync(join(root, 'node_modules/.bin/buf'), ['generate'], { cwd: root, stdio: 'inherit' })
rmSync(join(root, 'dist'), { recursive: true, force: true })
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], {
  stdio: 'inherit',
})
await build({
  entryPoints: [join(root, 'src/index.ts')],
  outfile: join(root, 'dist/vexil-web.min.js'),
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  platform: 'browser',
  sourcemap: true,
  sourcesContent: false,
  legalComments: 'eof',
  logLevel: 'warning',
})
