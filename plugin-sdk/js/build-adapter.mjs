// Builds an adapter of this repository written with the JavaScript SDK into a component; each
// adapter's `build.mjs` calls it (`node build.mjs WIT_DIR OUT_FILE`, as `cargo xtask
// build-plugins` runs it).
//
// The adapter and the SDK are joined into the one source componentize-js takes by `join.mjs`
// (the adapter first, line for line; the SDK in a scope of its own). `componentize` is passed in
// by the adapter's build script, which resolves it from the adapter's own `node_modules`.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { joinAdapter, writeChecked } from './join.mjs';

/** Builds `adapterUrl` (a file URL of the adapter's `adapter.js`) against `witPath` into `out`. */
export async function buildAdapter({ componentize, adapterUrl, witPath, out }) {
  const sdkPath = fileURLToPath(new URL('./sdk.js', import.meta.url));
  const sdk = await readFile(sdkPath, 'utf8');
  const adapter = await readFile(fileURLToPath(adapterUrl), 'utf8');
  const source = joinAdapter({ adapter, sdk, isSdk: (specifier) => specifier === '../../plugin-sdk/js/sdk.js' });
  const dir = await mkdtemp(join(tmpdir(), 'adapter-build-'));
  try {
    const sourcePath = join(dir, 'adapter.js');
    await writeChecked(sourcePath, source);
    const { component } = await componentize({
      sourcePath,
      witPath,
      worldName: 'adapter',
      // `random` and `clocks` stay on: Math.random() / crypto.getRandomValues() and Date.now() read
      // the host's WASI random and wall clock when called. (Disabled, componentize-js would replace
      // them with a fixed-seed generator and the build's time.) `http` stays on too: `fetch()` sends
      // through wasi:http, which the bridge serves with the tenant's egress policy, as `http.send`.
      // No stdio (adapters log through the host), and no incoming `fetch` event.
      disableFeatures: ['stdio', 'fetch-event'],
    });
    await writeFile(out, component);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
