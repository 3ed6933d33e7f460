// make-seeds.mjs - seed corpora for the fuzz targets, from the test fixtures:
// GGUF files written by the package's own writer (with the tiny SentencePiece
// vocabulary and tensors of several types), texts from the tokenizer goldens,
// and images cut from the preprocessing fixtures. Needs the built package
// (dist/). Usage: node native/fuzz/make-seeds.mjs <out-dir>
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const out = process.argv[2];
if (!out) throw new Error('usage: node native/fuzz/make-seeds.mjs <out-dir>');
const { GgufWriter, parseSentencePieceModel, quantize } = await import(path.join(root, 'dist/lib/index.js'));
const fixtures = path.join(root, 'test/fixtures');
for (const t of ['gguf', 'tokenizer', 'image']) mkdirSync(path.join(out, t), { recursive: true });

// The vocabulary, as the converter writes it (lib/convert/llama-gguf.ts).
const sp = parseSentencePieceModel(readFileSync(path.join(fixtures, 'tokenizer/tiny-sp.model')), 'tiny-sp.model');
function vocabWriter() {
  const w = new GgufWriter();
  w.set('general.architecture', 'string', 'llama');
  w.set('tokenizer.ggml.model', 'string', 'llama');
  w.setArray('tokenizer.ggml.tokens', 'string', sp.pieces.map((p) => p.piece));
  w.setArray('tokenizer.ggml.scores', 'f32', Float32Array.from(sp.pieces, (p) => p.score));
  w.setArray('tokenizer.ggml.token_type', 'i32', Int32Array.from(sp.pieces, (p) => p.type));
  w.set('tokenizer.ggml.bos_token_id', 'u32', sp.bosId);
  w.set('tokenizer.ggml.eos_token_id', 'u32', sp.eosId);
  w.set('tokenizer.ggml.unknown_token_id', 'u32', sp.unkId);
  return w;
}
await vocabWriter().write(path.join(out, 'vocab.gguf'));
await vocabWriter().write(path.join(out, 'gguf', 'vocab.gguf'));

// Tensors of each stored type, and metadata of each value type.
const w = new GgufWriter();
w.set('general.architecture', 'string', 'llama').set('llama.context_length', 'u32', 64).set('x.i64', 'i64', -3n).set('x.f64', 'f64', 0.5).set('x.b', 'bool', true);
w.setArray('x.nested', 'u16', [1, 2, 3]).setArray('x.strs', 'string', ['a', '', 'ü']);
const f = new Float32Array(64).map((_, i) => Math.sin(i));
w.addTensor('a.f32', [8, 8], 'f32', new Uint8Array(f.buffer));
w.addTensor('b.q8_0', [32, 2], 'q8_0', quantize('q8_0', f, 2, 32));
w.addTensor('c.q4_0', [32, 2], 'q4_0', quantize('q4_0', f, 2, 32));
await w.write(path.join(out, 'gguf', 'tensors.gguf'));

// Texts to encode (mode byte 0, 2, 6) and the ids they give to decode (mode 1).
const goldens = JSON.parse(readFileSync(path.join(fixtures, 'tokenizer/goldens.json'), 'utf8'));
const cases = [...goldens.encode, ...goldens.encode_special];
let n = 0;
for (const c of cases) {
  const text = c.text;
  const ids = c.ids;
  writeFileSync(path.join(out, 'tokenizer', `text-${n}`), Buffer.concat([Buffer.from([n % 3 === 0 ? 0 : n % 3 === 1 ? 2 : 6]), Buffer.from(text)]));
  if (ids.length) writeFileSync(path.join(out, 'tokenizer', `ids-${n}`), Buffer.concat([Buffer.from([1]), Buffer.from(Int32Array.from(ids).buffer)]));
  n++;
}

// Images: a header (width, height, channels, output size, crop) then pixels.
const shapes = [[64, 48, 1], [31, 77, 3], [5, 5, 4], [200, 3, 2], [1, 1, 1]];
shapes.forEach(([wd, ht, ch], i) => {
  const head = Buffer.alloc(16);
  head.writeInt32LE(wd, 0);
  head.writeInt32LE(ht, 4);
  head[8] = ch;
  head[9] = 31 + i * 7;
  head[12] = 16;
  head[13] = 16;
  const px = Buffer.alloc(wd * ht * ch);
  for (let k = 0; k < px.length; k++) px[k] = (k * 37 + i * 11) & 0xff;
  writeFileSync(path.join(out, 'image', `shape-${i}`), Buffer.concat([head, px]));
});
console.log(`seeds in ${out}: ${n} tokenizer cases, 2 GGUF files, ${shapes.length} images`);
