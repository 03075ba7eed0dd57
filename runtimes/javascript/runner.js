// oscar-wasm generic JavaScript runtime: a wasi:cli/command component (componentize-js /
// StarlingMonkey) that runs the service's script handed over at invocation time.
//
// Build time (componentize-js pre-initialisation, a Wizer snapshot): this module's top level
// is evaluated once and snapshotted. It must not touch WASI (env, preopens, clocks): nothing
// here runs per invocation except `run`.
//
// Run time (each invocation): run.run() reads /oscar/app/script.js (read-only preopen the
// server mounts), compiles it as the body of an async function (so top-level `await` works)
// and calls it with the API below. The script is a plain script, not an ES module: no
// `import`/`export` statements; `require` knows only 'fs', 'node:fs' and 'process'.
//
// Script API (also on globalThis.oscar):
//   readFile(path) -> Uint8Array          readTextFile(path) -> string (UTF-8)
//   writeFile(path, Uint8Array|ArrayBuffer|string)   appendFile(path, data)
//   exists(path) -> bool   stat(path) -> {type, size}   readDir(path) -> [names]
//   mkdir(path, {recursive})   remove(path)
//   env  (object of the environment)   args (script arguments; [INPUT_FILE_PATH] if none)
//   exit(code = 0)  ends the run at once with that status (uncatchable, like process.exit)
//   process: {env, argv, exit, exitCode, stdout.write, stderr.write, cwd(), platform}
//   console.* (StarlingMonkey's: log/info/debug -> stdout, warn/error -> stderr)
//   fetch() (StarlingMonkey's, over wasi:http): only to the service's allowed_outbound_hosts,
//   anything else rejects with a TypeError (NetworkError); other web globals are
//   StarlingMonkey's.
// Paths: absolute, or relative to the initial cwd ("/" when the host gives none); a path
// outside every preopened folder fails with ENOENT. Errors are Error objects with a
// Node-like `code` (ENOENT, EACCES, EROFS, EISDIR, ...) and `wasi` (the WASI error-code).
//
// Exit status: 0 when the script finishes (or exit(0)); exit(n) -> n & 0xff (nonzero n whose
// low byte is 0 -> 1); process.exitCode = n is honoured at normal end; an uncaught exception
// or rejected top-level promise -> its stack on stderr, status 1; no script -> status 2.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { getEnvironment, getArguments, initialCwd } from 'wasi:cli/environment@0.2.12';
import { exitWithCode } from 'wasi:cli/exit@0.2.12';
import { getStdout } from 'wasi:cli/stdout@0.2.12';
import { getStderr } from 'wasi:cli/stderr@0.2.12';

const APP_DIR = '/oscar/app';
const DEFAULT_SCRIPT = APP_DIR + '/script.js';
const CHUNK = 1 << 20;
const DISPOSE = Symbol.dispose || Symbol.for('dispose');
const AsyncFunction = (async function () {}).constructor;

// ------------------------------------------------------------------ errors
const ERRNO = {
  access: ['EACCES', 'permission denied'],
  'not-permitted': ['EPERM', 'operation not permitted'],
  'read-only': ['EROFS', 'read-only file system'],
  exist: ['EEXIST', 'file already exists'],
  'no-entry': ['ENOENT', 'no such file or directory'],
  'not-directory': ['ENOTDIR', 'not a directory'],
  'is-directory': ['EISDIR', 'illegal operation on a directory'],
  'not-empty': ['ENOTEMPTY', 'directory not empty'],
  invalid: ['EINVAL', 'invalid argument'],
  'bad-descriptor': ['EBADF', 'bad file descriptor'],
  'insufficient-space': ['ENOSPC', 'no space left on device'],
  quota: ['EDQUOT', 'disk quota exceeded'],
  'file-too-large': ['EFBIG', 'file too large'],
  'name-too-long': ['ENAMETOOLONG', 'name too long'],
  loop: ['ELOOP', 'too many symbolic links'],
  unsupported: ['ENOTSUP', 'operation not supported'],
  'would-block': ['EAGAIN', 'resource temporarily unavailable'],
  io: ['EIO', 'i/o error'],
  busy: ['EBUSY', 'resource busy'],
};

function fsError(wasiCode, syscall, path) {
  const [code, text] = ERRNO[wasiCode] || ['EIO', String(wasiCode)];
  const err = new Error(`${code}: ${text}, ${syscall} '${path}'`);
  err.code = code;
  err.wasi = wasiCode;
  err.syscall = syscall;
  err.path = path;
  return err;
}

// Runs f(); a WASI error (thrown by the bindings as an error with a string `payload`)
// becomes a Node-like error naming the call and the path.
function wasi(syscall, path, f) {
  try {
    return f();
  } catch (e) {
    if (e && typeof e.payload === 'string') throw fsError(e.payload, syscall, path);
    throw e;
  }
}

function drop(resource) {
  try {
    resource?.[DISPOSE]?.();
  } catch {}
}

// ------------------------------------------------------------------ paths
let preopens = null; // [{ parts, dir }], longest first
let cwd = '/';

function splitAbs(path, base) {
  const parts = path.startsWith('/') ? [] : splitAbs(base, '/');
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  return parts;
}

function initPaths() {
  cwd = initialCwd() || '/';
  preopens = getDirectories()
    .map(([dir, name]) => ({ parts: splitAbs(name, cwd), dir }))
    .sort((a, b) => b.parts.length - a.parts.length);
}

// path -> [descriptor of the preopen holding it, path relative to that preopen]
function locate(path, syscall) {
  if (typeof path !== 'string') {
    if (path instanceof URL && path.protocol === 'file:') path = decodeURIComponent(path.pathname);
    else throw new TypeError(`${syscall}: path must be a string, got ${typeof path}`);
  }
  const parts = splitAbs(path, cwd);
  for (const p of preopens) {
    if (p.parts.length <= parts.length && p.parts.every((s, i) => s === parts[i])) {
      return [p.dir, parts.slice(p.parts.length).join('/') || '.'];
    }
  }
  const err = fsError('no-entry', syscall, path);
  err.message += ' (outside every preopened folder)';
  throw err;
}

const FOLLOW = { symlinkFollow: true };

function open(path, syscall, openFlags, flags) {
  const [dir, rel] = locate(path, syscall);
  return wasi(syscall, path, () => dir.openAt(FOLLOW, rel, openFlags, flags));
}

// ------------------------------------------------------------------ files
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

function toBytes(data) {
  if (typeof data === 'string') return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('data must be a string, Uint8Array, ArrayBuffer or typed array');
}

function readFile(path) {
  const fd = open(path, 'open', {}, { read: true });
  try {
    const chunks = [];
    let total = 0;
    for (;;) {
      const [bytes, eof] = wasi('read', path, () => {
        try {
          return fd.read(BigInt(CHUNK), BigInt(total));
        } catch (e) {
          // Reading a directory fails with bad-descriptor: say what Node says.
          if (e && e.payload === 'bad-descriptor' && fd.getType() === 'directory') throw fsError('is-directory', 'read', path);
          throw e;
        }
      });
      if (bytes.length) {
        chunks.push(bytes);
        total += bytes.length;
      }
      if (eof || bytes.length === 0) break;
    }
    if (chunks.length === 1) return chunks[0];
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  } finally {
    drop(fd);
  }
}

function readTextFile(path) {
  return decoder.decode(readFile(path));
}

function writeAt(fd, path, bytes, offset) {
  let done = 0;
  while (done < bytes.length) {
    const piece = bytes.subarray(done, Math.min(bytes.length, done + CHUNK));
    const n = Number(wasi('write', path, () => fd.write(piece, BigInt(offset + done))));
    if (n <= 0) throw fsError('io', 'write', path);
    done += n;
  }
}

function writeFile(path, data) {
  const bytes = toBytes(data);
  const fd = open(path, 'open', { create: true, truncate: true }, { write: true });
  try {
    writeAt(fd, path, bytes, 0);
  } finally {
    drop(fd);
  }
}

function appendFile(path, data) {
  const bytes = toBytes(data);
  const fd = open(path, 'open', { create: true }, { write: true });
  try {
    const size = Number(wasi('stat', path, () => fd.stat()).size);
    writeAt(fd, path, bytes, size);
  } finally {
    drop(fd);
  }
}

function stat(path) {
  const [dir, rel] = locate(path, 'stat');
  const s = wasi('stat', path, () => dir.statAt(FOLLOW, rel));
  return {
    type: s.type, // 'regular-file' | 'directory' | 'symbolic-link' | ...
    size: Number(s.size),
    isFile: () => s.type === 'regular-file',
    isDirectory: () => s.type === 'directory',
  };
}

function exists(path) {
  try {
    stat(path);
    return true;
  } catch (e) {
    if (e && e.code) return false;
    throw e;
  }
}

function readDir(path) {
  const fd = open(path, 'scandir', { directory: true }, { read: true });
  let stream;
  try {
    stream = wasi('scandir', path, () => fd.readDirectory());
    const names = [];
    for (;;) {
      const entry = wasi('scandir', path, () => stream.readDirectoryEntry());
      if (!entry) break;
      names.push(entry.name);
    }
    return names.sort();
  } finally {
    drop(stream);
    drop(fd);
  }
}

function mkdir(path, options = {}) {
  const recursive = !!(options && options.recursive);
  if (!recursive) {
    const [dir, rel] = locate(path, 'mkdir');
    wasi('mkdir', path, () => dir.createDirectoryAt(rel));
    return;
  }
  const [dir, rel] = locate(path, 'mkdir');
  if (rel === '.') return;
  let sofar = '';
  for (const part of rel.split('/')) {
    sofar = sofar ? sofar + '/' + part : part;
    try {
      dir.createDirectoryAt(sofar);
    } catch (e) {
      if (e && e.payload === 'exist') continue;
      if (e && typeof e.payload === 'string') throw fsError(e.payload, 'mkdir', path);
      throw e;
    }
  }
}

function remove(path) {
  const [dir, rel] = locate(path, 'rm');
  const s = wasi('rm', path, () => dir.statAt({}, rel));
  if (s.type === 'directory') wasi('rmdir', path, () => dir.removeDirectoryAt(rel));
  else wasi('unlink', path, () => dir.unlinkFileAt(rel));
}

// ------------------------------------------------------------------ stdio, exit
function writeStream(getStream, data) {
  const stream = getStream();
  try {
    const bytes = toBytes(typeof data === 'string' || ArrayBuffer.isView(data) ? data : String(data));
    for (let at = 0; at < bytes.length; at += 4096) {
      stream.blockingWriteAndFlush(bytes.subarray(at, Math.min(bytes.length, at + 4096)));
    }
  } finally {
    drop(stream);
  }
  return true;
}

function exitStatus(code) {
  if (code === undefined || code === null) return 0;
  const n = Math.trunc(Number(code));
  if (!Number.isFinite(n)) return 1;
  const s = n & 0xff;
  return s !== 0 || n === 0 ? s : 1;
}

function exit(code) {
  if (code === undefined && process.exitCode !== undefined) code = process.exitCode;
  exitWithCode(exitStatus(code)); // traps: the host reports exit status `code`
  throw new Error('unreachable: exit-with-code returned');
}

const process = {
  env: {},
  argv: [],
  exitCode: undefined,
  platform: 'wasi',
  exit,
  cwd: () => cwd,
  stdout: { write: (data) => writeStream(getStdout, data) },
  stderr: { write: (data) => writeStream(getStderr, data) },
};

// ------------------------------------------------------------------ errors on stderr
// The script's frames carry the runner's file name and a line offset ("runner.js line N >
// Function:L:C" in SpiderMonkey); show them as the script's own lines, and drop runner frames.
let scriptPath = DEFAULT_SCRIPT;
let fnLineOffset = 0;

function formatStack(stack) {
  const out = [];
  for (const line of String(stack).split('\n')) {
    if (!line) continue;
    const m = /^(.*)@(.*) > (?:Function|AsyncFunction|eval):(\d+):(\d+)$/.exec(line);
    if (m) {
      const fn = !m[1] || m[1] === 'anonymous' ? '<script>' : m[1].replace(/^anonymous\//, '<script>/');
      out.push(`    at ${fn} (${scriptPath}:${Number(m[3]) - fnLineOffset}:${m[4]})`);
    } else if (!/(?:^|[/@])(?:runner|initializer)\.js:/.test(line) && !/^@?$/.test(line)) {
      const f = /^(.*)@(.*)$/.exec(line);
      out.push(f ? `    at ${f[1] || '<anonymous>'} (${f[2]})` : '    ' + line);
    }
  }
  return out.join('\n');
}

function describe(e) {
  if (e instanceof Error || (e && typeof e === 'object' && 'stack' in e && 'message' in e)) {
    let s = `Uncaught ${e.name || 'Error'}: ${e.message}`;
    const stack = formatStack(e.stack || '');
    if (stack) s += '\n' + stack;
    if (e.cause !== undefined) s += '\nCaused by: ' + describe(e.cause).replace(/^Uncaught /, '');
    return s;
  }
  let v;
  try {
    v = typeof e === 'string' ? JSON.stringify(e) : String(e);
  } catch {
    v = Object.prototype.toString.call(e);
  }
  return `Uncaught ${v}`;
}

// ------------------------------------------------------------------ require shim
const fs = {
  readFileSync(path, options) {
    const enc = typeof options === 'string' ? options : options && options.encoding;
    const bytes = readFile(path);
    return enc ? decoder.decode(bytes) : bytes;
  },
  writeFileSync: (path, data) => writeFile(path, data),
  appendFileSync: (path, data) => appendFile(path, data),
  existsSync: (path) => exists(path),
  mkdirSync: (path, options) => mkdir(path, options),
  readdirSync: (path) => readDir(path),
  statSync: (path) => stat(path),
  rmSync: (path) => remove(path),
  unlinkSync: (path) => remove(path),
};

function require(name) {
  switch (name) {
    case 'fs':
    case 'node:fs':
      return fs;
    case 'process':
    case 'node:process':
      return process;
    default: {
      const err = new Error(`Cannot find module '${name}' (the oscar JS runtime has no module loader; only 'fs' and 'process')`);
      err.code = 'MODULE_NOT_FOUND';
      throw err;
    }
  }
}

// ------------------------------------------------------------------ run
const PARAMS = [
  'oscar', 'readFile', 'readTextFile', 'writeFile', 'appendFile', 'exists', 'stat', 'readDir',
  'mkdir', 'remove', 'env', 'args', 'exit', 'process', 'require',
];

// Line 1 of the script is line (1 + fnLineOffset) of the generated function's source.
async function measureLineOffset() {
  try {
    await new AsyncFunction(...PARAMS, 'throw new Error("probe")')();
  } catch (e) {
    const m = /> (?:Function|AsyncFunction|eval):(\d+):\d+/.exec(String(e.stack));
    if (m) return Number(m[1]) - 1;
  }
  return 0;
}

async function main() {
  initPaths();
  const env = Object.fromEntries(getEnvironment());
  process.env = env;
  scriptPath = env.OSCAR_JS_SCRIPT || DEFAULT_SCRIPT;

  let source;
  try {
    source = readTextFile(scriptPath);
  } catch (e) {
    process.stderr.write(`js runtime: no script at ${scriptPath} (is ${APP_DIR} preopened?): ${e.message}\n`);
    return 2;
  }
  if (source.charCodeAt(0) === 0xfeff) source = source.slice(1);
  if (source.startsWith('#!')) source = '//' + source.slice(2);

  // Like `node script.js ARGS`; with no args, the input file is the only argument.
  let args = getArguments().slice(1);
  if (args.length === 0 && env.INPUT_FILE_PATH) args = [env.INPUT_FILE_PATH];
  process.argv = ['oscar-js', scriptPath, ...args];

  const oscar = { readFile, readTextFile, writeFile, appendFile, exists, stat, readDir, mkdir, remove, env, args, exit, process };
  globalThis.oscar = oscar;
  globalThis.process = process;
  globalThis.require = require;

  let fn;
  try {
    fnLineOffset = await measureLineOffset();
    fn = new AsyncFunction(...PARAMS, source);
  } catch (e) {
    // SyntaxError: SpiderMonkey gives the line within the generated function source.
    let msg = `${scriptPath}: ${e.name}: ${e.message}`;
    if (typeof e.lineNumber === 'number') msg += ` (line ${e.lineNumber - fnLineOffset})`;
    if (/\b(?:import|export)\b/.test(e.message)) {
      msg += '\n(the script is not an ES module: no import/export; use the globals or require(\'fs\'))';
    }
    process.stderr.write(msg + '\n');
    return 1;
  }
  try {
    await fn(oscar, readFile, readTextFile, writeFile, appendFile, exists, stat, readDir, mkdir, remove, env, args, exit, process, require);
  } catch (e) {
    if (env.OSCAR_JS_RAW_STACK) process.stderr.write('raw stack:\n' + e.stack + '\n');
    process.stderr.write(describe(e) + '\n');
    return 1;
  }
  return exitStatus(process.exitCode);
}

export const run = {
  async run() {
    let status;
    try {
      status = await main();
    } catch (e) {
      // A failure of the runner itself (not of the script).
      try {
        process.stderr.write('js runtime: ' + describe(e) + '\n');
      } catch {}
      status = 1;
    }
    if (status === 1) return { tag: 'err', val: undefined }; // run() -> err: exit status 1
    if (status !== 0) exitWithCode(status);
  },
};
