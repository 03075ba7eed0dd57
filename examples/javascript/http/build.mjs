// node build.mjs OUT.wasm — componentize app.js into a wasi:http/proxy component (world
// `proxy` in ./wit), with the componentize-js the JavaScript runtime pins (installed by
// runtimes/javascript/build.sh). Its fetch event handler is the component's
// wasi:http/incoming-handler.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';

const here = fileURLToPath(new URL('.', import.meta.url));
const { componentize } = await import(
  pathToFileURL(join(process.env.JS_RUNTIME_DEPS, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js')).href
);
const { component } = await componentize({
  sourcePath: join(here, 'app.js'),
  witPath: join(here, 'wit'),
  worldName: 'proxy',
});
await writeFile(process.argv[2], component);
