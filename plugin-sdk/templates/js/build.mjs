// Builds adapter.js into {{wasm_file}}: `npm install && node build.mjs`.
//
// componentize-js takes one source file and does not resolve relative imports, so this joins
// the two (no bundler needed): sdk.js with its `export` keywords dropped, then adapter.js without
// its `import { ... } from './sdk.js';` line (keep that import on one line). The SDK's top-level
// names share the adapter's scope: don't redeclare them.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = (file) => fileURLToPath(new URL(file, import.meta.url));
const out = here('./{{wasm_file}}');
const SDK_IMPORT = /^import\s*\{([^}]*)\}\s*from\s*'\.\/sdk\.js';\s*$/m;

const sdk = (await readFile(here('./sdk.js'), 'utf8')).replace(/^export (?=(?:const|function|class) )/gm, '');
const adapter = await readFile(here('./adapter.js'), 'utf8');
const imported = adapter.match(SDK_IMPORT);
if (!imported) throw new Error("adapter.js must import the SDK on one line: import { ... } from './sdk.js';");
for (const name of imported[1].split(',').map((n) => n.trim()).filter(Boolean)) {
  if (!new RegExp(`^(?:const|function|class) ${name}\\b`, 'm').test(sdk)) throw new Error(`sdk.js has no export ${name}`);
}

const dir = await mkdtemp(join(tmpdir(), '{{name}}-build-'));
try {
  const sourcePath = join(dir, 'adapter.js');
  await writeFile(sourcePath, `${sdk}\n// ---- adapter.js ----\n${adapter.replace(SDK_IMPORT, '')}`);
  const { component } = await componentize({
    sourcePath,
    witPath: here('./wit'),
    worldName: 'adapter',
    // `random` and `clocks` stay on: Math.random() / crypto.getRandomValues() and Date.now() read
    // the host's WASI random and wall clock when called. (Disabled, componentize-js would replace
    // them with a fixed-seed generator and the build's time.) No stdio or fetch/HTTP of its own:
    // adapters log and call vendors through the host.
    disableFeatures: ['stdio', 'http', 'fetch-event'],
  });
  await writeFile(out, component);
  console.log(`built {{wasm_file}}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
