// The tiny models tools/gpu-check.sh runs on a GPU machine without Node are
// committed (test/fixtures/gpu-check/); this checks they are still exactly what
// the test helpers write, so the goldens they are compared with stay valid.
// CXR_WRITE_FIXTURES=1 rewrites them.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { writeTinyMmproj } from './helpers/tiny-vision.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/gpu-check/', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'cxr-gpu-fixtures-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const files: [string, (p: string) => Promise<unknown>][] = [
  ['tiny-llama.f32.gguf', (p) => writeTinyLlama(p, 'f32')],
  ['tiny-mmproj.f32.gguf', (p) => writeTinyMmproj(p, 'f32')],
];

for (const [name, write] of files) {
  t.test(`${name} is what the helpers write`, async (t) => {
    const fresh = path.join(dir, name);
    await write(fresh);
    const want = readFileSync(fresh);
    if (process.env.CXR_WRITE_FIXTURES === '1') writeFileSync(path.join(FIXTURES, name), want);
    const have = readFileSync(path.join(FIXTURES, name));
    t.equal(have.length, want.length, 'same size');
    t.ok(have.equals(want), 'same bytes (CXR_WRITE_FIXTURES=1 npx tap test/gpu-check-fixtures.test.ts rewrites them)');
  });
}
