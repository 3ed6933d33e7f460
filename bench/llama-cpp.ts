/**
 * llama.cpp as an anchor, through node-llama-cpp installed by bench/anchors/install.sh
 * into <repo>/.anchors/node-llama-cpp/ (outside our dependency tree). The interop test
 * and the benchmark use it to run the same GGUF file on llama.cpp's CPU backend.
 *
 * Only the prebuilt CPU binary is used: getLlama never compiles or downloads anything.
 * Token ids go straight into a context sequence, so comparisons never depend on
 * llama.cpp's tokenizer (which is compared on its own, through tokenize()).
 */
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The pinned anchor version (bench/anchors/install.sh installs exactly this). */
export const LLAMA_CPP_ANCHOR_VERSION = '3.21.1';

/** The repository root: the nearest parent holding binding.gyp (from bench/ or dist/bench/). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the repository root (binding.gyp) above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

/** Where install.sh puts node-llama-cpp's package folder (or its AVX2-only twin, see restrictAnchorToAvx2). */
export function anchorPackageDir(): string {
  return path.join(repoRoot(), '.anchors', anchorFolder, 'node_modules', 'node-llama-cpp');
}

let anchorFolder = 'node-llama-cpp';

// llama.cpp's CPU backend ships one library per instruction-set level and loads
// the best one the CPU supports. These need AVX-512.
const AVX512_VARIANTS = /^libggml-cpu-(skylakex|cannonlake|cascadelake|cooperlake|icelake|zen4|sapphirerapids)\./;

/**
 * Makes llama.cpp run its AVX2 build on this CPU, as on a CPU without AVX-512:
 * a twin of the installed anchor (hard links, so no copy) that lacks the
 * AVX-512 libraries, so ggml's loader falls back to the best of the rest
 * ("haswell" on an AVX2 CPU). Call before the first load.
 */
export function restrictAnchorToAvx2(): void {
  if (llamaPromise) throw new Error('restrictAnchorToAvx2: llama.cpp is already loaded');
  const missing = anchorMissingReason();
  if (missing) throw new Error(missing);
  const root = path.join(repoRoot(), '.anchors');
  const src = path.join(root, 'node-llama-cpp');
  const dest = path.join(root, 'node-llama-cpp-avx2');
  const pkg = path.join(dest, 'node_modules', 'node-llama-cpp', 'package.json');
  const version = existsSync(pkg) ? (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version : undefined;
  if (version !== LLAMA_CPP_ANCHOR_VERSION) {
    const staging = `${dest}.tmp-${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    const mirror = (from: string, to: string): void => {
      mkdirSync(to, { recursive: true });
      for (const name of readdirSync(from)) {
        if (AVX512_VARIANTS.test(name)) continue;
        const a = path.join(from, name);
        const b = path.join(to, name);
        const st = lstatSync(a);
        if (st.isSymbolicLink()) symlinkSync(readlinkSync(a), b);
        else if (st.isDirectory()) mirror(a, b);
        else linkSync(a, b);
      }
    };
    mirror(src, staging);
    rmSync(dest, { recursive: true, force: true });
    renameSync(staging, dest);
  }
  anchorFolder = 'node-llama-cpp-avx2';
}

/** The llama.cpp CPU library this process has loaded ("zen4", "haswell", ...), or null if none or unknown. */
export function loadedCpuVariant(): string | null {
  try {
    const m = /libggml-cpu-([\w-]+)\.so/.exec(readFileSync('/proc/self/maps', 'utf8'));
    return m ? m[1]! : null;
  } catch {
    return null;
  }
}

// The small part of node-llama-cpp's API used here, typed structurally: the package is
// imported by path at run time, so its own .d.ts files are not visible to tsc.
interface NlcSequence {
  evaluate(tokens: number[], options?: Record<string, unknown>): AsyncGenerator<number, void, void | number | number[]>;
  evaluateWithMetadata(
    tokens: number[],
    metadata: { probabilities: true },
    options?: Record<string, unknown>,
  ): AsyncGenerator<{ token: number; probabilities: Map<number, number> }, void, void | number | number[]>;
  clearHistory(): Promise<void>;
  readonly nextTokenIndex: number;
}
interface NlcContext {
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
  readonly contextSize: number;
  readonly currentThreads: number;
}
interface NlcModel {
  tokenize(text: string, specialTokens?: boolean): number[];
  readonly tokens: { readonly bos: number | null; readonly eos: number | null };
  createContext(options: Record<string, unknown>): Promise<NlcContext>;
  dispose(): Promise<void>;
}
interface NlcLlama {
  loadModel(options: { modelPath: string; gpuLayers?: number; useMmap?: boolean }): Promise<NlcModel>;
  dispose(): Promise<void>;
  readonly gpu: string | false;
  readonly buildType: string;
}
interface NlcModule {
  getLlama(options: Record<string, unknown>): Promise<NlcLlama>;
}

/** Why the anchor cannot be used, or null when node-llama-cpp is installed at the pinned version. */
export function anchorMissingReason(): string | null {
  const pkg = path.join(anchorPackageDir(), 'package.json');
  if (!existsSync(pkg)) return `node-llama-cpp is not installed in ${path.dirname(path.dirname(anchorPackageDir()))} (run: sh bench/anchors/install.sh)`;
  const version = (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version;
  if (version !== LLAMA_CPP_ANCHOR_VERSION) {
    return `node-llama-cpp ${String(version)} is installed but ${LLAMA_CPP_ANCHOR_VERSION} is pinned (run: sh bench/anchors/install.sh)`;
  }
  return null;
}

let llamaPromise: Promise<NlcLlama> | undefined;

/** The llama.cpp runtime (CPU only), created once per process. */
async function llama(maxThreads: number): Promise<NlcLlama> {
  llamaPromise ??= (async () => {
    const missing = anchorMissingReason();
    if (missing) throw new Error(missing);
    const entry = path.join(anchorPackageDir(), 'dist', 'index.js');
    const mod = (await import(pathToFileURL(entry).href)) as NlcModule;
    // gpu:false with build:'never' and skipDownload: the prebuilt CPU binary or an error, never a compile.
    return mod.getLlama({
      gpu: false,
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      logLevel: 'error',
      maxThreads,
    });
  })();
  return llamaPromise;
}

/** Timings of one greedy run, in the same terms as our engine's `Timings`. */
export interface LlamaCppRun {
  /** Generated token ids (EOS included if it was generated). */
  tokens: number[];
  prefillTokens: number;
  /** From handing over the prompt until the first token is sampled. */
  prefillMs: number;
  /** Tokens produced by single-token decode steps (the first token comes from prefill). */
  decodeTokens: number;
  /** From the first token until the last one is sampled. */
  decodeMs: number;
}

/** Options of LlamaCppModel.load. */
export interface LlamaCppLoadOptions {
  /** CPU threads for evaluation (optional, default 2). */
  threads?: number;
  /** KV cache length (optional, default 512). */
  contextSize?: number;
  /** Tokens per prefill batch (optional, default min(contextSize, 512)). */
  batchSize?: number;
}

/** One GGUF file loaded in llama.cpp with a single-sequence context. */
export class LlamaCppModel {
  readonly #model: NlcModel;
  readonly #context: NlcContext;
  readonly #sequence: NlcSequence;

  private constructor(model: NlcModel, context: NlcContext) {
    this.#model = model;
    this.#context = context;
    this.#sequence = context.getSequence();
  }

  /** Loads `file` (mmapped, CPU) with one context of `contextSize` tokens and an f16 KV cache (llama.cpp's default). */
  static async load(file: string, options: LlamaCppLoadOptions = {}): Promise<LlamaCppModel> {
    const threads = options.threads ?? 2;
    const contextSize = options.contextSize ?? 512;
    const l = await llama(threads);
    const model = await l.loadModel({ modelPath: file, gpuLayers: 0, useMmap: true });
    try {
      const context = await model.createContext({
        contextSize,
        batchSize: options.batchSize ?? Math.min(contextSize, 512),
        sequences: 1,
        threads: { ideal: threads, min: threads },
        // The plain attention path, as our engine has no flash attention.
        flashAttention: false,
      });
      return new LlamaCppModel(model, context);
    } catch (err) {
      await model.dispose();
      throw err;
    }
  }

  /** Context length actually created. */
  get contextSize(): number {
    return this.#context.contextSize;
  }

  get bos(): number | null {
    return this.#model.tokens.bos;
  }

  get eos(): number | null {
    return this.#model.tokens.eos;
  }

  /** llama.cpp's SentencePiece tokenization of `text` (plain text, no special tokens), BOS first when asked. */
  tokenize(text: string, options: { bos?: boolean } = {}): number[] {
    const ids = [...this.#model.tokenize(text, false)];
    if (options.bos) {
      const bos = this.#model.tokens.bos;
      if (bos === null) throw new Error('the model has no BOS token');
      ids.unshift(bos);
    }
    return ids;
  }

  /**
   * Feeds `prompt` from an empty cache and generates `maxTokens` tokens greedily
   * (temperature 0, no penalties). With `ignoreEos` generation runs past EOS, as a
   * benchmark needs; otherwise it stops after EOS, which is then the last token.
   */
  async greedy(prompt: readonly number[], maxTokens: number, options: { ignoreEos?: boolean } = {}): Promise<LlamaCppRun> {
    if (prompt.length === 0) throw new Error('greedy: the prompt is empty');
    if (prompt.length + maxTokens > this.contextSize) {
      throw new Error(`greedy: ${prompt.length} prompt + ${maxTokens} new tokens exceed the context of ${this.contextSize}`);
    }
    await this.#sequence.clearHistory();
    const tokens: number[] = [];
    const t0 = performance.now();
    let t1 = t0;
    // yieldEogToken makes EOS visible: we decide whether it ends the run.
    const gen = this.#sequence.evaluate([...prompt], { temperature: 0, yieldEogToken: true });
    try {
      for (let r = await gen.next(); !r.done; r = await gen.next()) {
        if (tokens.length === 0) t1 = performance.now();
        tokens.push(r.value);
        if (tokens.length >= maxTokens) break;
        if (!options.ignoreEos && r.value === this.eos) break;
      }
    } finally {
      await gen.return();
    }
    const t2 = performance.now();
    return {
      tokens,
      prefillTokens: prompt.length,
      prefillMs: t1 - t0,
      decodeTokens: Math.max(tokens.length - 1, 0),
      decodeMs: t2 - t1,
    };
  }

  /**
   * Natural-log probabilities llama.cpp gives every vocabulary entry as the token after
   * `prompt` (a plain softmax: temperature 1, no top-k/top-p/min-p truncation). Entries
   * the sampler dropped are -Infinity. Differences between two entries equal their
   * logit difference, so this compares logits up to a constant.
   */
  async nextLogProbs(prompt: readonly number[], vocabSize: number): Promise<Float64Array> {
    if (prompt.length === 0) throw new Error('nextLogProbs: the prompt is empty');
    await this.#sequence.clearHistory();
    const out = new Float64Array(vocabSize).fill(-Infinity);
    const gen = this.#sequence.evaluateWithMetadata([...prompt], { probabilities: true }, {
      temperature: 1,
      topK: 0,
      topP: 1,
      minP: 0,
      seed: 1,
      yieldEogToken: true,
    });
    try {
      const r = await gen.next();
      if (r.done) throw new Error('nextLogProbs: llama.cpp produced no token');
      for (const [id, p] of r.value.probabilities) if (id >= 0 && id < vocabSize && p > 0) out[id] = Math.log(p);
    } finally {
      await gen.return();
    }
    return out;
  }

  /** Frees the context and the model (the shared runtime stays for the next load). */
  async close(): Promise<void> {
    await this.#context.dispose();
    await this.#model.dispose();
  }

  /** Frees the llama.cpp runtime; call once when done with every model. */
  static async shutdown(): Promise<void> {
    if (!llamaPromise) return;
    const l = await llamaPromise.catch(() => undefined);
    llamaPromise = undefined;
    await l?.dispose();
  }
}
