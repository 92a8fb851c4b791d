// Builds adapter.js into a component: node build.mjs WIT_DIR OUT_FILE
// (`jco componentize` is avoided on purpose: calling the API directly is more robust to paths.)
import { componentize } from '@bytecodealliance/componentize-js';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const [witPath, out] = process.argv.slice(2);
const sourcePath = fileURLToPath(new URL('./adapter.js', import.meta.url));
const { component } = await componentize({
  sourcePath,
  witPath,
  worldName: 'adapter',
  disableFeatures: ['random', 'stdio', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
