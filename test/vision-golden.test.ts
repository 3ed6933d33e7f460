// The engine's image encoder (ViT + projector) against the independent PyTorch
// reference (tools/reference/tiny_cxr_llava.py): projected features of a fixed
// test image, for the tiny mmproj stored as f32, f16 and q8_0.
import t from 'tap';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadModel, REPORT_PROMPT, SYSTEM_PROMPT } from '../lib/index.js';
import { quantize } from '../lib/runtime/tensors.js';
import type { ClipRecipeName } from '../lib/convert/clip-gguf.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { normaliseGray, TINY_VISION_HPARAMS, writeTinyMmproj } from './helpers/tiny-vision.js';

interface Golden {
  vision: { image_size: number; channels: number; proj_dim: number };
  image: { pixels: number[]; mean: number[]; std: number[]; normalised_sum: number; height: number; width: number };
  features_shape: [number, number];
  features_max_abs: number;
  features: number[][];
  prompt: { system: string; user: string; before_image_ids: number[]; image_tokens: number; after_image_ids: number[] };
  greedy_steps: number;
  greedy_ids: number[];
  greedy_ids_stop_at_eos: number[];
}
const golden = JSON.parse(
  readFileSync(new URL('./fixtures/tiny-cxr-llava/golden.json', import.meta.url), 'utf8'),
) as Golden;

// Error bounds per storage type, relative to max|feature| (max) and to the feature
// vector's norm (rms). f32 differs from the float64 reference only by float32
// rounding (measured 1.7e-7 / 1.9e-7). f16 rounds the weights (measured 4.9e-4 /
// 3.9e-4); q8_0 rounds weights and activations to 8 bits per 32-block (measured
// 1.4e-2 / 1.1e-2). Each bound leaves about 3x headroom over the measurement.
const BOUNDS: Record<ClipRecipeName, { max: number; rms: number }> = {
  f32: { max: 1e-4, rms: 1e-4 },
  f16: { max: 2e-3, rms: 1.5e-3 },
  q8_0: { max: 5e-2, rms: 3e-2 },
};

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-vision-golden-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const textModel = path.join(dir, 'tiny-llama-f32.gguf');
await writeTinyLlama(textModel, 'f32');

const pixels = normaliseGray(golden.image.pixels, golden.image.mean[0]!, golden.image.std[0]!);

t.test('the test image matches the reference and the tiny hparams', async (t) => {
  t.equal(pixels.length, golden.image.height * golden.image.width * golden.vision.channels);
  let sum = 0;
  for (const v of pixels) sum += v;
  // One pixel off by one level would move the sum by 1/(255*std) = 0.016; the bound
  // only allows for float64 summation order.
  t.ok(Math.abs(sum - golden.image.normalised_sum) < 1e-9, `normalised pixel sum ${sum} matches the reference`);
  t.equal(TINY_VISION_HPARAMS.imageSize, golden.vision.image_size);
  t.equal(TINY_VISION_HPARAMS.projDim, golden.vision.proj_dim);
  t.same(TINY_VISION_HPARAMS.imageMean, golden.image.mean);
  t.same(TINY_VISION_HPARAMS.imageStd, golden.image.std);
});

for (const recipe of ['f32', 'f16', 'q8_0'] as const) {
  t.test(`encodeImage matches the reference (mmproj ${recipe})`, async (t) => {
    const mmproj = path.join(dir, `tiny-mmproj-${recipe}.gguf`);
    await writeTinyMmproj(mmproj, recipe, { quantize });
    const model = await loadModel({ model: textModel, mmproj, threads: 2 });
    t.teardown(() => model.close());

    const r = await model.encodeImage(pixels);
    const [tokens, dim] = golden.features_shape;
    t.equal(r.tokens, tokens, 'one feature row per patch, CLS dropped');
    t.equal(r.dim, dim, 'rows as wide as the language model');
    t.equal(r.data.length, tokens * dim);

    let maxDiff = 0;
    let errSq = 0;
    let refSq = 0;
    for (let i = 0; i < tokens; i++) {
      for (let j = 0; j < dim; j++) {
        const ref = golden.features[i]![j]!;
        const d = r.data[i * dim + j]! - ref;
        maxDiff = Math.max(maxDiff, Math.abs(d));
        errSq += d * d;
        refSq += ref * ref;
      }
    }
    const maxRel = maxDiff / golden.features_max_abs;
    const rmsRel = Math.sqrt(errSq / refSq);
    const b = BOUNDS[recipe];
    t.ok(maxRel <= b.max, `max|diff| / max|ref| = ${maxRel.toExponential(3)} <= ${b.max}`);
    t.ok(rmsRel <= b.rms, `|diff| / |ref| = ${rmsRel.toExponential(3)} <= ${b.rms}`);
  });
}

t.test('encodeImage rejects a wrongly sized image', async (t) => {
  const mmproj = path.join(dir, 'tiny-mmproj-size.gguf');
  await writeTinyMmproj(mmproj, 'f32');
  const model = await loadModel({ model: textModel, mmproj, threads: 1 });
  t.teardown(() => model.close());
  await t.rejects(async () => model.encodeImage(new Float32Array(pixels.length - 1)), { code: 'ERR_INVALID_ARG' });
});

t.test('the official prompt around the image has the reference token ids', async (t) => {
  const mmproj = path.join(dir, 'tiny-mmproj-prompt.gguf');
  await writeTinyMmproj(mmproj, 'f32');
  const model = await loadModel({ model: textModel, mmproj, threads: 1 });
  t.teardown(() => model.close());
  t.equal(golden.prompt.system, SYSTEM_PROMPT);
  t.equal(golden.prompt.user, REPORT_PROMPT);
  const ids = model.promptTokens({ prompt: REPORT_PROMPT, image: true });
  const p = golden.prompt;
  // promptTokens marks each image embedding row with -1.
  t.same(ids, [...p.before_image_ids, ...new Array<number>(p.image_tokens).fill(-1), ...p.after_image_ids]);
});

t.test('greedy multimodal generation of 32 tokens matches the reference exactly', async (t) => {
  const mmproj = path.join(dir, 'tiny-mmproj-generate.gguf');
  await writeTinyMmproj(mmproj, 'f32');
  const model = await loadModel({ model: textModel, mmproj, kvCacheType: 'f32', threads: 2 });
  t.teardown(() => model.close());
  const image = await model.encodeImage(pixels);
  const r = await model.generate({ image, prompt: REPORT_PROMPT, temperature: 0, maxTokens: golden.greedy_steps });
  t.same(r.tokens, golden.greedy_ids_stop_at_eos);
  t.equal(r.timings.prefillTokens, golden.prompt.before_image_ids.length + golden.prompt.image_tokens + golden.prompt.after_image_ids.length);
});
