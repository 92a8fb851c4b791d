// Joins an adapter and the SDK into the one source componentize-js builds (it takes one file and
// does not resolve relative imports; no bundler needed):
//
// - the adapter comes first, line for line, so that build errors and stack traces name the
//   author's own lines of adapter.js; its one-line SDK import becomes, on the same line,
//   `const { config, http, ... } = __dolphinBridgeSdk();`;
// - the SDK follows inside that function (a hoisted function declaration, called once), so none
//   of its names share the adapter's scope: an adapter may declare `config`, `logger` or anything
//   else it does not import; the SDK's own WIT imports are renamed `__sdk_*` for the same reason.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

const IMPORT = /^import\s*\{([^}]*)\}\s*from\s*'([^']+)';[ \t]*$/gm;
const EXPORTED = /^export (?:const|function|class) ([A-Za-z_$][\w$]*)/gm;

/** `a`, `b as c` in an import list, as `[name, local]` pairs. */
function bindings(list) {
  return list
    .split(',')
    .map((binding) => binding.trim())
    .filter(Boolean)
    .map((binding) => {
      const [name, local] = binding.split(/\s+as\s+/);
      return [name.trim(), (local ?? name).trim()];
    });
}

/**
 * The joined source of `adapter` (adapter.js's text) and `sdk` (sdk.js's text). `isSdk(specifier)`
 * tells the adapter's import of the SDK (`'./sdk.js'`, `'../../plugin-sdk/js/sdk.js'`) from its
 * WIT imports. Throws, naming adapter.js and the line, when the import is missing, split over
 * lines, or names something the SDK does not export.
 */
export function joinAdapter({ adapter, sdk, isSdk }) {
  const exported = [...sdk.matchAll(EXPORTED)].map((m) => m[1]);
  let sdkImport;
  for (const m of adapter.matchAll(IMPORT)) {
    if (!isSdk(m[2])) continue;
    if (sdkImport) throw new Error(`adapter.js:${lineOf(adapter, m.index)}: import the SDK once`);
    sdkImport = m;
  }
  if (!sdkImport) {
    throw new Error("adapter.js must import the SDK on one line: import { ... } from './sdk.js';");
  }
  const line = lineOf(adapter, sdkImport.index);
  if (sdkImport[0].includes('\n')) throw new Error(`adapter.js:${line}: keep the SDK import on one line`);
  const imported = bindings(sdkImport[1]);
  for (const [name] of imported) {
    if (!exported.includes(name)) throw new Error(`adapter.js:${line}: the SDK has no export ${name}`);
  }
  const destructured = imported.map(([name, local]) => (name === local ? name : `${name}: ${local}`)).join(', ');
  const joinedAdapter =
    adapter.slice(0, sdkImport.index) +
    `const { ${destructured} } = __dolphinBridgeSdk();` +
    adapter.slice(sdkImport.index + sdkImport[0].length);

  const wit = [];
  const aliases = [];
  const body = sdk
    .replace(IMPORT, (_, list, specifier) => {
      const renamed = bindings(list).map(([name, local]) => {
        aliases.push(`const ${local} = __sdk_${local};`);
        return `${name} as __sdk_${local}`;
      });
      wit.push(`import { ${renamed.join(', ')} } from '${specifier}';`);
      return '';
    })
    .replace(/^export (?=(?:const|function|class) )/gm, '');
  return [
    joinedAdapter,
    '',
    '// ---- the dolphin-bridge SDK (sdk.js), joined by the build ----',
    ...wit,
    'function __dolphinBridgeSdk() {',
    '  if (__dolphinBridgeSdk.exports) return __dolphinBridgeSdk.exports;',
    ...aliases.map((alias) => `  ${alias}`),
    body,
    `  return (__dolphinBridgeSdk.exports = { ${exported.join(', ')} });`,
    '}',
    '',
  ].join('\n');
}

function lineOf(text, index) {
  return text.slice(0, index).split('\n').length;
}

/**
 * Writes `source` (a joined adapter) to `sourcePath` and checks its syntax with Node's own parser
 * (componentize-js says only that parsing failed); throws `adapter.js:LINE: SyntaxError: ...`
 * with the line and its marker. The folder gets a `package.json` making `.js` a module.
 */
export async function writeChecked(sourcePath, source) {
  await writeFile(join(dirname(sourcePath), 'package.json'), '{"type": "module"}\n');
  await writeFile(sourcePath, source);
  const run = spawnSync(process.execPath, ['--check', sourcePath], { encoding: 'utf8' });
  if (run.status === 0) return;
  const lines = run.stderr.split('\n');
  const line = lines[0].match(/:(\d+)$/)?.[1] ?? '?';
  const error = lines.find((text) => /^[A-Za-z]*Error: /.test(text)) ?? 'the source does not parse';
  const shown = lines.slice(1, 3).filter((text) => text.trim() !== '');
  throw new Error([`adapter.js:${line}: ${error}`, ...shown].join('\n'));
}

/**
 * Type-checks the project in `projectDir` (its `tsconfig.json`: adapter.js against `sdk.d.ts`)
 * with the project's own TypeScript, when it is installed; throws with tsc's report, whose lines
 * read `adapter.js(LINE,COLUMN): error TS...`.
 */
export function checkTypes(projectDir) {
  const tsc = join(projectDir, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!existsSync(tsc)) {
    console.warn('typescript is not installed (npm install): adapter.js is built without a type check');
    return;
  }
  const run = spawnSync(process.execPath, [tsc, '-p', projectDir, '--pretty', 'false'], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`adapter.js does not type-check:\n${(run.stdout + run.stderr).trim()}`);
}
