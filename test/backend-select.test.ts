// Choosing where the model runs: loadModel({ backend, device }) and the CLI's
// --backend/--device, on the addon `npm install` builds (CPU only). `auto`
// falls back to the CPU and says why; `cuda` fails with what to do.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadModel } from '../lib/index.js';
import { cleanEnv, imageBytes, runCli, writeTinyCxrModel } from './helpers/cli.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-backend-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'tiny.gguf');
await writeTinyLlama(file, 'f32');

// Whether this addon was built with the CUDA backend (npm run build:cuda): the
// reason auto gives says so. These tests cover the CPU-only addon and a CUDA
// build on a machine without a GPU.
const probe = await loadModel({ model: file, threads: 1 });
const cudaBuilt = !/no CUDA backend/.test(probe.info.runtime.backendReason);
const onGpu = probe.info.runtime.backend === 'cuda';
await probe.close();

t.test("backend 'auto' (the default) picks the CPU here and says why", { skip: onGpu && 'a GPU is present' }, async (t) => {
  for (const opts of [{}, { backend: 'auto' as const }]) {
    const m = await loadModel({ model: file, threads: 1, ...opts });
    t.teardown(() => m.close());
    t.equal(m.info.runtime.backend, 'cpu');
    t.equal(m.info.runtime.device, undefined, 'no device on the CPU');
    if (cudaBuilt) t.match(m.info.runtime.backendReason, /^auto: CUDA not usable \(.+\), so the CPU$/);
    else t.equal(m.info.runtime.backendReason, 'auto: this build of cxr-llava has no CUDA backend: build it from source with `npm run build:cuda` (needs the CUDA toolkit and cmake), so the CPU');
    const r = await m.generate({ prompt: 'hello', raw: true, temperature: 0, maxTokens: 4 });
    t.ok(r.tokens.length > 0, 'and it runs');
  }
});

t.test("backend 'cpu' says it was asked for", async (t) => {
  const m = await loadModel({ model: file, threads: 1, backend: 'cpu' });
  t.teardown(() => m.close());
  t.equal(m.info.runtime.backend, 'cpu');
  t.equal(m.info.runtime.backendReason, 'cpu: asked for');
});

t.test("backend 'cuda' without CUDA is a clear ERR_BACKEND", { skip: onGpu && 'a GPU is present' }, async (t) => {
  await t.rejects(loadModel({ model: file, backend: 'cuda' }), {
    code: 'ERR_BACKEND',
    message: cudaBuilt ? /^CUDA backend: / : /has no CUDA backend: build it from source with `npm run build:cuda`/,
  });
  await t.rejects(loadModel({ model: file, backend: 'cuda', device: 3 }), { code: 'ERR_BACKEND' });
});

t.test('bad backend or device options are usage errors', async (t) => {
  await t.rejects(loadModel({ model: file, backend: 'gpu' as never }), {
    code: 'ERR_INVALID_ARG',
    message: /backend/,
  });
  await t.rejects(loadModel({ model: file, device: -1 }), { code: 'ERR_INVALID_ARG', message: /device/ });
  await t.rejects(loadModel({ model: file, device: 1.5 }), { code: 'ERR_INVALID_ARG', message: /device/ });
});

t.test('the CLI: --backend choices, --device range, and the cuda error as one line', async (t) => {
  const env = cleanEnv(dir);
  const { model } = await writeTinyCxrModel(path.join(dir, 'cli-model'));
  const img = path.join(dir, 'x.png');
  writeFileSync(img, await imageBytes(64, 64, 1));
  const bad = await runCli(['report', img, '--model', model, '--backend', 'gpu'], { env });
  t.equal(bad.code, 2);
  t.equal(bad.stderr, "error: option '--backend <name>' argument 'gpu' is invalid. Allowed choices are auto, cpu, cuda.\n");
  const dev = await runCli(['report', img, '--model', model, '--device', 'x'], { env });
  t.equal(dev.code, 2);
  t.match(dev.stderr, /^error: option '--device <n>' argument 'x' is invalid/);
  if (!onGpu) {
    const r = await runCli(['report', img, '--model', model, '--backend', 'cuda'], { env });
    t.equal(r.code, 1);
    t.match(r.stderr, cudaBuilt ? /^error: CUDA backend: [^\n]+\n$/ : /^error: this build of cxr-llava has no CUDA backend: build it from source with `npm run build:cuda` \(needs the CUDA toolkit and cmake\)\n$/);
  }
  const ok = await runCli(['report', img, '--model', model, '--backend', 'cpu', '--max-tokens', '2'], { env });
  t.equal(ok.code, 0, ok.stderr);
});
