// The TypeScript weight generator against the Python reference's checksums, and the
// HF -> GGUF Q/K row permutation against RoPE itself (no engine involved).

import t from 'tap';
import { readFileSync } from 'node:fs';
import { addLlamaToGguf, recipes, type Vocab } from '../lib/convert/llama-gguf.js';
import { fileURLToPath } from 'node:url';
import {
  makeWeight,
  TINY_LLAMA_DIMS,
  tinyLlamaSpecs,
  tinyLlamaTensors,
  weightSeed,
  type TinyLlamaDims,
} from './helpers/prng-weights.js';
import { RecordingSink } from './helpers/recording-sink.js';

const GOLDEN = fileURLToPath(new URL('fixtures/tiny-llama/golden.json', import.meta.url));

interface Checksum {
  name: string;
  shape: number[];
  sum: number;
  fnv1a32: number;
  first: number[];
  last: number[];
  first_bits: number[];
}

const golden = JSON.parse(readFileSync(GOLDEN, 'utf8')) as {
  dims: Record<string, number>;
  checksums: Checksum[];
};

const dims: TinyLlamaDims = { ...TINY_LLAMA_DIMS, vocabSize: golden.dims['vocab_size']! };

function fnv1a32(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

t.test('FNV-1a seeds match the published test vectors', async (t) => {
  // From the FNV reference test suite; 0 is remapped to 1 so xorshift32 cannot stick.
  t.equal(fnv1a32(new Uint8Array()), 0x811c9dc5);
  t.equal(weightSeed('a'), 0xe40c292c);
  t.equal(weightSeed('foobar'), 0xbf9cf968);
});

t.test('golden dims are the ones the TS helpers build', async (t) => {
  t.same(
    {
      hiddenSize: golden.dims['hidden_size'],
      intermediateSize: golden.dims['intermediate_size'],
      numLayers: golden.dims['num_layers'],
      numHeads: golden.dims['num_heads'],
      numKvHeads: golden.dims['num_kv_heads'],
      rmsNormEps: golden.dims['rms_norm_eps'],
      ropeTheta: golden.dims['rope_theta'],
      contextLength: golden.dims['context_length'],
    },
    TINY_LLAMA_DIMS,
  );
});

t.test('every tensor is bit-identical to the Python reference', async (t) => {
  const specs = tinyLlamaSpecs(dims);
  t.same(
    specs.map((s) => s.name),
    golden.checksums.map((c) => c.name),
    'same tensors in the same order',
  );
  for (const c of golden.checksums) {
    const spec = specs.find((s) => s.name === c.name)!;
    const w = makeWeight(spec.name, spec.shape, spec.kind);
    t.same(spec.shape, c.shape, `${c.name} shape`);
    t.same(Array.from(new Uint32Array(w.buffer, 0, 4)), c.first_bits, `${c.name} first bits`);
    t.same(Array.from(w.subarray(0, 4)), c.first.map(Math.fround), `${c.name} first values`);
    t.same(Array.from(w.subarray(w.length - 4)), c.last.map(Math.fround), `${c.name} last values`);
    // Exact in any summation order (see tiny_llama.py), so === is the right test.
    let sum = 0;
    for (const v of w) sum += v;
    t.equal(sum, c.sum, `${c.name} sum`);
    t.equal(fnv1a32(new Uint8Array(w.buffer)), c.fnv1a32, `${c.name} FNV-1a of the float32 bytes`);
  }
});

// ---- the Q/K permutation, checked with RoPE ---------------------------------------------

const headDim = dims.hiddenSize / dims.numHeads;
const invFreq = Array.from({ length: headDim / 2 }, (_, i) => 1 / dims.ropeTheta ** ((2 * i) / headDim));

function matVec(w: Float32Array, rows: number, cols: number, x: Float32Array): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!;
    y[r] = s;
  }
  return y;
}

/** HF apply_rotary_pos_emb on one head: q * cos + rotate_half(q) * sin, angles duplicated over both halves. */
function ropeRotateHalf(q: Float64Array, pos: number): Float64Array {
  const half = headDim / 2;
  const rotated = Float64Array.from({ length: headDim }, (_, j) => (j < half ? -q[j + half]! : q[j - half]!));
  return Float64Array.from({ length: headDim }, (_, j) => {
    const angle = pos * invFreq[j % half]!;
    return q[j]! * Math.cos(angle) + rotated[j]! * Math.sin(angle);
  });
}

/** GGUF/llama.cpp "normal" RoPE on one head: rotate each adjacent pair (2i, 2i+1). */
function ropeAdjacent(q: Float64Array, pos: number): Float64Array {
  const out = new Float64Array(headDim);
  for (let i = 0; i < headDim / 2; i++) {
    const c = Math.cos(pos * invFreq[i]!);
    const s = Math.sin(pos * invFreq[i]!);
    out[2 * i] = q[2 * i]! * c - q[2 * i + 1]! * s;
    out[2 * i + 1] = q[2 * i]! * s + q[2 * i + 1]! * c;
  }
  return out;
}

function head(v: Float64Array, h: number): Float64Array {
  return v.slice(h * headDim, (h + 1) * headDim);
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Attention logits q_h . k_g of every query head against its GQA key head. */
function scores(
  wq: Float32Array,
  wk: Float32Array,
  rope: (q: Float64Array, pos: number) => Float64Array,
  xq: Float32Array,
  xk: Float32Array,
  pq: number,
  pk: number,
): number[] {
  const q = matVec(wq, dims.numHeads * headDim, dims.hiddenSize, xq);
  const k = matVec(wk, dims.numKvHeads * headDim, dims.hiddenSize, xk);
  const group = dims.numHeads / dims.numKvHeads;
  return Array.from({ length: dims.numHeads }, (_, h) =>
    dot(rope(head(q, h), pq), rope(head(k, Math.floor(h / group)), pk)),
  );
}

t.test('GGUF Q/K rows with adjacent-pair RoPE give the same attention as HF rows with rotate-half RoPE', async (t) => {
  const vocab: Vocab = {
    pieces: Array.from({ length: dims.vocabSize }, (_, i) => ({ piece: `p${i}`, score: 0, type: 1 })),
    bosId: 1,
    eosId: 2,
    unkId: 0,
  };
  const sink = new RecordingSink();
  addLlamaToGguf(sink, dims, vocab, tinyLlamaTensors(dims), {
    ...recipes.f32,
    quantize: () => {
      throw new Error('f32 needs no quantizer');
    },
  });

  for (const layer of [0, 1]) {
    const p = `model.layers.${layer}.self_attn.`;
    const wqHf = makeWeight(p + 'q_proj.weight', [dims.hiddenSize, dims.hiddenSize], 'linear');
    const wkHf = makeWeight(p + 'k_proj.weight', [dims.numKvHeads * headDim, dims.hiddenSize], 'linear');
    const wqGguf = await sink.f32(`blk.${layer}.attn_q.weight`);
    const wkGguf = await sink.f32(`blk.${layer}.attn_k.weight`);
    t.notSame(wqGguf, wqHf, `layer ${layer}: Q rows are reordered`);

    const xq = makeWeight('test.rope.xq', [dims.hiddenSize], 'embed');
    const xk = makeWeight('test.rope.xk', [dims.hiddenSize], 'embed');
    let worst = 0;
    let control = 0;
    for (const [pq, pk] of [[0, 0], [5, 2], [17, 17], [200, 3], [255, 254]] as const) {
      const want = scores(wqHf, wkHf, ropeRotateHalf, xq, xk, pq, pk);
      const got = scores(wqGguf, wkGguf, ropeAdjacent, xq, xk, pq, pk);
      for (let h = 0; h < want.length; h++) worst = Math.max(worst, Math.abs(got[h]! - want[h]!) / (1 + Math.abs(want[h]!)));
      // Control: without the permutation, adjacent-pair RoPE changes the scores, so the
      // comparison above can fail.
      const wrong = scores(wqHf, wkHf, ropeAdjacent, xq, xk, pq, pk);
      for (let h = 0; h < want.length; h++) control = Math.max(control, Math.abs(wrong[h]! - want[h]!));
    }
    t.ok(worst < 1e-12, `layer ${layer}: attention logits agree (worst relative error ${worst.toExponential(2)})`);
    t.ok(control > 1e-2, `layer ${layer}: unpermuted rows disagree (${control.toExponential(2)})`);

    // Each rotated GGUF query element is the HF element it was moved from.
    const pos = 9;
    const q = matVec(wqHf, dims.hiddenSize, dims.hiddenSize, xq);
    const qg = matVec(wqGguf, dims.hiddenSize, dims.hiddenSize, xq);
    let elemWorst = 0;
    for (let h = 0; h < dims.numHeads; h++) {
      const a = ropeRotateHalf(head(q, h), pos);
      const b = ropeAdjacent(head(qg, h), pos);
      for (let i = 0; i < headDim / 2; i++) {
        elemWorst = Math.max(elemWorst, Math.abs(b[2 * i]! - a[i]!), Math.abs(b[2 * i + 1]! - a[i + headDim / 2]!));
      }
    }
    t.ok(elemWorst < 1e-12, `layer ${layer}: rotated q' = permuted rotated q (worst ${elemWorst.toExponential(2)})`);
  }
});
