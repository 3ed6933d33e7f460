/**
 * Options shared by several commands, with parsers that turn a bad value into
 * a usage error (exit status 2) naming the option and the accepted range.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { SamplingParams } from './batch.js';
import { cliLoadRanges, generateRanges, type GenerateRanges, type LoadRanges } from '../runtime/option-ranges.js';
import { parseNumberArg, parseSeedArg, type NumberRange } from '../validate.js';

/**
 * A flag that sets the API option `name`, parsed and checked with the API's own
 * range (read when the flag is parsed, so --help needs no addon).
 */
export function rangeArg(name: string, range: () => NumberRange): (v: string) => number {
  return (v) => {
    try {
      return parseNumberArg(name, v, range());
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

const gen = (k: keyof GenerateRanges) => rangeArg(k, () => generateRanges()[k]);
const load = (k: keyof LoadRanges) => rangeArg(k, () => cliLoadRanges()[k]);

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
  try {
    return parseSeedArg('seed', v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
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
    .option('-t, --threads <n>', 'CPU threads, 1 to 1024 (default: cores, halved on 8+ hardware threads)', load('threads'))
    .option('--ctx <n>', 'context length in tokens, at least 16 (default: min(trained, 4096))', load('contextSize'))
    .addOption(
      new Option('--backend <name>', 'where to run: cpu, cuda, or auto (CUDA when built with it and a GPU is there)').choices(['auto', 'cpu', 'cuda']),
    )
    .option('--device <n>', 'CUDA device index (default: 0)', load('device'));
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
    .option('--temperature <t>', 'sampling temperature in [0, 100]; 0 is greedy', gen('temperature'), 0.2)
    .option('--top-p <p>', 'nucleus sampling mass in (0, 1]', gen('topP'), 0.8)
    .option('--seed <n>', 'random seed, for repeatable output (default: random, recorded in --jsonl)', seedArg)
    .option('-n, --max-tokens <n>', 'most tokens to generate', gen('maxTokens'), 512);
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
