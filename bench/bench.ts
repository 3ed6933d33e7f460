/**
 * Speed of our engine on random-weight files of CXR-LLaVA's shapes, optionally against
 * the anchors: llama.cpp (node-llama-cpp) for the 7B text model, PyTorch (Debian's
 * python3-torch on OpenBLAS) for the ViT-L/16@512 image encoder. Both run the same
 * files at the same thread count, alternating run by run so that drift in machine load
 * hits both. Anchors are installed on demand, outside our dependency tree.
 *
 *   npm run bench -- --compare                   # everything: the issue's table
 *   npm run bench -- --parts text --type q4_0 --shape 1b --runs 3
 *
 * Parts: roofline (this machine's read bandwidth and FMA peak, measured by
 * native/tools/cxr-roofline.cpp), text (prefill and decode), vision (one encode),
 * report (end to end: encode + ~1100-token prefill + decode, as for one report) and
 * memory (peak RSS of a child process against file size + KV cache).
 * Prints a table of medians on stdout, then one JSON line with every raw number.
 * Progress goes to stderr.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { native, type NativeImage, type NativeModel, type NativeResult, type NativeSegment } from '../lib/runtime/native.js';
import { readGgufInfo, simdLevel } from '../lib/runtime/tensors.js';
import { benchBatch, type BatchResult } from './batch.js';
import { anchorMissingReason, LlamaCppModel, LLAMA_CPP_ANCHOR_VERSION, loadedCpuVariant, restrictAnchorToAvx2 } from './llama-cpp.js';
import { installAnchor, measureRoofline, peakRss, runTorchVision, torchMissingReason, type Roofline, type TorchResult } from './machine.js';
import {
  isCurrentSyntheticVision,
  syntheticVisionFileName,
  visionFlops,
  VIT_L_512,
  writeSyntheticVision,
  type VisionBenchType,
} from './synthetic-vision.js';
import {
  isCurrentSynthetic,
  SHAPES,
  syntheticFileName,
  writeSyntheticLlama,
  type BenchType,
  type ShapeName,
} from './synthetic-llama.js';

type Part = 'roofline' | 'text' | 'vision' | 'report' | 'memory' | 'batch';
const PARTS: Part[] = ['roofline', 'text', 'vision', 'report', 'memory', 'batch'];
/** What runs when --parts is not given (batch takes a quarter of an hour on the 7B shape: ask for it). */
const DEFAULT_PARTS: Part[] = ['roofline', 'text', 'vision', 'report', 'memory'];

/** The llama.cpp CPU library the text comparison ran on ("zen4", "haswell", ...). */
let llamaCppVariant: string | undefined;

interface Options {
  shape: ShapeName;
  types: BenchType[];
  threads: number;
  prompt: number;
  gen: number;
  /** Prompt length of the second text measurement, where a report decodes (0: skip it). */
  reportContext: number;
  runs: number;
  compare: boolean;
  /** native: every engine uses the best kernels for this CPU; avx2: every engine is held to AVX2/FMA. */
  isa: 'native' | 'avx2';
  dir: string;
  parts: Set<Part>;
  /** Prompt tokens around the image and decoded tokens of the end-to-end report. */
  reportPrompt: number;
  reportGen: number;
  /** Internal: measure peak RSS of one generation in this (child) process. */
  childRss?: string;
  /** batch part: sequences at once for the reports, decode sequence counts, reports per run and their length. */
  parallel: number;
  sequences: number[];
  batchReports: number;
  batchGen: number;
}

const USAGE = `Usage: npm run bench -- [options]
  --parts LIST         comma-separated: ${PARTS.join(',')} (default all but batch; text when --shape or --type is given)
  --shape tiny|1b|7b   text model shape (default 7b)
  --type q4_0|q8_0     text weight type (default both)
  --threads N          CPU threads for every engine (default 2)
  --prompt N           prefill tokens, BOS included (default 512)
  --gen N              decode tokens (default 64)
  --report-context N   prompt tokens of a second text run, at the context where a report decodes
                       (default 1100: 1024 image tokens + 76 text); 0 skips it
  --runs N             measured runs per engine (default 3)
  --report-prompt N    text tokens around the image in the report run (default 76: ~1100 with the image)
  --report-gen N       tokens decoded in the report run (default 100)
  --compare            also run the anchors: llama.cpp (node-llama-cpp ${LLAMA_CPP_ANCHOR_VERSION}) and PyTorch
  --isa native|avx2    avx2: hold every engine to AVX2/FMA kernels, as on a CPU without AVX-512
                       (ours: CXR_GEMM=avx2; llama.cpp: its "haswell" build; PyTorch: OpenBLAS Haswell
                       kernels, ATen AVX2). Default native: each engine's best for this CPU
  --dir PATH           model cache folder (default ${path.join(tmpdir(), 'cxr-llava-bench')})
  batch part (several sequences per forward pass, against one at a time, alternating):
  --sequences LIST     decoding sequence counts, --gen tokens each after 16-token prompts (default 1,2,4,8)
  --parallel N         reports in the model at once (default 4), against one at a time
  --batch-reports N    reports per run (default 8), on different images
  --batch-gen N        tokens per report (default 128)`;

function positiveInt(name: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`Expected positive integer for --${name} but received ${v}`);
  return n;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      parts: { type: 'string' },
      shape: { type: 'string' },
      type: { type: 'string' },
      threads: { type: 'string' },
      prompt: { type: 'string' },
      gen: { type: 'string' },
      'report-context': { type: 'string' },
      runs: { type: 'string' },
      'report-prompt': { type: 'string' },
      'report-gen': { type: 'string' },
      compare: { type: 'boolean' },
      isa: { type: 'string' },
      dir: { type: 'string' },
      'child-rss': { type: 'string' },
      sequences: { type: 'string' },
      parallel: { type: 'string' },
      'batch-reports': { type: 'string' },
      'batch-gen': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const shape = values.shape ?? '7b';
  if (!(shape in SHAPES)) throw new Error(`Expected one of ${Object.keys(SHAPES).join(', ')} for --shape but received ${shape}`);
  const type = values.type;
  if (type !== undefined && type !== 'q4_0' && type !== 'q8_0') throw new Error(`Expected q4_0 or q8_0 for --type but received ${type}`);
  // The whole suite by default; only the text part when a shape or type is picked (as before parts existed).
  const parts = new Set<Part>();
  const defaultParts = values.shape !== undefined || values.type !== undefined ? 'text' : DEFAULT_PARTS.join(',');
  for (const p of (values.parts ?? defaultParts).split(',')) {
    if (!PARTS.includes(p as Part)) throw new Error(`Expected a list of ${PARTS.join(', ')} for --parts but received ${p}`);
    parts.add(p as Part);
  }
  const isa = values.isa ?? 'native';
  if (isa !== 'native' && isa !== 'avx2') throw new Error(`Expected native or avx2 for --isa but received ${isa}`);
  return {
    shape: shape as ShapeName,
    types: type ? [type] : ['q4_0', 'q8_0'],
    threads: positiveInt('threads', values.threads, 2),
    prompt: positiveInt('prompt', values.prompt, 512),
    gen: positiveInt('gen', values.gen, 64),
    reportContext: values['report-context'] === '0' ? 0 : positiveInt('report-context', values['report-context'], 1100),
    runs: positiveInt('runs', values.runs, 3),
    compare: values.compare ?? false,
    isa,
    dir: values.dir ?? path.join(tmpdir(), 'cxr-llava-bench'),
    parts,
    reportPrompt: positiveInt('report-prompt', values['report-prompt'], 76),
    reportGen: positiveInt('report-gen', values['report-gen'], 100),
    childRss: values['child-rss'],
    parallel: positiveInt('parallel', values.parallel, 4),
    sequences: (values.sequences ?? '1,2,4,8').split(',').map((v) => positiveInt('sequences', v, 1)),
    batchReports: values['batch-reports'] === '0' ? 0 : positiveInt('batch-reports', values['batch-reports'], 8),
    batchGen: positiveInt('batch-gen', values['batch-gen'], 128),
  };
}

/** One measured run: tokens processed and milliseconds, for prefill and for decode. */
interface Sample {
  prefillTokens: number;
  prefillMs: number;
  /** Single-token forward passes after the first generated token. */
  decodeTokens: number;
  decodeMs: number;
}

const rate = (tokens: number, ms: number): number => (tokens * 1000) / ms;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A prompt of `n` ids: BOS, then uniform random ids past the byte pieces (never EOS). */
function randomPrompt(n: number, vocabSize: number, bos: number): number[] {
  const ids = [bos];
  while (ids.length < n) ids.push(259 + Math.floor(Math.random() * (vocabSize - 259)));
  return ids;
}

function generateRaw(m: NativeModel, segments: NativeSegment[], gen: number): Promise<NativeResult> {
  return new Promise<NativeResult>((resolve, reject) => {
    m.generate(
      {
        segments,
        maxTokens: gen,
        temperature: 0,
        topP: 1,
        topK: 0,
        repeatPenalty: 1,
        repeatLastN: 64,
        seed: 0n,
        stop: [],
        logprobs: 0,
        stopAtEos: false,
      },
      (kind, payload) => {
        if (kind === 'done') resolve(payload as NativeResult);
        else if (kind === 'error') reject(payload as Error);
      },
    );
  });
}

// Our engine, driven through the addon directly: a benchmark needs exact token ids, a
// fixed length and the engine's own prefill/decode split of the time.
async function oursRun(m: NativeModel, prompt: number[], gen: number): Promise<Sample> {
  const r = await generateRaw(m, [{ tokens: Int32Array.from(prompt) }], gen);
  if (r.decodeTokens !== gen) throw new Error(`our engine generated ${r.decodeTokens} tokens, expected ${gen} (${r.finishReason})`);
  // decodeMs spans `gen` samplings and `gen - 1` forward passes (the first token comes from prefill).
  return { prefillTokens: r.prefillTokens, prefillMs: r.prefillMs, decodeTokens: r.decodeTokens - 1, decodeMs: r.decodeMs };
}

async function llamaRun(m: LlamaCppModel, prompt: number[], gen: number): Promise<Sample> {
  const r = await m.greedy(prompt, gen, { ignoreEos: true });
  if (r.tokens.length !== gen) throw new Error(`llama.cpp generated ${r.tokens.length} tokens, expected ${gen}`);
  return { prefillTokens: r.prefillTokens, prefillMs: r.prefillMs, decodeTokens: r.decodeTokens, decodeMs: r.decodeMs };
}

function encodeRaw(m: NativeModel, pixels: Float32Array): Promise<{ image: NativeImage; ms: number }> {
  return new Promise((resolve, reject) => {
    m.encodeImage(pixels, (kind, payload) => {
      if (kind === 'encoded') resolve(payload as { image: NativeImage; ms: number });
      else reject(payload as Error);
    });
  });
}

function log(msg: string): void {
  process.stderr.write(msg + '\n');
}

function progress(label: string): (f: number, tensor: string) => void {
  let shown = -1;
  return (f, tensor) => {
    const pct = Math.floor(f * 100);
    if (pct !== shown) {
      shown = pct;
      process.stderr.write(`\r  ${label} ${String(pct).padStart(3)}%  ${tensor.padEnd(28)}`);
    }
  };
}

async function ensureModel(o: Options, type: BenchType): Promise<string> {
  mkdirSync(o.dir, { recursive: true });
  const file = path.join(o.dir, syntheticFileName(o.shape, type));
  if (isCurrentSynthetic(file)) {
    log(`using cached ${file}`);
    return file;
  }
  log(`writing ${file} (random weights, ${o.shape} shape, ${type})`);
  const t0 = performance.now();
  await writeSyntheticLlama(file, o.shape, type, progress(type));
  process.stderr.write('\n');
  log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return file;
}

async function ensureVision(o: Options, type: VisionBenchType): Promise<string> {
  mkdirSync(o.dir, { recursive: true });
  const file = path.join(o.dir, syntheticVisionFileName(type));
  if (isCurrentSyntheticVision(file)) {
    log(`using cached ${file}`);
    return file;
  }
  log(`writing ${file} (random weights, ViT-L/16 at 512 px, ${type})`);
  await writeSyntheticVision(file, type, progress(type));
  process.stderr.write('\n');
  return file;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

/** Bytes one decode step streams: every weight but the embedding table (one row of it is read). */
function weightBytesPerToken(file: string): number {
  return readGgufInfo(file).tensors.reduce((s, t) => s + (t.name === 'token_embd.weight' ? 0 : t.bytes), 0);
}

/** F16 KV cache bytes for `positions` positions. */
function kvBytes(shape: ShapeName, positions: number): number {
  const hp = SHAPES[shape];
  return 2 * hp.numLayers * positions * (hp.hiddenSize / hp.numHeads) * hp.numKvHeads * 2;
}

/** FLOPs of one prefill token at context `ctx`: 2 per weight (embedding excluded) + attention. */
function textFlopsPerToken(shape: ShapeName, ctx: number): number {
  const hp = SHAPES[shape];
  const d = hp.hiddenSize, kv = (d / hp.numHeads) * hp.numKvHeads;
  const perLayer = 2 * (2 * d * d + 2 * d * kv + 3 * d * hp.intermediateSize) + 4 * ctx * d;
  return hp.numLayers * perLayer + 2 * d * hp.vocabSize;
}

interface TextSamples {
  /** Prompt tokens of these runs. */
  prompt: number;
  ours: Sample[];
  llamaCpp: Sample[];
}

interface TextResult {
  type: BenchType;
  file: string;
  /** The --prompt runs, then (unless --report-context 0) the runs at a report's context. */
  runs: TextSamples[];
}

async function benchText(o: Options, type: BenchType, compare: boolean): Promise<TextResult> {
  const file = await ensureModel(o, type);
  const hp = SHAPES[o.shape];
  const prompts = o.reportContext ? [o.prompt, o.reportContext] : [o.prompt];
  const contextSize = Math.max(...prompts) + o.gen + 16;
  log(`[text ${type}] loading (threads ${o.threads}, context ${contextSize}, KV cache f16)`);
  const ours = await native().loadModel({ model: file, threads: o.threads, contextSize, kvType: 'f16' });
  const lc = compare ? await LlamaCppModel.load(file, { threads: o.threads, contextSize, batchSize: Math.min(o.prompt, 512) }) : null;
  if (lc) llamaCppVariant ??= loadedCpuVariant() ?? undefined;
  const bos = ours.info().tokenizer.bos;
  const res: TextResult = { type, file, runs: prompts.map((prompt) => ({ prompt, ours: [], llamaCpp: [] })) };
  try {
    // Warm-up, twice and alternating: touches every weight page once, and the first run
    // after the other engine was busy is measurably slower.
    for (let i = 0; i < 2; i++) {
      const warm = randomPrompt(Math.min(o.prompt, 64), hp.vocabSize, bos);
      await oursRun(ours, warm, 4);
      if (lc) await llamaRun(lc, warm, 4);
    }
    for (let r = 0; r < o.runs; r++) {
      for (const set of res.runs) {
        // A fresh prompt per run, so no engine can reuse a cached prefix beyond BOS.
        const prompt = randomPrompt(set.prompt, hp.vocabSize, bos);
        const order: ('ours' | 'llamaCpp')[] = lc && r % 2 === 1 ? ['llamaCpp', 'ours'] : ['ours', 'llamaCpp'];
        for (const who of order) {
          if (who === 'llamaCpp' && !lc) continue;
          const s = who === 'ours' ? await oursRun(ours, prompt, o.gen) : await llamaRun(lc!, prompt, o.gen);
          set[who].push(s);
          log(
            `[text ${type}] run ${r + 1}/${o.runs}, prompt ${set.prompt}, ${who === 'ours' ? 'ours     ' : 'llama.cpp'}: prefill ${rate(s.prefillTokens, s.prefillMs).toFixed(2)} tok/s, ` +
              `decode ${rate(s.decodeTokens, s.decodeMs).toFixed(2)} tok/s`,
          );
        }
      }
    }
  } finally {
    ours.close();
    if (lc) await lc.close();
  }
  return res;
}

interface VisionResult {
  ours: Record<VisionBenchType, number[]>;
  torch: number[];
  torchInfo?: TorchResult;
}

// Deterministic pixels in the normalised range, written where the anchor can read them.
function benchPixels(dir: string): { pixels: Float32Array; file: string } {
  const n = VIT_L_512.imageSize ** 2;
  const pixels = new Float32Array(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    pixels[i] = (x / 2 ** 32) * 4 - 2;
  }
  const file = path.join(dir, 'pixels.f32');
  writeFileSync(file, new Uint8Array(pixels.buffer));
  return { pixels, file };
}

async function benchVision(o: Options, textFile: string, compare: boolean): Promise<VisionResult> {
  const types: VisionBenchType[] = ['f16', 'q8_0'];
  const files = { f16: await ensureVision(o, 'f16'), q8_0: await ensureVision(o, 'q8_0') };
  const { pixels, file: pixelFile } = benchPixels(o.dir);
  const models = {} as Record<VisionBenchType, NativeModel>;
  const res: VisionResult = { ours: { f16: [], q8_0: [] }, torch: [] };
  try {
    for (const t of types) {
      models[t] = await native().loadModel({ model: textFile, mmproj: files[t], threads: o.threads, contextSize: 64, kvType: 'f16' });
      await encodeRaw(models[t], pixels); // warm-up: page in the weights
    }
    for (let r = 0; r < o.runs; r++) {
      for (const t of types) {
        const e = await encodeRaw(models[t], pixels);
        res.ours[t].push(e.ms);
        log(`[vision] run ${r + 1}/${o.runs} ours ${t}: ${(e.ms / 1000).toFixed(2)} s`);
        if (r === 0 && t === 'f16' && compare) writeFileSync(path.join(o.dir, 'ours-f16.f32'), new Uint8Array(e.image.read().buffer));
      }
      if (compare) {
        // The anchor runs the F16 file's weights in fp32; the first call also checks its
        // output against ours and times an SGEMM for the roofline.
        const first = r === 0;
        const tr = runTorchVision(files.f16, {
          threads: o.threads,
          runs: 1,
          pixels: pixelFile,
          ours: first ? path.join(o.dir, 'ours-f16.f32') : undefined,
          sgemm: first,
          isa: o.isa,
        });
        if (first) res.torchInfo = tr;
        res.torch.push(tr.ms[0]!);
        log(`[vision] run ${r + 1}/${o.runs} PyTorch: ${(tr.ms[0]! / 1000).toFixed(2)} s (${tr.openblas?.corename ?? tr.blas})`);
      }
    }
  } finally {
    for (const m of Object.values(models)) m.close();
  }
  return res;
}

interface ReportResult {
  /** Loading the text GGUF and the mmproj (repacking included). */
  loadMs: number;
  encodeMs: number;
  prefillTokens: number;
  prefillMs: number;
  decodeTokens: number;
  decodeMs: number;
}

/** One report as the API produces it: encode, prefill text + image + text, decode. */
async function benchReport(o: Options, textFile: string, mmproj: string): Promise<ReportResult> {
  const hp = SHAPES[o.shape];
  const nImage = (VIT_L_512.imageSize / VIT_L_512.patchSize) ** 2;
  const contextSize = o.reportPrompt + nImage + o.reportGen + 16;
  // Load time counts too: it is paid by every `cxr-llava report` that starts cold.
  const t0 = performance.now();
  const m = await native().loadModel({ model: textFile, mmproj, threads: o.threads, contextSize, kvType: 'f16' });
  const loadMs = performance.now() - t0;
  try {
    const { pixels } = benchPixels(o.dir);
    const bos = m.info().tokenizer.bos;
    await generateRaw(m, [{ tokens: Int32Array.from(randomPrompt(16, hp.vocabSize, bos)) }], 2); // warm-up
    const before = randomPrompt(Math.ceil(o.reportPrompt / 2), hp.vocabSize, bos);
    const after = randomPrompt(Math.floor(o.reportPrompt / 2) + 1, hp.vocabSize, bos).slice(1);
    const e = await encodeRaw(m, pixels);
    const r = await generateRaw(
      m,
      [{ tokens: Int32Array.from(before) }, { image: e.image, id: 1 }, { tokens: Int32Array.from(after) }],
      o.reportGen,
    );
    const res = { loadMs, encodeMs: e.ms, prefillTokens: r.prefillTokens, prefillMs: r.prefillMs, decodeTokens: r.decodeTokens, decodeMs: r.decodeMs };
    log(`[report] load ${(loadMs / 1000).toFixed(2)} s, encode ${(e.ms / 1000).toFixed(2)} s, prefill ${r.prefillTokens} in ${(r.prefillMs / 1000).toFixed(2)} s, decode ${r.decodeTokens} in ${(r.decodeMs / 1000).toFixed(2)} s`);
    return res;
  } finally {
    m.close();
  }
}

interface MemoryResult {
  file: string;
  fileBytes: number;
  kvBytes: number;
  /** Peak RSS of the child after loading and one generation. */
  peakBytes: number;
  /** Peak RSS of the same child before loading anything (Node itself). */
  baseBytes: number;
}

/** Child-process side of the memory part: one generation, then this process's peak RSS. */
async function childRss(o: Options, file: string): Promise<void> {
  const base = peakRss();
  const contextSize = o.prompt + o.gen + 16;
  const m = await native().loadModel({ model: file, threads: o.threads, contextSize, kvType: 'f16' });
  const hp = SHAPES[o.shape];
  await oursRun(m, randomPrompt(o.prompt, hp.vocabSize, m.info().tokenizer.bos), o.gen);
  m.close();
  process.stdout.write(JSON.stringify({ peakBytes: peakRss(), baseBytes: base, contextSize }) + '\n');
}

function benchMemory(o: Options, file: string): MemoryResult {
  const script = fileURLToPath(import.meta.url);
  const args = [script, '--child-rss', file, '--shape', o.shape, '--threads', String(o.threads), '--prompt', String(o.prompt), '--gen', '8'];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`memory child failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { peakBytes: number; baseBytes: number; contextSize: number };
  const res = { file, fileBytes: statSync(file).size, kvBytes: kvBytes(o.shape, j.contextSize), peakBytes: j.peakBytes, baseBytes: j.baseBytes };
  log(`[memory] peak RSS ${(res.peakBytes / 2 ** 30).toFixed(2)} GiB (Node alone ${(res.baseBytes / 2 ** 20).toFixed(0)} MiB)`);
  return res;
}

const fmt = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '-');
const pct = (x: number): string => (Number.isFinite(x) ? `${(100 * x).toFixed(0)}%` : '-');

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  // Before any matmul: the engine picks its kernel set once (also in the RSS child, which inherits it).
  if (o.isa === 'avx2') process.env.CXR_GEMM = 'avx2';
  if (o.childRss) return childRss(o, o.childRss);
  const wantText = o.parts.has('text');
  const wantVision = o.parts.has('vision');
  if (o.compare && wantText && anchorMissingReason()) installAnchor('install.sh');
  if (o.compare && wantText && o.isa === 'avx2') restrictAnchorToAvx2();
  if (o.compare && wantVision && torchMissingReason()) installAnchor('install-torch.sh');
  const missing = o.compare ? (wantText ? anchorMissingReason() : null) ?? (wantVision ? torchMissingReason() : null) : null;
  if (missing) throw new Error(`--compare needs the anchors: ${missing}`);
  // Every engine spin-waits between parallel steps, so other busy processes skew results badly.
  const loadBefore = loadavg()[0]!;
  if (loadBefore > 0.5) log(`warning: 1-minute load average is ${loadBefore.toFixed(2)}; other processes will skew the numbers`);

  let roof: Roofline | undefined;
  if (o.parts.has('roofline')) {
    roof = measureRoofline(path.join(o.dir, 'tools'), o.threads);
    log(`[roofline] read ${roof.read_gb_s.toFixed(1)} GB/s (4 KiB pages: ${roof.read_small_pages_gb_s.toFixed(1)}), FMA peak ${roof.peak_gflop_s.toFixed(0)} GFLOP/s, parallel_for ${roof.parallel_for_us.toFixed(2)} us`);
  }
  const text: TextResult[] = [];
  if (wantText) for (const t of o.types) text.push(await benchText(o, t, o.compare));
  // The vision and report parts need a text model whose width the projector matches (7B: 4096).
  const needQ4 = wantVision || o.parts.has('report') || o.parts.has('memory') || o.parts.has('batch');
  const q4file = needQ4 ? await ensureModel(o, 'q4_0') : '';
  let vision: VisionResult | undefined;
  if (wantVision) vision = await benchVision(o, q4file, o.compare);
  let report: ReportResult | undefined;
  if (o.parts.has('report')) report = await benchReport(o, q4file, await ensureVision(o, 'q8_0'));
  let memory: MemoryResult | undefined;
  if (o.parts.has('memory')) memory = benchMemory(o, q4file);
  let batch: BatchResult | undefined;
  if (o.parts.has('batch')) {
    const sequences = [1, ...o.sequences.filter((n) => n !== 1)];
    batch = await benchBatch(
      {
        threads: o.threads,
        runs: o.runs,
        sequences,
        prompt: 16,
        gen: o.gen,
        reports: o.batchReports,
        reportGen: o.batchGen,
        reportPrompt: o.reportPrompt,
        parallel: o.parallel,
        vocabSize: SHAPES[o.shape].vocabSize,
        imageTokens: (VIT_L_512.imageSize / VIT_L_512.patchSize) ** 2,
        pixels: benchPixels(o.dir).pixels,
        log,
      },
      q4file,
      o.batchReports > 0 ? await ensureVision(o, 'q8_0') : '',
    );
  }
  await LlamaCppModel.shutdown();

  // --- the table -------------------------------------------------------------------
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(
    `\n${cpu}, ${cpus().length} CPUs, ${o.threads} threads; our SIMD ${simdLevel()}, matmul kernels ${o.isa === 'avx2' ? 'avx2 (--isa avx2)' : 'native'}` +
      (llamaCppVariant ? `; llama.cpp CPU build "${llamaCppVariant}"` : '') +
      `; ${o.runs} runs each, medians`,
  );
  if (roof) {
    console.log(
      `roofline (cxr-roofline): read ${fmt(roof.read_gb_s, 1)} GB/s on huge pages (${fmt(roof.read_small_pages_gb_s, 1)} on 4 KiB pages), FMA peak ${fmt(roof.peak_gflop_s, 0)} GFLOP/s` +
        (vision?.torchInfo?.sgemm_gflop_s ? `, PyTorch/OpenBLAS SGEMM ${fmt(vision.torchInfo.sgemm_gflop_s, 0)} GFLOP/s` : '') +
        `; empty parallel_for ${fmt(roof.parallel_for_us, 2)} us`,
    );
  }
  const rows: string[][] = [['', 'ours', 'anchor', 'ratio', 'target', 'ours vs roofline']];
  for (const t of text) for (const set of t.runs) {
    const bytes = weightBytesPerToken(t.file) + kvBytes(o.shape, set.prompt + o.gen / 2);
    for (const which of ['prefill', 'decode'] as const) {
      const r = (s: Sample): number => (which === 'prefill' ? rate(s.prefillTokens, s.prefillMs) : rate(s.decodeTokens, s.decodeMs));
      const a = median(set.ours.map(r));
      const b = set.llamaCpp.length ? median(set.llamaCpp.map(r)) : NaN;
      const frac = !roof
        ? NaN
        : which === 'decode'
          ? (a * bytes) / (roof.read_gb_s * 1e9)
          : (a * textFlopsPerToken(o.shape, set.prompt / 2)) / (roof.peak_gflop_s * 1e9);
      rows.push([
        `${o.shape} ${t.type} ${which === 'prefill' ? `prefill ${set.prompt} tok` : `decode ${o.gen} tok after ${set.prompt}`} (tok/s)`,
        fmt(a),
        fmt(b),
        fmt(a / b, 3),
        which === 'prefill' ? '>= 1.25' : '>= 1.15',
        `${pct(frac)} of ${which === 'decode' ? 'bandwidth' : 'FP32 peak'}` + (which === 'decode' && Number.isFinite(b) && roof ? ` (llama.cpp ${pct((b * bytes) / (roof.read_gb_s * 1e9))})` : ''),
      ]);
    }
  }
  if (vision) {
    const torchMs = vision.torch.length ? median(vision.torch) : NaN;
    for (const t of ['f16', 'q8_0'] as const) {
      const ms = median(vision.ours[t]);
      rows.push([
        `ViT-L/16@512 ${t} encode (s)`,
        fmt(ms / 1000),
        fmt(torchMs / 1000),
        fmt(ms / torchMs, 3),
        t === 'f16' ? '<= 0.75' : '<= 0.5',
        roof ? `${pct(visionFlops() / (ms / 1000) / (roof.peak_gflop_s * 1e9))} of FP32 peak` : '-',
      ]);
    }
  }
  if (report) {
    const total = report.encodeMs + report.prefillMs + report.decodeMs;
    rows.push([
      `report: encode + ${report.prefillTokens} prefill + ${report.decodeTokens} decode (s)`,
      fmt(total / 1000, 1),
      '-',
      '-',
      '-',
      `first token after ${fmt((report.encodeMs + report.prefillMs) / 1000, 1)} s; loading took ${fmt(report.loadMs / 1000, 1)} s before`,
    ]);
  }
  if (memory) {
    const budget = (memory.fileBytes + memory.kvBytes) * 1.1;
    rows.push([
      `peak RSS, ${o.shape} q4_0 (GiB)`,
      fmt(memory.peakBytes / 2 ** 30),
      '-',
      fmt(memory.peakBytes / (memory.fileBytes + memory.kvBytes), 3),
      '<= 1.10',
      `file ${fmt(memory.fileBytes / 2 ** 30)} + KV ${fmt(memory.kvBytes / 2 ** 30)} GiB; Node ${fmt(memory.baseBytes / 2 ** 20, 0)} MiB; ${memory.peakBytes <= budget ? 'within' : 'over'} +10%`,
    ]);
  }
  if (batch) {
    const one = median(batch.decode.find((d) => d.sequences === 1)!.rates);
    for (const d of batch.decode) {
      const a = median(d.rates);
      rows.push([
        `${o.shape} q4_0 decode, ${d.sequences} sequence${d.sequences > 1 ? 's' : ''} x ${o.gen} tok (aggregate tok/s)`,
        fmt(a),
        d.sequences === 1 ? '-' : fmt(one),
        d.sequences === 1 ? '-' : fmt(a / one, 3),
        d.sequences === 4 ? '>= 2.5' : '-',
        `runs ${d.rates.map((x) => fmt(x)).join(', ')}`,
      ]);
    }
    if (batch.reports.length === 2) {
      const [seq, par] = batch.reports as [BatchResult['reports'][0], BatchResult['reports'][0]];
      const a = median(par.perMinute), b = median(seq.perMinute);
      rows.push([
        `${o.batchReports} reports x ${o.batchGen} tok, ${par.parallel} at once (images/min)`,
        fmt(a, 3),
        fmt(b, 3),
        fmt(a / b, 3),
        '>= 1.3',
        `one at a time: runs ${seq.perMinute.map((x) => fmt(x, 3)).join(', ')}; ${par.parallel} at once: ${par.perMinute.map((x) => fmt(x, 3)).join(', ')}`,
      ]);
    }
  }
  if (rows.length > 1) console.log(table(rows));
  if (vision?.torchInfo) {
    const ti = vision.torchInfo;
    console.log(
      `anchors: node-llama-cpp@${LLAMA_CPP_ANCHOR_VERSION}; PyTorch ${ti.torch} on ${ti.openblas ? `OpenBLAS ${ti.openblas.corename}` : ti.blas}` +
        (ti.max_abs_diff !== undefined ? `; our f16 output vs PyTorch: max |diff| ${ti.max_abs_diff.toExponential(2)} (max |value| ${fmt(ti.max_abs_ref ?? NaN)})` : ''),
    );
  }
  console.log(
    JSON.stringify({
      shape: o.shape,
      threads: o.threads,
      prompt: o.prompt,
      gen: o.gen,
      runs: o.runs,
      isa: o.isa,
      llamaCppVariant,
      cpu,
      simd: simdLevel(),
      loadavg: { before: loadBefore, after: loadavg()[0] },
      roofline: roof,
      text,
      vision,
      report,
      memory,
      batch,
    }),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
