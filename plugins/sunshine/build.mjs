// Builds adapter.js into a component: node build.mjs WIT_DIR OUT_FILE
//
// componentize-js takes one source file and does not resolve the adapter's relative import of
// the SDK, so this joins the two (no bundler dependency): the SDK with its `export` keywords
// dropped, then the adapter without its SDK import. Both keep their WIT (`dolphin:bridge/...`)
// imports, which componentize-js binds.
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [witPath, out] = process.argv.slice(2);
const sdkPath = fileURLToPath(new URL('../../plugin-sdk/js/sdk.js', import.meta.url));
const adapterPath = fileURLToPath(new URL('./adapter.js', import.meta.url));
const SDK_IMPORT = /^import\s*\{([^}]*)\}\s*from\s*'\.\.\/\.\.\/plugin-sdk\/js\/sdk\.js';\s*$/m;

const sdk = (await readFile(sdkPath, 'utf8')).replace(/^export (?=(?:const|function|class) )/gm, '');
const adapter = await readFile(adapterPath, 'utf8');
const imported = adapter.match(SDK_IMPORT);
if (!imported) throw new Error('adapter.js must import the SDK as `import { ... } from \'../../plugin-sdk/js/sdk.js\';`');
for (const name of imported[1].split(',').map((n) => n.trim()).filter(Boolean)) {
  if (!new RegExp(`^(?:const|function|class) ${name}\\b`, 'm').test(sdk)) throw new Error(`the SDK has no export ${name}`);
}

const dir = await mkdtemp(join(tmpdir(), 'sunshine-build-'));
try {
  const sourcePath = join(dir, 'adapter.js');
  await writeFile(sourcePath, `${sdk}\n// ---- adapter.js ----\n${adapter.replace(SDK_IMPORT, '')}`);
  const { component } = await componentize({
    sourcePath,
    witPath,
    worldName: 'adapter',
    disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
  });
  await writeFile(out, component);
} finally {
  await rm(dir, { recursive: true, force: true });
}
