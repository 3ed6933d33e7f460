#!/usr/bin/env node
/**
 * The cxr-llava command line. Errors are one line on stderr (the stack only
 * with --verbose); exit status 0 on success, 1 when something failed (in a
 * batch: any input), 2 on a usage error. The machinery lives in lib/cli/.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { convertCommand } from '../lib/convert/convert.js';
import { DEFAULT_PARALLEL, loadModel, type Model } from '../lib/runtime/model.js';
import { readGgufInfo } from '../lib/runtime/tensors.js';
import { runBatch } from '../lib/cli/batch.js';
import { formatBench, runBench } from '../lib/cli/bench.js';
import { runChat } from '../lib/cli/chat.js';
import { Interrupt } from '../lib/cli/interrupt.js';
import { humanBytes } from '../lib/cli/format.js';
import { expandInputs, type InputFile } from '../lib/cli/inputs.js';
import {
  addChatterOptions,
  addModelOptions,
  addImageOptions,
  type ImageFlags,
  addOutputOptions,
  addParallelOption,
  addSamplingOptions,
  intArg,
  sampling,
  type ChatterFlags,
  type ModelFlags,
  type SamplingFlags,
} from '../lib/cli/options.js';
import { diskFullError, isDiskFull } from '../lib/errors.js';
import { planOutputs, removePendingTemps, type Format, type Task } from '../lib/cli/output.js';
import { cutStdoutToLastLine, stdoutFile } from '../lib/cli/stdout-full.js';
import { PhasedProgress } from '../lib/cli/progress.js';
import { pullWithProgress, selectModel } from '../lib/cli/select-model.js';
import { addShardOption, applyShard, type Shard } from '../lib/cli/shard.js';
import { registerMerge } from '../lib/cli/merge.js';
import { registerLabel } from '../lib/cli/label.js';
import { registerEval } from '../lib/cli/eval.js';
import { registerServe } from '../lib/cli/serve.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

type BatchFlags = ModelFlags & SamplingFlags & ChatterFlags & ImageFlags & { jsonl?: boolean; json?: boolean; output?: string; resume?: boolean; recursive?: boolean; shard?: Shard; sr?: boolean; findings?: boolean; parallel?: number };

/** Models loaded by this run, closed before exit so the engine's threads end. */
const openModels: Model[] = [];

function formatMeta(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? v.slice(0, 77) + '...' : v);
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return `[${v.map(formatMeta).join(', ')}]`;
  if (v && typeof v === 'object') {
    const o = v as { type: string; length: number };
    return `${o.type} of ${o.length}`;
  }
  return String(v);
}

function examples(...lines: string[]): string {
  return '\nExamples:\n' + lines.map((l) => (l.startsWith('#') ? `  ${l}` : `  $ ${l}`)).join('\n');
}

/** Usage errors raised by our own checks; commander prints them and main() exits 2. */
function usage(cmd: Command, message: string): never {
  cmd.error(`error: ${message}`, { exitCode: 2, code: 'cxr.usage' });
}

/** Loads the chosen model; `images` commands need its vision projector and say so once, up front. */
async function openModel(flags: ModelFlags & ChatterFlags & { parallel?: number }, pull: boolean, images: boolean): Promise<Model> {
  const choice = await selectModel({
    ...(flags.model !== undefined ? { model: flags.model } : {}),
    ...(flags.mmproj !== undefined ? { mmproj: flags.mmproj } : {}),
    ...(flags.type !== undefined ? { type: flags.type } : {}),
    pull,
    quiet: flags.quiet === true,
  });
  if (flags.verbose) process.stderr.write(`model: ${choice.model}\nmmproj: ${choice.mmproj ?? '(none)'}\n  (from ${choice.source})\n`);
  if (images && choice.mmproj === undefined) {
    throw new Error(`${choice.model}: no vision projector found next to it (mmproj-${path.basename(choice.model)}); pass --mmproj <file>`);
  }
  const model = await loadModel({
    model: choice.model,
    ...(choice.mmproj !== undefined ? { mmproj: choice.mmproj } : {}),
    ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
    ...(flags.ctx !== undefined ? { contextSize: flags.ctx } : {}),
    ...(flags.backend !== undefined ? { backend: flags.backend } : {}),
    ...(flags.device !== undefined ? { device: flags.device } : {}),
    ...(flags.parallel !== undefined ? { parallel: flags.parallel } : {}),
  });
  openModels.push(model);
  return model;
}

function formatOf(flags: BatchFlags): Format {
  return flags.jsonl ? 'jsonl' : flags.json ? 'json' : 'text';
}

/** report / ddx / ask: expand the inputs, check the plan, load the model once, run the batch. */
async function batch(cmd: Command, task: Task, args: string[], flags: BatchFlags, question?: string): Promise<void> {
  if (flags.resume && !flags.output) usage(cmd, '--resume needs --output <dir> (it skips inputs whose output file exists)');
  if (flags.sr && !flags.output) usage(cmd, '--sr needs --output <dir> (each DICOM SR is written beside its report)');
  if (args.filter((a) => a === '-').length > 1) usage(cmd, "'-' (read paths from stdin) may be given once");
  const all: InputFile[] = await expandInputs(args, { recursive: flags.recursive === true });
  if (all.length === 0) {
    throw new Error(
      `no image files found in ${args.join(' ')} (folders contribute .png .jpg .jpeg .tif .tiff .webp .dcm and extension-less files${flags.recursive ? '' : '; add --recursive to search subfolders'})`,
    );
  }
  const inputs = applyShard(all, flags.shard, flags.quiet === true);
  if (inputs.length === 0) {
    if (flags.json) process.stdout.write('[]\n');
    return;
  }
  const format = formatOf(flags);
  if (flags.output) {
    try {
      planOutputs(flags.output, inputs, format);
    } catch (err) {
      usage(cmd, (err as Error).message);
    }
  }
  // Ctrl-C from here on stops the batch cleanly (lib/cli/interrupt.ts); a second one at once.
  const interrupt = new Interrupt().install();
  try {
    const model = await openModel(flags, true, true);
    const summary = await runBatch({
      model,
      task,
      ...(question !== undefined ? { question } : {}),
      inputs,
      sampling: sampling(flags),
      display: { ...(flags.window ? { window: flags.window } : {}), ...(flags.voi !== undefined ? { voi: flags.voi } : {}) },
      format,
      ...(flags.output ? { outDir: flags.output } : {}),
      resume: flags.resume === true,
      ...(flags.sr ? { sr: { version: pkg.version } } : {}),
      findings: flags.findings === true,
      parallel: flags.parallel ?? model.info.runtime.parallel,
      quiet: flags.quiet === true,
      verbose: flags.verbose === true,
      signal: interrupt.signal,
    });
    process.exitCode = interrupt.exitCode ?? (summary.failed > 0 ? 1 : 0);
  } finally {
    interrupt.uninstall();
    interrupt.exitSoon();
  }
}

const program = new Command();
program
  .name('cxr-llava')
  .description('Run CXR-LLaVA, a chest X-ray report model, locally on a native GGUF engine.\nResearch software: not for clinical use without your own validation.')
  .version(pkg.version, '-V, --version', 'print the version')
  .option('--verbose', 'print stack traces and timings')
  .exitOverride()
  .showSuggestionAfterError()
  .configureOutput({ outputError: (str, write) => write(str) })
  // --verbose before the command name counts for the command too.
  .hook('preAction', (_program, action) => {
    if (program.opts<{ verbose?: boolean }>().verbose) action.setOptionValue('verbose', true);
  })
  .addHelpText('after', examples('cxr-llava report chest.png', 'cxr-llava report scans/ --recursive --jsonl > reports.jsonl', 'cxr-llava <command> --help   # every command explains itself'));

function batchCommand(name: string, task: Task, what: string, help: string): Command {
  const cmd = program.command(name).description(what).argument('<images...>', "image files, folders, quoted globs ('scans/**/*.png'), or - to read paths from stdin");
  addModelOptions(cmd);
  addSamplingOptions(cmd);
  addImageOptions(cmd);
  addOutputOptions(cmd, true);
  addShardOption(cmd);
  cmd.option('--findings', 'label each text with the 14 CheXpert observations (positive/negative/uncertain): a "findings" object in JSON, a Findings line in text');
  addParallelOption(cmd, DEFAULT_PARALLEL);
  addChatterOptions(cmd);
  cmd.addHelpText('after', help);
  cmd.action(async (images: string[], flags: BatchFlags) => batch(cmd, task, images, flags));
  return cmd;
}

const batchNotes =
  '\nThe model is loaded once for the whole batch; a file that cannot be read is reported\n' +
  '(stderr, and a record with "error" in --jsonl) and the batch goes on. Exit status: 0 all\n' +
  'succeeded, 1 some failed, 2 usage error. Text streams token by token on a terminal; a\n' +
  'progress bar shows on stderr when it is a terminal (never in a pipe).\n';

batchCommand(
  'report',
  'report',
  'Write a radiology report for each image (the official prompt). Pulls the default model on first use.',
  batchNotes +
    examples(
      'cxr-llava report chest.png',
      'cxr-llava report scans/ -r --jsonl > reports.jsonl',
      'find /data -name "*.dcm" | cxr-llava report - --output reports/ --resume',
      'cxr-llava report a.png b.png --temperature 0 --max-tokens 256 --json',
      'cxr-llava report scans/ --jsonl --findings | jq -c \'{file, findings}\'',
      'cxr-llava report scans/ --output out/ --sr   # out/x.txt and a DICOM SR out/x.sr.dcm for each DICOM x.dcm',
      'cxr-llava report scans/ --parallel 8 --output reports/   # 8 images share each pass',
    ),
).option(
  '--sr',
  'with --output: also write a DICOM Basic Text SR (<name>.sr.dcm) beside each report on a DICOM image; it copies the image\'s Patient and Study modules, so it joins that study in a PACS (docs/dicom.md)',
);

batchCommand(
  'ddx',
  'ddx',
  'List possible differential diagnoses for each image (the official prompt).',
  batchNotes + examples('cxr-llava ddx chest.png', "cxr-llava ddx 'ward3/*.png' --jsonl | jq -r .text"),
);

{
  const cmd = program
    .command('ask')
    .description('Ask one free-text question about one image.')
    .argument('<image>', 'an image file (PNG, JPEG, TIFF, WebP or DICOM)')
    .argument('<question>', 'the question, quoted');
  addModelOptions(cmd);
  addSamplingOptions(cmd);
  addImageOptions(cmd);
  addOutputOptions(cmd, false);
  addChatterOptions(cmd);
  cmd.addHelpText(
    'after',
    '\nFor several questions about the same image use `chat`: it encodes the image once.\n' +
      examples('cxr-llava ask chest.png "Is there a pleural effusion?"', 'cxr-llava ask chest.png "Where is the endotracheal tube tip?" --temperature 0 --json'),
  );
  cmd.action(async (image: string, question: string, flags: BatchFlags) => {
    if (question.trim() === '') usage(cmd, 'the question is empty');
    await batch(cmd, 'ask', [image], flags, question);
  });
}

{
  const cmd = program.command('chat').description('Talk about one image: type a question, get an answer, ask a follow-up.').argument('<image>', 'an image file');
  addModelOptions(cmd);
  addSamplingOptions(cmd);
  addImageOptions(cmd);
  addChatterOptions(cmd);
  cmd.addHelpText(
    'after',
    '\nThe image is encoded once and each follow-up reuses the conversation so far (only the\n' +
      'new turn is computed). Ctrl-C stops the answer being written, not the program; Ctrl-D\n' +
      'exits. With stdin from a pipe, each line is one question.\n' +
      examples('cxr-llava chat chest.png', 'printf "Is the heart enlarged?\\nAny effusion?\\n" | cxr-llava chat chest.png'),
  );
  cmd.action(async (image: string, flags: ModelFlags & SamplingFlags & ChatterFlags & ImageFlags) => {
    const model = await openModel(flags, true, true);
    const display = { ...(flags.window ? { window: flags.window } : {}), ...(flags.voi !== undefined ? { voi: flags.voi } : {}) };
    process.exitCode = await runChat({ model, image, display, sampling: sampling(flags), quiet: flags.quiet === true, verbose: flags.verbose === true });
  });
}

{
  const cmd = program.command('bench').description('Measure image encoding, prefill and decode speed of the model on this machine.');
  addModelOptions(cmd);
  cmd
    .option('--runs <n>', 'runs to take the median of', intArg(1, 1000), 3)
    .option('--tokens <n>', 'tokens to decode per run (end-of-text is ignored)', intArg(1, 100000), 64)
    .option('--json', 'print the result as JSON');
  addChatterOptions(cmd);
  cmd.addHelpText(
    'after',
    '\nEach run encodes a synthetic image, prefills the report prompt around it and decodes\n' +
      '--tokens tokens. Compare --threads values to find the best setting for your CPU.\n' +
      examples('cxr-llava bench', 'cxr-llava bench --threads 8 --runs 5 --json'),
  );
  cmd.action(async (flags: ModelFlags & ChatterFlags & { runs: number; tokens: number; json?: boolean }) => {
    const model = await openModel(flags, false, false);
    const r = await runBench({ model, runs: flags.runs, tokens: flags.tokens }, (i) => {
      if (!flags.quiet && process.stderr.isTTY) process.stderr.write(`\rrun ${i + 1}/${flags.runs}\x1b[K`);
    });
    if (!flags.quiet && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    process.stdout.write(flags.json ? JSON.stringify(r, null, 2) + '\n' : formatBench(r) + '\n');
  });
}

{
  const cmd = program
    .command('pull')
    .description('Download the official checkpoint from the Hugging Face Hub and convert it to GGUF in the cache.')
    .option('--type <type>', 'text model storage: q8_0, q4_k_m, q4_0, f16 or f32', 'q8_0')
    .option('--vision-type <type>', 'vision model storage: f16, q8_0 or f32')
    .option('--repo <owner/name>', 'Hugging Face repository', 'ECOFRI/CXR-LLAVA-v2')
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .option('--token <token>', 'Hugging Face access token (default: $HF_TOKEN)')
    .option('--keep', 'keep the downloaded checkpoint after converting')
    .option('--force', 'convert again even if this commit and type are cached');
  addChatterOptions(cmd);
  cmd.addHelpText(
    'after',
    '\nThe cache is $CXR_LLAVA_HOME, else $XDG_CACHE_HOME/cxr-llava, else ~/.cache/cxr-llava.\n' +
      'Downloads resume after an interruption and are checked against the hub\'s digests.\n' +
      'The weights are CC-BY-NC-4.0 and derive from LLaMA 2: non-commercial use only.\n' +
      examples('cxr-llava pull', 'cxr-llava pull --type q4_k_m', 'CXR_LLAVA_HOME=/models cxr-llava pull --keep'),
  );
  cmd.action(async (flags: ChatterFlags & { type?: string; visionType?: string; repo?: string; revision?: string; token?: string; keep?: boolean; force?: boolean }) => {
    const m = await pullWithProgress(flags, flags.quiet === true);
    process.stdout.write(`${m.textPath}\n${m.mmprojPath}\n`);
  });
}

{
  const cmd = program
    .command('convert')
    .description('Convert a downloaded CXR-LLaVA checkpoint (safetensors) to a text GGUF and an mmproj GGUF.')
    .argument('<checkpoint-dir>', 'folder with config.json, tokenizer.model and *.safetensors')
    .option('-o, --out <dir>', 'where to write the two GGUF files', '.')
    .option('--type <type>', 'text model storage: q8_0, q4_k_m, q4_0, f16 or f32', 'q8_0')
    .option('--vision-type <type>', 'vision model storage: f16, q8_0 or f32');
  addChatterOptions(cmd);
  cmd.addHelpText(
    'after',
    '\nUse this when you already have the checkpoint (e.g. from `huggingface-cli download`);\n' +
      '`pull` downloads and converts in one step. Pass the output folder to --model.\n' +
      examples('cxr-llava convert ./CXR-LLAVA-v2 --out ./gguf --type q4_k_m', 'cxr-llava report chest.png --model ./gguf'),
  );
  cmd.action(async (dir: string, flags: ChatterFlags & { out: string; type?: string; visionType?: string }) => {
    const phases = new PhasedProgress(flags.quiet === true);
    try {
      const r = await convertCommand(dir, { outDir: flags.out, ...(flags.type ? { type: flags.type } : {}), ...(flags.visionType ? { visionType: flags.visionType } : {}) }, (p) => phases.update(p));
      phases.stop();
      process.stdout.write(`${r.textPath}  ${humanBytes(r.textBytes)}\n${r.mmprojPath}  ${humanBytes(r.mmprojBytes)}\n`);
      if (flags.verbose) process.stderr.write(`converted in ${r.seconds.toFixed(1)} s\n`);
    } finally {
      phases.stop();
    }
  });
}

registerEval(program);
registerMerge(program);
registerLabel(program);

program
  .command('info')
  .description('Print a GGUF file\'s metadata and tensor table (no weights are loaded).')
  .argument('<file>', 'a .gguf file')
  .option('--json', 'print the whole header as JSON')
  .option('--full', 'include long arrays (the vocabulary) in full')
  .addHelpText('after', examples('cxr-llava info cxr-llava-v2.q8_0.gguf', 'cxr-llava info model.gguf --json | jq .metadata'))
  .action((file: string, opts: { json?: boolean; full?: boolean }) => {
    const info = readGgufInfo(file, { full: opts.full === true });
    if (opts.json) {
      process.stdout.write(JSON.stringify(info, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
      return;
    }
    const out: string[] = [];
    out.push(`${info.path}: GGUF v${info.version}, ${humanBytes(info.fileSize)}, ${info.tensors.length} tensors, alignment ${info.alignment}`);
    out.push('', 'metadata:');
    for (const [k, v] of Object.entries(info.metadata)) out.push(`  ${k} = ${formatMeta(v)}`);
    const byType = new Map<string, { count: number; bytes: number }>();
    for (const t of info.tensors) {
      const e = byType.get(t.type) ?? { count: 0, bytes: 0 };
      e.count++;
      e.bytes += t.bytes;
      byType.set(t.type, e);
    }
    out.push('', 'tensor types:');
    for (const [type, e] of byType) out.push(`  ${type.padEnd(6)} ${String(e.count).padStart(5)} tensors  ${humanBytes(e.bytes)}`);
    out.push('', 'tensors:');
    const w = Math.max(...info.tensors.map((t) => t.name.length), 4);
    for (const t of info.tensors) {
      out.push(`  ${t.name.padEnd(w)}  ${t.type.padEnd(5)}  ${('[' + t.ne.join(', ') + ']').padEnd(16)}  ${humanBytes(t.bytes)}`);
    }
    process.stdout.write(out.join('\n') + '\n');
  });

registerServe(program, { openModel: (flags) => openModel(flags, true, true), version: pkg.version });

// `cxr-llava report ... | head` closes the pipe early: stop quietly, that is not an error.
// A full disk under `> out.jsonl`: stop, naming the file, with only whole lines left in it.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  if (!isDiskFull(err)) throw err;
  removePendingTemps();
  const file = stdoutFile();
  const kept = cutStdoutToLastLine();
  const what = kept === undefined ? '' : kept === 0 ? '; nothing in it was whole, so it is now empty' : '; it is cut back to its last whole line';
  process.stderr.write(`error: ${(diskFullError(file ?? 'stdout', err, `free some space, then run the command again${what}`) as Error).message}\n`);
  process.exit(1);
});

function verbose(): boolean {
  return program.opts<{ verbose?: boolean }>().verbose === true || process.argv.includes('--verbose') || process.argv.includes('-v');
}

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors with 2.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    process.stderr.write(`error: ${verbose() ? ((err as Error).stack ?? String(err)) : (err as Error).message}\n`);
    process.exitCode = 1;
  } finally {
    for (const m of openModels) await m.close().catch(() => {});
  }
}

await main();
