// Builds an adapter of this repository written with the JavaScript SDK into a component; each
// adapter's `build.mjs` calls it (`node build.mjs WIT_DIR OUT_FILE`, as `cargo xtask
// build-plugins` runs it).
//
// componentize-js takes one source file and does not resolve the adapter's relative import of
// the SDK, so this joins the two (no bundler dependency): the SDK with its `export` keywords
// dropped, then the adapter without its SDK import. Both keep their WIT (`dolphin:bridge/...`)
// imports, which componentize-js binds. `componentize` is passed in by the adapter's build
// script, which resolves it from the adapter's own `node_modules`.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK_IMPORT = /^import\s*\{([^}]*)\}\s*from\s*'\.\.\/\.\.\/plugin-sdk\/js\/sdk\.js';\s*$/m;

/** Builds `adapterUrl` (a file URL of the adapter's `adapter.js`) against `witPath` into `out`. */
export async function buildAdapter({ componentize, adapterUrl, witPath, out }) {
  const sdkPath = fileURLToPath(new URL('./sdk.js', import.meta.url));
  const sdk = (await readFile(sdkPath, 'utf8')).replace(/^export (?=(?:const|function|class) )/gm, '');
  const adapter = await readFile(fileURLToPath(adapterUrl), 'utf8');
  const imported = adapter.match(SDK_IMPORT);
  if (!imported) throw new Error('adapter.js must import the SDK as `import { ... } from \'../../plugin-sdk/js/sdk.js\';`');
  for (const name of imported[1].split(',').map((n) => n.trim()).filter(Boolean)) {
    if (!new RegExp(`^(?:const|function|class) ${name}\\b`, 'm').test(sdk)) throw new Error(`the SDK has no export ${name}`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'adapter-build-'));
  try {
    const sourcePath = join(dir, 'adapter.js');
    await writeFile(sourcePath, `${sdk}\n// ---- adapter.js ----\n${adapter.replace(SDK_IMPORT, '')}`);
    const { component } = await componentize({
      sourcePath,
      witPath,
      worldName: 'adapter',
      // `random` and `clocks` stay on: Math.random() / crypto.getRandomValues() and Date.now() read
      // the host's WASI random and wall clock when called. (Disabled, componentize-js would replace
      // them with a fixed-seed generator and the build's time.) No stdio or fetch/HTTP of its own:
      // adapters log and call vendors through the host.
      disableFeatures: ['stdio', 'http', 'fetch-event'],
    });
    await writeFile(out, component);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
