// A JavaScript service built by its author: a `wasi:cli/command` component made with
// componentize-js from this file, uploaded to /system/modules like any module. Use this path
// when the script runtime is not enough (your own build, your own bundled dependencies);
// otherwise a `script` on `oscar-wasm/javascript:1` needs no build at all.
//
// It reverses the order of the input's lines into reversed.txt, speaking WASI 0.2 directly:
// the preopened folders (the input's, read-only, and the output's) and the environment.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';

// The preopen holding an absolute path, and the path inside it.
function locate(path) {
  for (const [dir, name] of getDirectories()) {
    const prefix = name.endsWith('/') ? name : name + '/';
    if (path.startsWith(prefix)) return [dir, path.slice(prefix.length)];
  }
  throw new Error(`${path} is in no preopened folder`);
}

function readText(path) {
  const [dir, rel] = locate(path);
  const file = dir.openAt({}, rel, {}, { read: true });
  const chunks = [];
  let offset = 0n;
  for (;;) {
    const [bytes, eof] = file.read(1048576n, offset);
    chunks.push(bytes);
    offset += BigInt(bytes.length);
    if (eof || bytes.length === 0) break;
  }
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

function writeText(path, text) {
  const [dir, rel] = locate(path);
  const file = dir.openAt({}, rel, { create: true, truncate: true }, { write: true });
  const bytes = new TextEncoder().encode(text);
  let offset = 0;
  while (offset < bytes.length) {
    offset += Number(file.write(bytes.subarray(offset), BigInt(offset)));
  }
}

export const run = {
  run() {
    const env = Object.fromEntries(getEnvironment());
    const lines = readText(env.INPUT_FILE_PATH).split('\n').filter((l) => l !== '');
    writeText(env.TMP_OUTPUT_DIR + '/reversed.txt', lines.reverse().join('\n') + '\n');
    console.log(`reversed ${lines.length} lines`);
  },
};
