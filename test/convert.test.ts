// Converting a tiny checkpoint in the official ECOFRI/CXR-LLAVA-v2 layout: the f32
// conversion reproduces the PyTorch reference run on the same bf16-rounded weights
// (tools/reference/tiny_llama.py --bf16); quantized conversions load and run; metadata
// records provenance; damaged checkpoints fail with errors naming file and tensor and
// leave no GGUF behind.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadModel } from '../lib/index.js';
import { convertCheckpoint, MODEL_LICENSE, type ConvertProgress } from '../lib/convert/convert.js';
import { quantize, readGgufInfo } from '../lib/runtime/tensors.js';
import { SHARDS, writeOfficialCheckpoint, type OfficialCheckpointOptions } from './helpers/official-checkpoint.js';

interface Golden {
  prompt: string;
  prompt_ids: number[];
  logits: number[][];
  logits_max_abs: number;
  greedy_ids_stop_at_eos: number[];
  checksums: { name: string; fnv1a32: number }[];
}
const golden = JSON.parse(readFileSync(new URL('./fixtures/tiny-llama/golden-bf16.json', import.meta.url), 'utf8')) as Golden;
const pkgVersion = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const root = mkdtempSync(path.join(tmpdir(), 'cxr-convert-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const ckpt = await writeOfficialCheckpoint(path.join(root, 'hf'));
const outDir = path.join(root, 'out');

function fnv1a32(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/** The raw bytes of one tensor of a GGUF file. */
function tensorData(file: string, name: string): Uint8Array {
  const info = readGgufInfo(file);
  const ti = info.tensors.find((x) => x.name === name);
  if (!ti) throw new Error(`${file}: no tensor ${name}`);
  const buf = new Uint8Array(ti.bytes);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, ti.bytes, info.dataOffset + ti.offset);
  } finally {
    closeSync(fd);
  }
  return buf;
}

const asF32 = (b: Uint8Array): Float32Array => new Float32Array(b.slice().buffer);

t.test('the builder rounds to bf16 exactly as torch does (reference checksums)', async (t) => {
  for (const c of golden.checksums) {
    const official = c.name.startsWith('model.') ? 'llama.' + c.name.slice(6) : c.name;
    const w = ckpt.weights.get(official);
    t.ok(w, `${official} present`);
    t.equal(fnv1a32(new Uint8Array(w!.values.buffer)), c.fnv1a32, `${official} bits`);
  }
});

t.test('f32: convert, load, and generate exactly the bf16 reference', async (t) => {
  const phases = new Map<string, number[]>();
  const r = await convertCheckpoint(ckpt.dir, {
    outDir,
    type: 'f32',
    sourceRepo: 'ECOFRI/CXR-LLAVA-v2',
    revision: '0123456789abcdef0123456789abcdef01234567',
    onProgress: (p: ConvertProgress) => {
      if (!phases.has(p.phase)) phases.set(p.phase, []);
      phases.get(p.phase)!.push(p.progress);
    },
  });
  t.equal(r.textPath, path.join(outDir, 'cxr-llava-v2.f32.gguf'));
  t.equal(r.mmprojPath, path.join(outDir, 'mmproj-cxr-llava-v2.f32.gguf'));
  t.equal(r.visionType, 'f32', 'vision follows f32');
  t.same(r.unusedTensors, ['vision_tower.proj']);
  t.same(readdirSync(outDir).sort(), ['cxr-llava-v2.f32.gguf', 'mmproj-cxr-llava-v2.f32.gguf'], 'nothing else left in outDir');
  t.same([...phases.keys()], ['hash', 'text', 'vision']);
  for (const [phase, values] of phases) {
    t.ok(values.every((v, i) => i === 0 || v >= values[i - 1]!), `${phase} progress never goes back`);
    t.equal(values.at(-1), 1, `${phase} ends at 1`);
  }

  const model = await loadModel({ model: r.textPath, mmproj: r.mmprojPath, kvCacheType: 'f32', threads: 2 });
  t.teardown(() => model.close());
  t.same(model.promptTokens({ prompt: golden.prompt, raw: true }), golden.prompt_ids, 'tokenizer from tokenizer.model');
  const vocab = model.info.hparams.vocabSize;
  const logits = await model.logits(golden.prompt_ids);
  let worst = 0;
  golden.logits.forEach((row, p) => row.forEach((v, i) => (worst = Math.max(worst, Math.abs(logits[p * vocab + i]! - v)))));
  const tol = 1e-4 * golden.logits_max_abs;
  t.ok(worst <= tol, `logits: max |diff| ${worst.toExponential(3)} <= ${tol.toExponential(3)}`);
  const g = await model.generate({ prompt: golden.prompt, raw: true, temperature: 0, maxTokens: 32 });
  t.same(g.tokens, golden.greedy_ids_stop_at_eos, '32 greedy tokens equal the reference');

  // Weights are carried over bit for bit (f32 storage, bf16 values).
  const w = (n: string) => ckpt.weights.get(n)!.values;
  t.same(asF32(tensorData(r.textPath, 'token_embd.weight')), w('llama.embed_tokens.weight'));
  t.same(asF32(tensorData(r.textPath, 'blk.1.ffn_down.weight')), w('llama.layers.1.mlp.down_proj.weight'));
  t.same(asF32(tensorData(r.mmprojPath, 'mm.0.weight')), w('mm_projector.weight'));
  const inProj = w('vision_tower.transformer.resblocks.1.attn.in_proj_weight');
  t.same(asF32(tensorData(r.mmprojPath, 'v.blk.1.attn_v.weight')), inProj.subarray((2 * inProj.length) / 3));
  t.same(asF32(tensorData(r.mmprojPath, 'v.patch_embd.weight')), w('vision_tower.conv1.weight'));
});

t.test('metadata: defaults, provenance, licence and source checksums', async (t) => {
  const text = readGgufInfo(path.join(outDir, 'cxr-llava-v2.f32.gguf'), { full: true }).metadata;
  const vis = readGgufInfo(path.join(outDir, 'mmproj-cxr-llava-v2.f32.gguf'), { full: true }).metadata;
  // LlamaConfig defaults for the fields config.json leaves out
  t.equal(text['llama.attention.layer_norm_rms_epsilon'], Math.fround(1e-6));
  t.equal(text['llama.rope.freq_base'], 10000);
  t.equal(text['llama.context_length'], 256);
  t.equal(text['llama.attention.head_count_kv'], 2);
  t.equal((text['tokenizer.ggml.tokens'] as string[]).length, 1000);
  t.equal(text['tokenizer.ggml.add_bos_token'], true);
  // open_clip defaults: heads = width / head_width, mlp = 4 x width, LayerNorm eps 1e-5
  t.equal(vis['clip.vision.attention.head_count'], 4);
  t.equal(vis['clip.vision.feed_forward_length'], 256);
  t.equal(vis['clip.vision.attention.layer_norm_epsilon'], Math.fround(1e-5));
  t.same(vis['clip.vision.image_mean'], [0.5]);
  t.same(vis['clip.vision.image_std'], [0.25]);
  t.equal(vis['clip.vision.projection_dim'], 64);

  const expectedFiles = ['added_tokens.json', 'config.json', 'model.safetensors.index.json', ...SHARDS, 'tokenizer.model', 'tokenizer_config.json'].sort();
  for (const [m, name, quant] of [[text, 'CXR-LLaVA-v2', 'f32'], [vis, 'CXR-LLaVA-v2 vision', 'f32']] as const) {
    t.equal(m['general.name'], name);
    t.equal(m['general.license'], MODEL_LICENSE);
    t.match(MODEL_LICENSE, /CC-BY-NC-4\.0/);
    t.match(MODEL_LICENSE, /LLaMA-2/);
    t.equal(m['general.source.huggingface.repository'], 'ECOFRI/CXR-LLAVA-v2');
    t.equal(m['cxr.source.revision'], '0123456789abcdef0123456789abcdef01234567');
    t.equal(m['cxr.converter.version'], pkgVersion);
    t.equal(m['cxr.quantization'], quant);
    t.same(m['cxr.source.files'], expectedFiles);
    t.same(
      m['cxr.source.sha256'],
      expectedFiles.map((f) => createHash('sha256').update(readFileSync(path.join(ckpt.dir, f))).digest('hex')),
    );
  }
  t.notOk((text['cxr.source.files'] as string[]).some((f) => f.endsWith('.bin')), 'pickled shards are not used');
});

t.test('quantized conversions load and run', async (t) => {
  // Bounds on the RMS logit error relative to the RMS logit (the greedy margins of this
  // random model are too small for exact tokens). The engine also quantizes activations
  // to 8 bits for quantized matmuls and keeps an f16 KV cache, so the bounds exceed the
  // per-weight errors of test/quantize.test.ts.
  const cases = [
    { type: 'f16', tol: 0.005, textType: 'f16', visionType: 'f16' },
    { type: 'q8_0', tol: 0.04, textType: 'q8_0', visionType: 'f16' },
    { type: 'q4_0', tol: 0.4, textType: 'q4_0', visionType: 'f16' },
  ] as const;
  for (const c of cases) {
    const r = await convertCheckpoint(ckpt.dir, { outDir, type: c.type });
    t.equal(path.basename(r.textPath), `cxr-llava-v2.${c.type}.gguf`);
    t.equal(r.visionType, c.visionType, 'vision defaults to f16');
    const model = await loadModel({ model: r.textPath, mmproj: r.mmprojPath, threads: 2 });
    t.ok((model.info.tensorTypes[c.textType] ?? 0) > 0, `${c.type} tensors present: ${JSON.stringify(model.info.tensorTypes)}`);
    const vocab = model.info.hparams.vocabSize;
    const logits = await model.logits(golden.prompt_ids);
    let err2 = 0;
    let ref2 = 0;
    golden.logits.forEach((row, p) =>
      row.forEach((v, i) => {
        err2 += (logits[p * vocab + i]! - v) ** 2;
        ref2 += v * v;
      }),
    );
    const rel = Math.sqrt(err2 / ref2);
    t.ok(rel <= c.tol, `${c.type}: RMS logit error ${rel.toFixed(4)} of RMS logit <= ${c.tol}`);
    const g = await model.generate({ prompt: golden.prompt, raw: true, temperature: 0, maxTokens: 8 });
    t.equal(g.tokens.length, 8, `${c.type} generates`);
    await model.close();
    const vis = readGgufInfo(r.mmprojPath);
    t.ok(vis.tensors.some((x) => x.type === 'f16'), 'mmproj matrices stored as f16');
    t.equal(vis.metadata['cxr.quantization'], 'f16');
  }
  const r = await convertCheckpoint(ckpt.dir, { outDir, type: 'q8_0', visionType: 'q8_0' });
  t.ok(readGgufInfo(r.mmprojPath).tensors.some((x) => x.type === 'q8_0'), 'visionType q8_0');
});

t.test('threaded quantization (off the event loop) gives the same bytes as one synchronous call', async (t) => {
  let turns = 0;
  const ticker = setInterval(() => turns++, 0);
  const out = path.join(root, 'threaded');
  const r = await convertCheckpoint(ckpt.dir, { outDir: out, type: 'q4_0', visionType: 'q8_0' });
  clearInterval(ticker);
  t.ok(turns > 0, `timers ran during the conversion (${turns} ticks)`);
  const embed = ckpt.weights.get('llama.embed_tokens.weight')!.values;
  t.same(tensorData(r.textPath, 'token_embd.weight'), quantize('q4_0', embed, 1000, 64), 'token_embd, quantized by row slices on threads');
  const down = ckpt.weights.get('llama.layers.0.mlp.down_proj.weight')!.values;
  t.same(tensorData(r.textPath, 'blk.0.ffn_down.weight'), quantize('q4_0', down, 64, 160));
  const fc = ckpt.weights.get('vision_tower.transformer.resblocks.0.mlp.c_fc.weight')!.values;
  t.same(tensorData(r.mmprojPath, 'v.blk.0.ffn_up.weight'), quantize('q8_0', fc, 256, 64));
});

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Builds a checkpoint, damages it, converts, and checks the error and that no GGUF is left in outDir. */
async function expectFailure(
  t: Test,
  name: string,
  message: (dir: string) => RegExp,
  setup: { opts?: OfficialCheckpointOptions; damage?: (dir: string) => void; onProgress?: (p: ConvertProgress) => void },
): Promise<void> {
  const dir = path.join(root, `bad-${name}`);
  const out = path.join(root, `bad-${name}-out`);
  await writeOfficialCheckpoint(dir, setup.opts ?? {});
  setup.damage?.(dir);
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'keep.txt'), 'unrelated');
  const onProgress = setup.onProgress;
  await t.rejects(
    convertCheckpoint(dir, { outDir: out, type: 'q8_0', ...(onProgress ? { onProgress } : {}) }),
    { message: message(dir) },
    `${name}: fails with a clear error`,
  );
  t.same(readdirSync(out), ['keep.txt'], `${name}: no GGUF or staging folder left in outDir`);
  rmSync(dir, { recursive: true, force: true });
}

t.test('damaged checkpoints fail with errors naming file and tensor, leaving nothing', async (t) => {
  await expectFailure(t, 'missing-shard', (d) => new RegExp(
    `^${esc(path.join(d, SHARDS[1]!))}: file not found; model\\.safetensors\\.index\\.json places \\d+ tensor\\(s\\) there \\(llama\\.layers\\.`,
  ), { damage: (d) => unlinkSync(path.join(d, SHARDS[1]!)) });

  await expectFailure(t, 'truncated-shard', (d) => new RegExp(
    `^${esc(path.join(d, SHARDS[2]!))}: tensor mm_projector\\.bias: data ends at byte \\d+ but the file has \\d+ bytes \\(truncated file\\?\\)$`,
  ), {
    damage: (d) => {
      const f = path.join(d, SHARDS[2]!);
      truncateSync(f, statSync(f).size - 100);
    },
  });

  await expectFailure(t, 'wrong-dtype', (d) => new RegExp(
    `^${esc(path.join(d, SHARDS[1]!))}: tensor llama\\.layers\\.1\\.mlp\\.up_proj\\.weight has dtype F16, expected BF16$`,
  ), { opts: { dtypes: { 'llama.layers.1.mlp.up_proj.weight': 'F16' } } });

  await expectFailure(t, 'shape-mismatch', (d) => new RegExp(
    `^${esc(path.join(d, SHARDS[2]!))}: tensor mm_projector\\.weight has shape \\[64, 32\\], expected \\[64, 64\\] \\(from config\\.json\\)$`,
  ), { opts: { shapes: { 'mm_projector.weight': [64, 32] } } });

  await expectFailure(t, 'missing-config-key', (d) => new RegExp(
    `^${esc(path.join(d, 'config.json'))}: missing key "clip_vision_cfg\\.width" \\(it has no default\\)$`,
  ), { opts: { editConfig: (c) => delete c.clip_vision_cfg.width } });

  await expectFailure(t, 'missing-llama-section', (d) => new RegExp(
    `^${esc(path.join(d, 'config.json'))}: missing key "llama" \\(it has no default\\)$`,
  ), { opts: { editConfig: (c) => delete c.llama } });

  await expectFailure(t, 'vocab-size', (d) => new RegExp(
    `^config\\.json: "llama\\.vocab_size" is 32000 but tokenizer\\.model \\+ added_tokens\\.json has 1000 tokens$`,
  ), { opts: { editConfig: (c) => delete c.llama.vocab_size } }); // falls back to LlamaConfig's 32000

  await expectFailure(t, 'corrupt-tokenizer', (d) => new RegExp(`^${esc(path.join(d, 'tokenizer.model'))}: `), {
    damage: (d) => writeFileSync(path.join(d, 'tokenizer.model'), Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x7f, 0x01])),
  });

  await expectFailure(t, 'missing-tensor', (d) => new RegExp(
    `^${esc(path.join(d, 'model.safetensors.index.json'))}: tensor llama\\.layers\\.2\\.input_layernorm\\.weight is missing$`,
  ), { opts: { editConfig: (c) => (c.llama.num_hidden_layers = 3) } });

  // A failure while the mmproj is being written must not leave the finished text GGUF behind.
  await expectFailure(t, 'vision-write-fails', () => /^disk full \(simulated\)$/, {
    onProgress: (p) => {
      if (p.phase === 'vision' && p.progress > 0.5) throw new Error('disk full (simulated)');
    },
  });
});
