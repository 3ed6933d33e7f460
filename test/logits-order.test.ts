// model.logits() among generations, through the public API: it runs after the
// calls made before it and before the calls made after it, so it never meets a
// running generation (the engine refuses that with ERR_BUSY: logits start from
// an empty cache). Calls on both sides of it still all succeed, and its values
// are those of a logits() call on an idle model.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadModel } from '../lib/index.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-logits-order-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'tiny.gguf');
await writeTinyLlama(file, 'f32');
const model = await loadModel({ model: file, threads: 1, parallel: 4 });
t.teardown(() => model.close());
const ids = Array.from({ length: 12 }, (_, i) => 3 + ((i * 37) % 900));
const idle = Array.from(await model.logits(ids));

t.test('generate, logits, generate at once: all succeed, in order, logits as on an idle model', async (t) => {
  const order: string[] = [];
  const gen = (name: string) =>
    model.generate({ tokens: ids.slice(0, 4), maxTokens: 40, temperature: 0, ignoreEos: true }).then((r) => {
      order.push(name);
      return r;
    });
  const a = gen('a');
  const l = model.logits(ids).then((v) => {
    order.push('logits');
    return v;
  });
  const b = gen('b');
  const c = gen('c');
  const [ra, lv, rb, rc] = await Promise.all([a, l, b, c]);
  t.same(Array.from(lv), idle, 'the same logits as on an idle model');
  t.equal(ra.text, rb.text, 'a and b: the same greedy text');
  t.equal(rb.text, rc.text);
  t.equal(order.indexOf('logits'), 1, `logits after a, before b and c (${order.join(', ')})`);
});

t.test('two logits calls between generations, and one waiting while an abort ends the generation before it', async (t) => {
  const ac = new AbortController();
  const a = model.generate({ tokens: ids.slice(0, 4), maxTokens: 200, temperature: 0, ignoreEos: true, signal: ac.signal });
  const l1 = model.logits(ids);
  const l2 = model.logits(ids.slice(0, 6));
  const b = model.generate({ tokens: ids.slice(0, 4), maxTokens: 4, temperature: 0 });
  ac.abort(new Error('stop a'));
  await t.rejects(a, { message: 'stop a' });
  t.same(Array.from(await l1), idle);
  t.same(Array.from(await l2), idle.slice(0, 6 * model.info.hparams.vocabSize));
  t.ok((await b).tokens.length >= 1);
});
