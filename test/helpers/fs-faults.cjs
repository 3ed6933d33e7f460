// Loaded with `node --require test/helpers/fs-faults.cjs` into a CLI child process
// (no hook in the product): makes the file system misbehave as a real disk does,
// set by environment variables.
//
//   CXR_FAULT_FREE_BYTES=N      the disk has N bytes free: writes (fs/promises
//                               writeFile, FileHandle.write, fs.writeSync, which is
//                               what stdout into a file uses; not stderr) go through until N bytes
//                               are written in all, then write what fits and fail with
//                               ENOSPC, as write(2) does on a full disk.
//   CXR_FAULT_FULL_MATCH=text   only writes to paths containing `text` count and fail
//                               (stdout counts as the path "<stdout>").
//   CXR_FAULT_SLOW_RENAME_MS=N  fs/promises rename waits N ms first (a slow disk), so
//                               a signal can arrive while a file is being written.
'use strict';
const fs = require('node:fs');
const { isMainThread } = require('node:worker_threads');
const { syncBuiltinESMExports } = require('node:module');

// Worker threads load the preload too; the CLI writes from its main thread, which alone keeps the count.
if (!isMainThread) return;

const free = process.env.CXR_FAULT_FREE_BYTES;
const match = process.env.CXR_FAULT_FULL_MATCH;
const slowRename = Number(process.env.CXR_FAULT_SLOW_RENAME_MS ?? 0);
let left = free === undefined ? Infinity : Number(free);

function enospc(syscall) {
  const e = new Error(`ENOSPC: no space left on device, ${syscall}`);
  e.code = 'ENOSPC';
  e.errno = -28;
  e.syscall = syscall;
  return e;
}

/** How many of `n` bytes to `target` fit in the space left (all of them for a path that does not match). */
function take(target, n) {
  if (match !== undefined && !String(target).includes(match)) return n;
  const ok = Math.min(n, left);
  left -= ok;
  return ok;
}

const bytesOf = (data, encoding) => (typeof data === 'string' ? Buffer.from(data, typeof encoding === 'string' ? encoding : encoding?.encoding ?? 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength));

const p = fs.promises;
const writeFile = p.writeFile;
p.writeFile = async function (file, data, options) {
  if (typeof data !== 'string' && !ArrayBuffer.isView(data)) return writeFile.call(this, file, data, options);
  const bytes = bytesOf(data, options);
  const ok = take(file, bytes.length);
  if (ok === bytes.length) return writeFile.call(this, file, data, options);
  await writeFile.call(this, file, bytes.subarray(0, ok), options);
  throw enospc('write');
};

const open = p.open;
p.open = async function (file, ...rest) {
  const fh = await open.call(this, file, ...rest);
  const write = fh.write;
  fh.write = async function (buffer, offset, length, position) {
    if (typeof buffer === 'string' || !ArrayBuffer.isView(buffer)) return write.apply(this, arguments);
    const off = offset ?? 0;
    const len = length ?? buffer.byteLength - off;
    const ok = take(file, len);
    if (ok === 0 && len > 0) throw enospc('write');
    return write.call(this, buffer, off, ok, position);
  };
  return fh;
};

const rename = p.rename;
p.rename = async function (...args) {
  if (slowRename > 0) await new Promise((r) => setTimeout(r, slowRename));
  return rename.apply(this, args);
};

const writeSync = fs.writeSync;
fs.writeSync = function (fd, buffer, ...rest) {
  // stderr is the test's to read: it never fills up.
  if (fd === 2) return writeSync.call(this, fd, buffer, ...rest);
  const target = fd === 1 ? '<stdout>' : `<fd ${fd}>`;
  if (typeof buffer === 'string') {
    const bytes = Buffer.from(buffer, typeof rest[1] === 'string' ? rest[1] : 'utf8');
    const ok = take(target, bytes.length);
    if (ok === 0 && bytes.length > 0) throw enospc('write');
    return writeSync.call(this, fd, bytes, 0, ok);
  }
  const off = typeof rest[0] === 'number' ? rest[0] : 0;
  const len = typeof rest[1] === 'number' ? rest[1] : buffer.byteLength - off;
  const ok = take(target, len);
  if (ok === 0 && len > 0) throw enospc('write');
  return writeSync.call(this, fd, buffer, off, ok, typeof rest[2] === 'number' ? rest[2] : null);
};

// ESM imports of node:fs and node:fs/promises see the patched functions.
syncBuiltinESMExports();
