// Builds the demo client: bundles src/main.js (with replicache and replicache-dynamodb-client) into dist/app.js and copies
// the page and its stylesheet next to it. Usage: npm run build
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(here, 'src');
const dist = path.join(here, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

await build({
  entryPoints: [path.join(src, 'main.js')],
  outfile: path.join(dist, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  sourcemap: true,
  logLevel: 'warning',
});

for (const file of ['index.html', 'style.css']) {
  await copyFile(path.join(src, file), path.join(dist, file));
}

console.log(`built ${path.relative(process.cwd(), dist) || '.'}/ (app.js, index.html, style.css)`);
