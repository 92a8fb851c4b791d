// Builds adapter.js into {{wasm_file}}: `npm install && node build.mjs`.
//
// `join.mjs` joins adapter.js and sdk.js into the one source componentize-js takes: adapter.js
// first, line for line (errors and stack traces name its lines), with its one-line
// `import { ... } from './sdk.js';` kept on one line; the SDK in a scope of its own. Then
// `tsc` checks adapter.js against the SDK's types (`sdk.d.ts`, `tsconfig.json`).
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { checkTypes, joinAdapter, writeChecked } from './join.mjs';

const here = (file) => fileURLToPath(new URL(file, import.meta.url));
const out = here('./{{wasm_file}}');

const source = joinAdapter({
  adapter: await readFile(here('./adapter.js'), 'utf8'),
  sdk: await readFile(here('./sdk.js'), 'utf8'),
  isSdk: (specifier) => specifier === './sdk.js',
});

const dir = await mkdtemp(join(tmpdir(), '{{name}}-build-'));
try {
  const sourcePath = join(dir, 'adapter.js');
  await writeChecked(sourcePath, source);
  checkTypes(here('.'));
  const { component } = await componentize({
    sourcePath,
    witPath: here('./wit'),
    worldName: 'adapter',
    // `random` and `clocks` stay on: Math.random() / crypto.getRandomValues() and Date.now() read
    // the host's WASI random and wall clock when called. (Disabled, componentize-js would replace
    // them with a fixed-seed generator and the build's time.) `http` stays on too: `fetch()` sends
    // through wasi:http, which the bridge serves with the tenant's egress policy, as `http.send`.
    // No stdio (adapters log through the host), and no incoming `fetch` event.
    disableFeatures: ['stdio', 'fetch-event'],
  });
  await writeFile(out, component);
  console.log(`built {{wasm_file}}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
