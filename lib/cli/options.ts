/**
 * Options shared by several commands, with parsers that turn a bad value into
 * a usage error (exit status 2) naming the option and the accepted range.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { SamplingParams } from './batch.js';

export function intArg(min: number, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? ' up' : ` to ${max}`}.`);
    }
    return n;
  };
}

export function numberArg(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}.`);
    return n;
  };
}

/** Seeds are 64-bit: kept as bigint so 18446744073709551615 survives. */
export function seedArg(v: string): bigint {
  if (!/^\d+$/.test(v.trim()) || BigInt(v) >= 1n << 64n) throw new InvalidArgumentError('expected an integer from 0 to 18446744073709551615.');
  return BigInt(v);
}

export interface ModelFlags {
  model?: string;
  mmproj?: string;
  type?: string;
  threads?: number;
  ctx?: number;
  backend?: 'auto' | 'cpu' | 'cuda';
  device?: number;
}

export interface SamplingFlags {
  temperature: number;
  topP: number;
  seed?: bigint;
  maxTokens: number;
}

export interface ChatterFlags {
  quiet?: boolean;
  verbose?: boolean;
}

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('-m, --model <file|dir>', 'text model GGUF, or a folder holding cxr-llava-v2.<type>.gguf and its mmproj (default: $CXR_LLAVA_MODEL, then the cached model)')
    .option('--mmproj <file>', 'vision projector GGUF (default: mmproj-<model file> next to the model)')
    .option('--type <type>', 'which cached model type to use, e.g. q8_0 or q4_k_m (default: the most recently pulled)')
    .option('-t, --threads <n>', 'CPU threads (default: cores, halved on 8+ hardware threads)', intArg(1, 1024))
    .option('--ctx <n>', 'context length in tokens (default: min(trained, 4096))', intArg(16, 1 << 20))
    .addOption(
      new Option('--backend <name>', 'where to run: cpu, cuda, or auto (CUDA when built with it and a GPU is there)').choices(['auto', 'cpu', 'cuda']),
    )
    .option('--device <n>', 'CUDA device index (default: 0)', intArg(0, 1023));
}

/** --parallel for the batch commands: images whose sequences share the engine's forward passes. */
export function addParallelOption(cmd: Command, def: number): Command {
  return cmd.option(
    '-P, --parallel <n>',
    `images in the model at once; their decoding shares each pass over the weights (default: ${def}; 1 runs them one after another)`,
    intArg(1, 64),
  );
}

export function addSamplingOptions(cmd: Command): Command {
  return cmd
    .option('--temperature <t>', 'sampling temperature; 0 is greedy', numberArg(0, 100), 0.2)
    .option('--top-p <p>', 'nucleus sampling mass', numberArg(0, 1), 0.8)
    .option('--seed <n>', 'random seed, for repeatable output (default: random, recorded in --jsonl)', seedArg)
    .option('-n, --max-tokens <n>', 'most tokens to generate', intArg(1), 512);
}

export function addChatterOptions(cmd: Command): Command {
  return cmd.option('-q, --quiet', 'no progress bar or summary; errors only').option('-v, --verbose', 'timings per image, and stack traces with errors');
}

/** Output options of the batch commands; --json and --jsonl exclude each other. */
export function addOutputOptions(cmd: Command, batch: boolean): Command {
  cmd.addOption(new Option('--jsonl', 'one JSON object per image per line: {file, task, text, model, params, timings, error}').conflicts('json'));
  cmd.addOption(new Option('--json', 'one JSON array of those objects, printed at the end').conflicts('jsonl'));
  if (batch) {
    cmd
      .option('-o, --output <dir>', 'write one file per image into <dir> (.txt, or .json with --json/--jsonl), atomically')
      .option('--resume', 'with --output: skip images whose output file exists')
      .option('-r, --recursive', 'descend into subfolders of folder arguments');
  }
  return cmd;
}

export function sampling(f: SamplingFlags): SamplingParams {
  return { temperature: f.temperature, topP: f.topP, maxTokens: f.maxTokens, ...(f.seed !== undefined ? { seed: f.seed } : {}) };
}

/** "C,W" -> a display window for DICOM and 16-bit images. */
export function windowArg(v: string): { center: number; width: number } {
  const m = /^\s*(-?[\d.]+)\s*,\s*([\d.]+)\s*$/.exec(v);
  const center = m ? Number(m[1]) : NaN;
  const width = m ? Number(m[2]) : NaN;
  if (!Number.isFinite(center) || !Number.isFinite(width) || width < 1) {
    throw new InvalidArgumentError('expected CENTER,WIDTH with a width of at least 1, e.g. 40,400.');
  }
  return { center, width };
}

export interface ImageFlags {
  window?: { center: number; width: number };
  voi?: number;
}

/** Display options for DICOM and 16-bit inputs (docs/dicom.md). */
export function addImageOptions(cmd: Command): Command {
  return cmd
    .option('--window <center,width>', "display window for DICOM and 16-bit images, instead of the file's own VOI or the data range", windowArg)
    .option('--voi <n>', "which of a DICOM file's VOI LUTs or windows to use (1-based; default 1)", intArg(1, 1000));
}
