// The tokenizer, loaded from a GGUF vocabulary, against SentencePiece's own
// encodings (test/fixtures/tokenizer/goldens.json, made by
// tools/reference/make_tokenizer.py with the sentencepiece Python module).
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadModel } from '../lib/index.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';

interface Goldens {
  encode: { text: string; ids: number[]; decoded: string }[];
  encode_special: { text: string; ids: number[] }[];
  decode: { ids: number[]; decoded: string }[];
}
const g = JSON.parse(readFileSync(new URL('./fixtures/tokenizer/goldens.json', import.meta.url), 'utf8')) as Goldens;

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-tok-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = path.join(dir, 'tiny.gguf');
await writeTinyLlama(file, 'f32');
const model = await loadModel({ model: file, threads: 1 });
t.teardown(() => model.close());

t.ok(g.encode.length >= 200, `${g.encode.length} golden strings`);

t.test('encode equals SentencePiece on every golden string', async (t) => {
  const bad = g.encode.filter((c) => JSON.stringify(model.tokenize(c.text)) !== JSON.stringify(c.ids));
  t.same(bad.map((c) => c.text), [], 'strings whose encoding differs');
  // And with BOS, which is just one id in front.
  for (const c of g.encode.slice(0, 20)) t.same(model.tokenize(c.text, { bos: true }), [1, ...c.ids]);
});

t.test('decode(encode(s)) equals SentencePiece decode', async (t) => {
  const bad = g.encode.filter((c) => model.detokenize(c.ids) !== c.decoded);
  t.same(bad.map((c) => c.text), []);
});

t.test('decode of odd sequences (control, unknown, bytes) equals SentencePiece', async (t) => {
  for (const c of g.decode) t.equal(model.detokenize(c.ids), c.decoded, JSON.stringify(c.ids));
});

t.test('<s> and </s> become control tokens only with special', async (t) => {
  for (const c of g.encode_special) t.same(model.tokenize(c.text, { special: true }), c.ids, JSON.stringify(c.text));
});
