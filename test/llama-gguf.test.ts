// addLlamaToGguf: keys, tensor names and shapes, type recipes and error messages,
// recorded through a stand-in writer (no file, no engine).

import t from 'tap';
import {
  addLlamaToGguf,
  fitType,
  hfToGgufRopeRows,
  recipes,
  useMoreBits,
  type LlamaHParams,
  type LlamaRecipe,
  type Quantizer,
  type Vocab,
} from '../lib/convert/llama-gguf.js';
import { makeWeight, TINY_LLAMA_DIMS, tinyLlamaTensors } from './helpers/prng-weights.js';
import { RecordingSink } from './helpers/recording-sink.js';

const hp: LlamaHParams = { ...TINY_LLAMA_DIMS, vocabSize: 40 };

function vocabOf(n: number, extra: Partial<Vocab> = {}): Vocab {
  return {
    pieces: Array.from({ length: n }, (_, i) => ({ piece: `▁p${i}`, score: -i / 2, type: i < 3 ? 3 : 1 })),
    bosId: 1,
    eosId: 2,
    unkId: 0,
    ...extra,
  };
}

const noQuantizer: Quantizer = (type) => {
  throw new Error(`unexpected quantize(${type})`);
};

function record(h: LlamaHParams, recipe: LlamaRecipe, quantize: Quantizer = noQuantizer, vocab = vocabOf(h.vocabSize)) {
  const sink = new RecordingSink();
  addLlamaToGguf(sink, h, vocab, tinyLlamaTensors(h), { ...recipe, quantize, name: 'unit' });
  return sink;
}

t.test('metadata follows llama.cpp key conventions', async (t) => {
  const sink = record(hp, recipes.f32, noQuantizer, vocabOf(hp.vocabSize, { padId: 3 }));
  const want: Record<string, [string, unknown]> = {
    'general.architecture': ['string', 'llama'],
    'general.name': ['string', 'unit'],
    'general.file_type': ['u32', 0],
    'llama.vocab_size': ['u32', 40],
    'llama.context_length': ['u32', 256],
    'llama.embedding_length': ['u32', 64],
    'llama.block_count': ['u32', 2],
    'llama.feed_forward_length': ['u32', 160],
    'llama.rope.dimension_count': ['u32', 16],
    'llama.attention.head_count': ['u32', 4],
    'llama.attention.head_count_kv': ['u32', 2],
    'llama.attention.layer_norm_rms_epsilon': ['f32', 1e-6],
    'llama.rope.freq_base': ['f32', 10000],
    'tokenizer.ggml.model': ['string', 'llama'],
    'tokenizer.ggml.bos_token_id': ['u32', 1],
    'tokenizer.ggml.eos_token_id': ['u32', 2],
    'tokenizer.ggml.unknown_token_id': ['u32', 0],
    'tokenizer.ggml.padding_token_id': ['u32', 3],
    'tokenizer.ggml.add_bos_token': ['bool', true],
    'tokenizer.ggml.add_eos_token': ['bool', false],
  };
  for (const [key, [type, value]] of Object.entries(want)) {
    t.same(sink.keys.get(key), { type, value }, key);
  }
  t.same(sink.keys.get('tokenizer.ggml.tokens')?.type, 'string[]');
  t.same((sink.value('tokenizer.ggml.tokens') as string[]).slice(0, 2), ['▁p0', '▁p1']);
  t.same((sink.value('tokenizer.ggml.scores') as number[]).slice(0, 3), [0, -0.5, -1]);
  t.same(sink.keys.get('tokenizer.ggml.token_type')?.type, 'i32[]');
  t.same((sink.value('tokenizer.ggml.token_type') as number[]).slice(2, 4), [3, 1]);
  t.notOk(sink.keys.has('general.quantization_version'), 'no quantization version for f32');
  t.equal(sink.keys.size, Object.keys(want).length + 3);

  const noPad = record(hp, recipes.f32);
  t.notOk(noPad.keys.has('tokenizer.ggml.padding_token_id'), 'no padding id when the vocabulary has none');
});

t.test('tensors get GGUF names, reversed shapes and converted data', async (t) => {
  const sink = record(hp, recipes.f32);
  const names = [...sink.tensors.keys()];
  t.equal(names.length, 3 + 9 * hp.numLayers);
  t.same(sink.tensors.get('token_embd.weight')?.ne, [64, 40]);
  t.same(sink.tensors.get('output.weight')?.ne, [64, 40]);
  t.same(sink.tensors.get('output_norm.weight')?.ne, [64]);
  t.same(sink.tensors.get('blk.1.attn_norm.weight')?.ne, [64]);
  t.same(sink.tensors.get('blk.1.ffn_norm.weight')?.ne, [64]);
  t.same(sink.tensors.get('blk.1.attn_q.weight')?.ne, [64, 64]);
  t.same(sink.tensors.get('blk.1.attn_k.weight')?.ne, [64, 32]);
  t.same(sink.tensors.get('blk.1.attn_v.weight')?.ne, [64, 32]);
  t.same(sink.tensors.get('blk.1.attn_output.weight')?.ne, [64, 64]);
  t.same(sink.tensors.get('blk.1.ffn_gate.weight')?.ne, [64, 160]);
  t.same(sink.tensors.get('blk.1.ffn_up.weight')?.ne, [64, 160]);
  t.same(sink.tensors.get('blk.1.ffn_down.weight')?.ne, [160, 64]);

  // V, O, FFN and the embeddings are copied; only Q and K rows move.
  t.same(await sink.f32('blk.1.attn_v.weight'), makeWeight('model.layers.1.self_attn.v_proj.weight', [32, 64], 'linear'));
  t.same(await sink.f32('output.weight'), makeWeight('lm_head.weight', [40, 64], 'linear'));
  t.same(await sink.f32('token_embd.weight'), makeWeight('model.embed_tokens.weight', [40, 64], 'embed'));
  const kHf = makeWeight('model.layers.0.self_attn.k_proj.weight', [32, 64], 'linear');
  const kGguf = await sink.f32('blk.0.attn_k.weight');
  // K has 2 heads of 16 rows: GGUF row 16 + 2i + 1 is HF row 16 + i + 8.
  for (const [gguf, hf] of [[0, 0], [1, 8], [2, 1], [15, 15], [16, 16], [17, 24], [31, 31]] as const) {
    t.same(kGguf.subarray(gguf * 64, gguf * 64 + 64), kHf.subarray(hf * 64, hf * 64 + 64), `K row ${gguf} is HF row ${hf}`);
  }
});

t.test('hfToGgufRopeRows pairs row i with row i + headDim/2', async (t) => {
  // 2 heads of 4 rows, 1 column: values name their HF row.
  t.same(Array.from(hfToGgufRopeRows(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 2, 4, 1)), [0, 2, 1, 3, 4, 6, 5, 7]);
  t.throws(() => hfToGgufRopeRows(new Float32Array(6), 2, 4, 1), {
    message: 'cannot permute 6 values as 2 heads x 4 rows x 1 columns',
  });
});

t.test('recipes carry llama.cpp file types and choose types per tensor', async (t) => {
  t.same(
    Object.fromEntries(Object.entries(recipes).map(([k, r]) => [k, r.fileType])),
    { f32: 0, f16: 1, bf16: 32, q8_0: 7, q4_0: 2, q4_k_m: 15 },
  );
  const calls: string[] = [];
  const fake: Quantizer = (type, data, rows, cols) => {
    calls.push(`${type} ${rows}x${cols} ${data.length}`);
    const size = { q8_0: 34 / 32, f16: 2, q4_0: 18 / 32, q4_k: 144 / 256, q6_k: 210 / 256, bf16: 2, f32: 4 }[type];
    return new Uint8Array(rows * cols * size);
  };
  const q8 = record(hp, recipes.q8_0, fake);
  t.equal(q8.tensors.get('blk.0.attn_norm.weight')?.type, 'f32', 'norms stay f32');
  t.equal(q8.tensors.get('token_embd.weight')?.type, 'q8_0');
  t.equal(q8.tensors.get('output.weight')?.type, 'q8_0');
  t.same(q8.keys.get('general.quantization_version'), { type: 'u32', value: 2 });
  await q8.tensors.get('blk.0.ffn_down.weight')!.data();
  t.same(calls, ['q8_0 64x160 10240'], 'quantizer gets PyTorch rows x cols');

  // The golden model's rows (64, 160) are not multiples of 256: every K-quant falls back to q8_0.
  const tinyKm = record(hp, recipes.q4_k_m, fake);
  for (const [name, tensor] of tinyKm.tensors) {
    t.equal(tensor.type, tensor.ne.length === 1 ? 'f32' : 'q8_0', `tiny q4_k_m ${name}`);
  }
  t.equal(fitType('q4_k', 96), 'q8_0');
  t.equal(fitType('q6_k', 48), 'f16');
  t.equal(fitType('q8_0', 48), 'f16');
  t.equal(fitType('q4_k', 512), 'q4_k');
});

t.test('q4_k_m gives q6_k to output and to attn_v/ffn_down of the layers llama.cpp picks', async (t) => {
  // LLaMA-2-7B's layer count with small matrices; only the plan is inspected.
  const big: LlamaHParams = { ...hp, hiddenSize: 256, intermediateSize: 512, numLayers: 32, numHeads: 4, numKvHeads: 4 };
  const sink = record(big, recipes.q4_k_m);
  const moreBits = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
  t.same(
    Array.from({ length: 32 }, (_, i) => i).filter((i) => useMoreBits(i, 32)),
    moreBits,
  );
  for (let i = 0; i < 32; i++) {
    const want = moreBits.includes(i) ? 'q6_k' : 'q4_k';
    t.equal(sink.tensors.get(`blk.${i}.attn_v.weight`)?.type, want, `blk.${i}.attn_v`);
    t.equal(sink.tensors.get(`blk.${i}.ffn_down.weight`)?.type, want, `blk.${i}.ffn_down`);
    t.equal(sink.tensors.get(`blk.${i}.attn_q.weight`)?.type, 'q4_k');
    t.equal(sink.tensors.get(`blk.${i}.ffn_up.weight`)?.type, 'q4_k');
    t.equal(sink.tensors.get(`blk.${i}.ffn_norm.weight`)?.type, 'f32');
  }
  t.equal(sink.tensors.get('output.weight')?.type, 'q6_k');
  t.equal(sink.tensors.get('token_embd.weight')?.type, 'q4_k');
  t.same(sink.keys.get('general.file_type'), { type: 'u32', value: 15 });
});

t.test('errors name the tensor or parameter', async (t) => {
  const tensors = tinyLlamaTensors(hp);
  const vocab = vocabOf(hp.vocabSize);
  const opts = { ...recipes.f32, quantize: noQuantizer };
  const badK = { ...tensors, layers: tensors.layers.map((l, i) => (i === 1 ? { ...l, k: { ...l.k, shape: [64, 64] } } : l)) };
  t.throws(() => addLlamaToGguf(new RecordingSink(), hp, vocab, badK, opts), {
    message: 'tensor blk.1.attn_k.weight (layers[1].k): expected shape [32, 64] but got [64, 64]',
  });
  t.throws(() => addLlamaToGguf(new RecordingSink(), { ...hp, numLayers: 3 }, vocab, tensors, opts), {
    message: 'LLaMA tensors: 2 layers given but numLayers is 3',
  });
  t.throws(() => addLlamaToGguf(new RecordingSink(), { ...hp, numKvHeads: 3 }, vocab, tensors, opts), {
    message: 'LLaMA hparams: numHeads 4 is not a multiple of numKvHeads 3',
  });
  t.throws(() => addLlamaToGguf(new RecordingSink(), { ...hp, numHeads: 0 }, vocab, tensors, opts), {
    message: 'LLaMA hparams: expected positive integer for numHeads but received 0',
  });
  t.throws(() => addLlamaToGguf(new RecordingSink(), hp, vocabOf(39), tensors, opts), {
    message: 'vocabulary has 39 pieces but vocabSize is 40',
  });
  t.throws(() => addLlamaToGguf(new RecordingSink(), hp, vocabOf(40, { eosId: 40 }), tensors, opts), {
    message: 'vocabulary eosId 40 is outside [0, 40)',
  });
  t.throws(
    () => addLlamaToGguf(new RecordingSink(), hp, vocab, tensors, { ...opts, typeFor: (n, ne) => (ne.length === 2 ? 'q4_k' : 'f32') }),
    { message: "tensor token_embd.weight as q4_k: row length 64 is not a multiple of q4_k's block size 256" },
  );
  const failed = new RecordingSink();
  t.throws(() => addLlamaToGguf(failed, hp, vocab, badK, opts));
  t.equal(failed.keys.size + failed.tensors.size, 0, 'nothing is written when validation fails');

  // Data errors surface when the writer asks for the bytes.
  const short = {
    ...tensors,
    norm: { shape: [64], read: () => new Float32Array(63) },
  };
  const sink = new RecordingSink();
  addLlamaToGguf(sink, hp, vocab, short, opts);
  await t.rejects(sink.tensors.get('output_norm.weight')!.data(), {
    message: 'tensor output_norm.weight: source gave 63 values for shape [64]',
  });
  const wrongSize = record(hp, recipes.q8_0, () => new Uint8Array(7));
  await t.rejects(wrongSize.tensors.get('blk.0.attn_q.weight')!.data(), {
    message: 'tensor blk.0.attn_q.weight: quantizer returned 7 bytes for q8_0, expected 4352',
  });
});
