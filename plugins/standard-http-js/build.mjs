// Builds adapter.js, with the JavaScript SDK joined in, into a component:
// node build.mjs WIT_DIR OUT_FILE (see plugin-sdk/js/build-adapter.mjs).
import { componentize } from '@bytecodealliance/componentize-js';
import { buildAdapter } from '../../plugin-sdk/js/build-adapter.mjs';

const [witPath, out] = process.argv.slice(2);
await buildAdapter({ componentize, adapterUrl: new URL('./adapter.js', import.meta.url), witPath, out });
