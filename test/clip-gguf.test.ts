// addClipToGguf: keys, tensor names and shapes, the q/k/v split, type recipes and
// error messages, recorded through a stand-in writer; and the tiny vision weights
// against the Python reference's checksums (no engine involved).

import t from 'tap';
import { readFileSync } from 'node:fs';
import { addClipToGguf, clipRecipes, type ClipHParams, type ClipRecipe, type ClipTensors } from '../lib/convert/clip-gguf.js';
import type { Quantizer } from '../lib/convert/llama-gguf.js';
import { RecordingSink } from './helpers/recording-sink.js';
import { makeVisionWeight, TINY_VISION_HPARAMS, tinyVisionSpecs, tinyVisionTensors } from './helpers/tiny-vision.js';

interface Checksum {
  name: string;
  shape: number[];
  sum: number;
  fnv1a32: number;
  first_bits: number[];
}
const golden = JSON.parse(readFileSync(new URL('./fixtures/tiny-cxr-llava/golden.json', import.meta.url), 'utf8')) as {
  checksums: Checksum[];
};

const hp = TINY_VISION_HPARAMS;

const noQuantizer: Quantizer = (type) => {
  throw new Error(`unexpected quantize(${type})`);
};

/** A quantizer that returns the right number of zero bytes and records what it was asked. */
function fakeQuantizer(calls: string[]): Quantizer {
  const bytesPer: Record<string, number> = { f16: 2, q8_0: 34 / 32 };
  return (type, data, rows, cols) => {
    calls.push(`${type} ${rows}x${cols}`);
    return new Uint8Array(data.length * bytesPer[type]!);
  };
}

function record(recipe: ClipRecipe, quantize: Quantizer = noQuantizer, tensors: ClipTensors = tinyVisionTensors(), h: ClipHParams = hp) {
  const sink = new RecordingSink();
  addClipToGguf(sink, h, tensors, { ...recipe, quantize, name: 'unit' });
  return sink;
}

function fnv1a32(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

t.test('the tiny vision weights match the reference checksums bit for bit', async (t) => {
  const specs = tinyVisionSpecs();
  t.same(specs.map((s) => s.name), golden.checksums.map((c) => c.name), 'same tensors in the same order');
  for (const s of specs) {
    const c = golden.checksums.find((x) => x.name === s.name)!;
    const w = makeVisionWeight(s.name, s.shape, s.kind);
    t.same(s.shape, c.shape, `${s.name} shape`);
    t.equal(fnv1a32(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)), c.fnv1a32, `${s.name} bits`);
    t.same(Array.from(new Uint32Array(w.buffer, 0, 4)), c.first_bits, `${s.name} first values`);
  }
});

t.test('metadata follows llama.cpp clip conventions plus our cxr.* keys', async (t) => {
  const sink = record(clipRecipes.f32);
  const want: Record<string, [string, unknown]> = {
    'general.architecture': ['string', 'clip'],
    'general.name': ['string', 'unit'],
    'general.file_type': ['u32', 0],
    'clip.has_text_encoder': ['bool', false],
    'clip.has_vision_encoder': ['bool', true],
    'clip.has_llava_projector': ['bool', true],
    'clip.projector_type': ['string', 'linear'],
    'clip.use_gelu': ['bool', true],
    'clip.vision.image_size': ['u32', 64],
    'clip.vision.patch_size': ['u32', 16],
    'clip.vision.embedding_length': ['u32', 64],
    'clip.vision.feed_forward_length': ['u32', 256],
    'clip.vision.projection_dim': ['u32', 64],
    'clip.vision.block_count': ['u32', 2],
    'clip.vision.attention.head_count': ['u32', 4],
    'clip.vision.attention.layer_norm_epsilon': ['f32', 1e-5],
    'clip.vision.image_mean': ['f32[]', [0.5]],
    'clip.vision.image_std': ['f32[]', [0.25]],
    'cxr.vision.image_channels': ['u32', 1],
    'cxr.vision.image_features': ['string', 'patches_after_post_ln'],
    'cxr.vision.gelu_exact': ['bool', true],
  };
  for (const [key, [type, value]] of Object.entries(want)) {
    t.same(sink.keys.get(key), { type, value }, key);
  }
  t.notOk(sink.keys.has('general.quantization_version'), 'no block quants, no quantization version');
});

t.test('tensor names and ggml shapes', async (t) => {
  const sink = record(clipRecipes.f32);
  const w = 64;
  const want: Record<string, number[]> = {
    'v.patch_embd.weight': [16, 16, 1, w],
    'v.class_embd': [w],
    'v.position_embd.weight': [w, 17],
    'v.pre_ln.weight': [w],
    'v.pre_ln.bias': [w],
    'v.post_ln.weight': [w],
    'v.post_ln.bias': [w],
    'mm.0.weight': [w, 64],
    'mm.0.bias': [64],
  };
  for (let i = 0; i < 2; i++) {
    const b = `v.blk.${i}.`;
    for (const n of ['attn_q', 'attn_k', 'attn_v', 'attn_out']) {
      want[`${b}${n}.weight`] = [w, w];
      want[`${b}${n}.bias`] = [w];
    }
    for (const n of ['ln1', 'ln2']) {
      want[`${b}${n}.weight`] = [w];
      want[`${b}${n}.bias`] = [w];
    }
    want[b + 'ffn_up.weight'] = [w, 256];
    want[b + 'ffn_up.bias'] = [256];
    want[b + 'ffn_down.weight'] = [256, w];
    want[b + 'ffn_down.bias'] = [w];
  }
  t.same([...sink.tensors.keys()].sort(), Object.keys(want).sort());
  for (const [name, ne] of Object.entries(want)) t.same(sink.tensors.get(name)!.ne, ne, name);
});

t.test('the fused in_proj is split into q, k and v rows', async (t) => {
  const sink = record(clipRecipes.f32);
  const b = 'vision_tower.transformer.resblocks.1.attn.';
  const weight = makeVisionWeight(b + 'in_proj_weight', [192, 64], 'linear');
  const bias = makeVisionWeight(b + 'in_proj_bias', [192], 'bias');
  const parts = ['attn_q', 'attn_k', 'attn_v'];
  for (let p = 0; p < 3; p++) {
    t.same(await sink.f32(`v.blk.1.${parts[p]}.weight`), weight.slice(p * 64 * 64, (p + 1) * 64 * 64), `${parts[p]}.weight`);
    t.same(await sink.f32(`v.blk.1.${parts[p]}.bias`), bias.slice(p * 64, (p + 1) * 64), `${parts[p]}.bias`);
  }
  // Everything else is the source tensor unchanged.
  t.same(await sink.f32('v.patch_embd.weight'), makeVisionWeight('vision_tower.conv1.weight', [64, 1, 16, 16], 'linear'));
  t.same(await sink.f32('mm.0.weight'), makeVisionWeight('mm_projector.weight', [64, 64], 'linear'));
});

t.test('recipes: vectors and embeddings stay f32, conv1 is f16 unless f32', async (t) => {
  for (const [name, recipe] of Object.entries(clipRecipes)) {
    const calls: string[] = [];
    const sink = record(recipe, fakeQuantizer(calls));
    const matrix = name === 'f32' ? 'f32' : name;
    const conv = name === 'f32' ? 'f32' : 'f16';
    for (const [tensor, rec] of sink.tensors) {
      let want: string;
      if (rec.ne.length === 1 || tensor === 'v.position_embd.weight') want = 'f32';
      else if (tensor === 'v.patch_embd.weight') want = conv;
      else want = matrix;
      t.equal(rec.type, want, `${name}: ${tensor}`);
      await rec.data();
    }
    t.equal(sink.value('general.file_type'), recipe.fileType, `${name}: file type`);
    t.equal(sink.keys.has('general.quantization_version'), name === 'q8_0', `${name}: quantization version`);
    if (name === 'q8_0') t.ok(calls.includes('q8_0 64x64') && calls.includes('f16 1024x16'), 'quantizer sees [rows, cols] as stored');
  }
});

t.test('wrong shapes and hparams are named before anything is written', async (t) => {
  const bad = tinyVisionTensors();
  bad.layers[1]!.inProjWeight = { shape: [64, 64], read: () => new Float32Array(64 * 64) };
  let sink = new RecordingSink();
  t.throws(() => addClipToGguf(sink, hp, bad, { ...clipRecipes.f32, quantize: noQuantizer }), {
    message: 'tensor v.blk.1.attn_q.weight (layers[1].inProjWeight): expected shape [192, 64] but got [64, 64]',
  });
  t.equal(sink.keys.size + sink.tensors.size, 0, 'nothing written');

  const conv = tinyVisionTensors();
  conv.conv1 = { shape: [64, 3, 16, 16], read: () => new Float32Array(64 * 3 * 256) };
  t.throws(() => record(clipRecipes.f32, noQuantizer, conv), {
    message: 'tensor v.patch_embd.weight (conv1): expected shape [64, 1, 16, 16] but got [64, 3, 16, 16]',
  });

  const cases: [Partial<ClipHParams>, string][] = [
    [{ imageMean: [0.5, 0.5, 0.5] }, 'CLIP hparams: expected 1 finite numbers for imageMean but received [0.5,0.5,0.5]'],
    [{ imageStd: [0] }, 'CLIP hparams: imageStd must be positive, received [0]'],
    [{ imageSize: 60 }, 'CLIP hparams: imageSize 60 is not a multiple of patchSize 16'],
    [{ numHeads: 5 }, 'CLIP hparams: width 64 does not split into 5 heads'],
    [{ width: 0 }, 'CLIP hparams: expected positive integer for width but received 0'],
    [{ layerNormEps: 0 }, 'CLIP hparams: expected positive number for layerNormEps but received 0'],
  ];
  for (const [change, message] of cases) {
    sink = new RecordingSink();
    t.throws(() => addClipToGguf(sink, { ...hp, ...change }, tinyVisionTensors(), { ...clipRecipes.f32, quantize: noQuantizer }), {
      message,
    });
  }
  t.throws(() => record(clipRecipes.f32, noQuantizer, tinyVisionTensors(), { ...hp, numLayers: 3 }), {
    message: 'CLIP tensors: 2 layers given but numLayers is 3',
  });
});

t.test('a source that returns the wrong number of values fails when read', async (t) => {
  const short = tinyVisionTensors();
  short.layers[0]!.inProjBias = { shape: [192], read: () => new Float32Array(64) };
  const sink = record(clipRecipes.f32, noQuantizer, short);
  await t.rejects(sink.tensors.get('v.blk.0.attn_k.bias')!.data(), {
    message: 'tensor v.blk.0.attn_k.bias: source gave 64 values for shape [192]',
  });
});
