/**
 * Which GGUF files a command loads: `--model`/`--mmproj`, else
 * $CXR_LLAVA_MODEL, else the default model in the cache, which the image
 * commands pull on first use (saying so, with its size).
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { CxrError } from '../errors.js';
import { pullCommand, resolveDefaultModel, type PullProgress } from '../hub/hub.js';
import { humanBytes } from './format.js';
import { PhasedProgress } from './progress.js';

export interface ModelChoice {
  model: string;
  /** The vision projector; undefined for a text-only model named by file. */
  mmproj: string | undefined;
  /** How it was chosen, for --verbose. */
  source: string;
}

export interface SelectOptions {
  model?: string;
  mmproj?: string;
  /** Cached type to use (optional, default the most recently pulled). */
  type?: string;
  /** Pull the default model when none is cached (optional, default false). */
  pull?: boolean;
  quiet?: boolean;
  env?: NodeJS.ProcessEnv;
}

const TEXT_GGUF = /^cxr-llava-v2\..+\.gguf$/;

/** The text GGUF and mmproj inside a folder, as `pull`/`convert` name them. */
async function fromDir(dir: string): Promise<{ model: string; mmproj: string | undefined }> {
  const names = (await readdir(dir)).sort();
  const texts = names.filter((n) => TEXT_GGUF.test(n));
  if (texts.length === 0) throw new CxrError('ERR_IO', `${dir}: no cxr-llava-v2.<type>.gguf in this folder`);
  if (texts.length > 1) throw new CxrError('ERR_IO', `${dir}: several models (${texts.join(', ')}); pass one file with --model`);
  const text = texts[0]!;
  const paired = `mmproj-${text}`;
  const mmprojs = names.filter((n) => n.startsWith('mmproj-') && n.endsWith('.gguf'));
  const mmproj = names.includes(paired) ? paired : mmprojs.length === 1 ? mmprojs[0] : undefined;
  return { model: path.join(dir, text), mmproj: mmproj === undefined ? undefined : path.join(dir, mmproj) };
}

/** The mmproj next to a text GGUF file, if `pull`/`convert` put one there. */
async function siblingMmproj(file: string): Promise<string | undefined> {
  const p = path.join(path.dirname(file), `mmproj-${path.basename(file)}`);
  return (await stat(p).catch(() => null))?.isFile() ? p : undefined;
}

export async function selectModel(options: SelectOptions): Promise<ModelChoice> {
  const env = options.env ?? process.env;
  const spec = options.model ?? (env.CXR_LLAVA_MODEL || undefined);
  if (spec !== undefined) {
    const source = options.model !== undefined ? '--model' : '$CXR_LLAVA_MODEL';
    const s = await stat(spec).catch(() => null);
    if (!s) throw new CxrError('ERR_IO', `${spec}: file not found (from ${source})`);
    const found = s.isDirectory() ? await fromDir(spec) : { model: spec, mmproj: await siblingMmproj(spec) };
    return { model: found.model, mmproj: options.mmproj ?? found.mmproj, source };
  }
  try {
    const m = await resolveDefaultModel(options.type !== undefined ? { type: options.type } : {});
    return { model: m.textPath, mmproj: options.mmproj ?? m.mmprojPath, source: `the cache (${m.dir})` };
  } catch (err) {
    if (!options.pull || (err as CxrError).code !== 'ERR_IO') throw err;
  }
  const m = await pullWithProgress(options.type !== undefined ? { type: options.type } : {}, options.quiet === true, true);
  return { model: m.textPath, mmproj: options.mmproj ?? m.mmprojPath, source: `the cache (${m.dir})` };
}

/**
 * Runs `pullCommand` with a progress bar: bytes while downloading, then the
 * conversion's phases. `firstUse` explains why a report command is downloading.
 */
export async function pullWithProgress(
  opts: Parameters<typeof pullCommand>[0],
  quiet: boolean,
  firstUse = false,
): ReturnType<typeof pullCommand> {
  const say = (line: string): void => {
    if (!quiet) process.stderr.write(line + '\n');
  };
  if (firstUse) {
    say('No model in the cache yet: downloading ECOFRI/CXR-LLAVA-v2 and converting it to GGUF (once; later runs reuse it).');
    say('Run `cxr-llava pull` to do this ahead of time, or pass --model to use files you already have.');
  }
  let announced = false;
  const phases = new PhasedProgress(quiet);
  const onProgress = (p: PullProgress): void => {
    if (p.phase === 'download' && !announced && p.totalBytes) {
      announced = true;
      phases.log(`Downloading ${humanBytes(p.totalBytes)} (the official safetensors checkpoint).`);
    }
    if (p.phase === 'lock' && p.item) phases.log(`Another pull is running (${p.item}); waiting for it.`);
    phases.update(p);
  };
  try {
    const m = await pullCommand(opts, onProgress);
    phases.stop();
    say(`Model ready: ${m.textPath}`);
    return m;
  } finally {
    phases.stop();
  }
}
