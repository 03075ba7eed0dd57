// node build.mjs OUT.wasm — componentize runner.js against wit/ (world `command`).
// componentize-js is loaded from $JS_RUNTIME_DEPS/node_modules (installed by build.sh).
import { writeFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';

const here = fileURLToPath(new URL('.', import.meta.url));
const deps = process.env.JS_RUNTIME_DEPS || here;
const { componentize, version } = await import(
  pathToFileURL(join(deps, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js')).href
);
const out = process.argv[2];
const { component } = await componentize({
  sourcePath: join(here, 'runner.js'),
  witPath: join(here, 'wit'),
  worldName: 'command',
  // fetch() goes through wasi:http's outgoing handler, which the server opens only to the
  // service's allowed_outbound_hosts; a command has no fetch-event handler. stdio, random and
  // clocks stay (console.*, crypto.getRandomValues/Math.random, Date.now/setTimeout).
  disableFeatures: ['fetch-event'],
});
await writeFile(out, component);
console.log(`componentize-js ${version}: wrote ${out}`);
