// Corrupt and hostile GGUF files through the public API: each is a thrown
// CxrError naming the file and the problem, and this process lives on.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CxrError, loadModel, readGgufInfo } from '../lib/index.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-hostile-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const good = path.join(dir, 'good.gguf');
await writeTinyLlama(good, 'q8_0', { quantize: (await import('../lib/runtime/tensors.js')).quantize });
const bytes = readFileSync(good);
const info = readGgufInfo(good);

function variant(name: string, mutate: (b: Buffer) => Buffer): string {
  const p = path.join(dir, name);
  writeFileSync(p, mutate(Buffer.from(bytes)));
  return p;
}

async function expectRejected(t: Test, file: string, code: string, message: RegExp): Promise<void> {
  const err = await loadModel({ model: file, threads: 1 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof CxrError, `${path.basename(file)} is rejected with a CxrError`);
  t.equal((err as CxrError).code, code);
  t.match((err as CxrError).message, file, 'the message names the file');
  t.match((err as CxrError).message, message);
}

t.test('truncated files', async (t) => {
  for (const cut of [0, 3, 16, 100, info.dataOffset - 1, info.dataOffset + 10, bytes.length - 1]) {
    await expectRejected(t, variant(`cut-${cut}.gguf`, (b) => b.subarray(0, cut)), 'ERR_GGUF', /./);
  }
});

t.test('bad magic and version', async (t) => {
  await expectRejected(t, variant('magic.gguf', (b) => (b.write('GGML', 0), b)), 'ERR_GGUF', /magic/i);
  await expectRejected(t, variant('v1.gguf', (b) => (b.writeUInt32LE(1, 4), b)), 'ERR_GGUF', /version 1/);
});

t.test('oversized counts never allocate absurd memory', async (t) => {
  await expectRejected(t, variant('tensors.gguf', (b) => (b.writeBigUInt64LE(1n << 60n, 8), b)), 'ERR_GGUF', /tensor/i);
  await expectRejected(t, variant('kvs.gguf', (b) => (b.writeBigUInt64LE(1n << 60n, 16), b)), 'ERR_GGUF', /./);
  // The first key's string length.
  await expectRejected(t, variant('keylen.gguf', (b) => (b.writeBigUInt64LE(1n << 62n, 24), b)), 'ERR_GGUF', /./);
});

t.test('a misaligned tensor offset', async (t) => {
  // The first tensor info's offset field is the last 8 bytes before the next
  // tensor's name; find it by its value pattern: tensor 1 (second) starts at a
  // nonzero aligned offset. Rewrite every occurrence of that exact u64 + 1.
  const second = info.tensors[1]!;
  const target = Buffer.alloc(8);
  target.writeBigUInt64LE(BigInt(second.offset));
  const header = bytes.subarray(0, info.dataOffset);
  const at = header.indexOf(target, header.indexOf(Buffer.from(second.name)));
  t.ok(at > 0, 'found the offset field');
  await expectRejected(t, variant('misaligned.gguf', (b) => (b.writeBigUInt64LE(BigInt(second.offset + 1), at), b)), 'ERR_GGUF', /align/i);
});

t.test('random bit flips: loads or throws, never crashes', async (t) => {
  let rejected = 0;
  let loaded = 0;
  let seed = 12345;
  for (let i = 0; i < 60; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const pos = seed % info.dataOffset; // flips in the header, where parsing happens
    const bit = 1 << (seed >>> 28) % 8;
    const p = variant(`flip-${i}.gguf`, (b) => ((b[pos] = b[pos]! ^ bit), b));
    try {
      const m = await loadModel({ model: p, threads: 1 });
      loaded++;
      await m.close();
    } catch (err) {
      t.ok(err instanceof CxrError && typeof err.code === 'string' && err.message.includes(p), `flip ${i} at ${pos}: ${(err as Error).message.slice(0, 90)}`);
      rejected++;
    }
  }
  t.equal(loaded + rejected, 60);
  t.ok(rejected > 0, `${rejected} rejected, ${loaded} loaded`);
});

t.test('a missing file and a directory', async (t) => {
  await expectRejected(t, path.join(dir, 'nope.gguf'), 'ERR_IO', /No such file/);
  await expectRejected(t, dir, 'ERR_IO', /not a regular file/);
  t.throws(() => readGgufInfo(path.join(dir, 'nope.gguf')), { code: 'ERR_IO' });
});

t.test('a valid GGUF that is not a LLaMA model', async (t) => {
  const { GgufWriter } = await import('../lib/convert/gguf-writer.js');
  const p = path.join(dir, 'clip.gguf');
  await new GgufWriter().setString('general.architecture', 'whisper').write(p);
  await expectRejected(t, p, 'ERR_MODEL', /architecture "whisper"/);
});
