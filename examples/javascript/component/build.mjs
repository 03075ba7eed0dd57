// node build.mjs OUT.wasm — componentize app.js against the WIT the server runs (world
// `command`, wasi:cli/command 0.2.12, in runtimes/javascript/wit), with the componentize-js
// that the JavaScript runtime pins (installed by runtimes/javascript/build.sh).
import { writeFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';

const here = fileURLToPath(new URL('.', import.meta.url));
const { componentize } = await import(
  pathToFileURL(join(process.env.JS_RUNTIME_DEPS, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js')).href
);
const { component } = await componentize({
  sourcePath: join(here, 'app.js'),
  witPath: join(here, '../../../runtimes/javascript/wit'),
  worldName: 'command',
  // The server links no wasi:http.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(process.argv[2], component);
