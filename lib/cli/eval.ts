/**
 * `cxr-llava eval <manifest>`: how the model does on the user's data, per
 * finding, measured the way the paper measured it.
 *
 * 1. The manifest (lib/eval/manifest.ts) lists the images and their
 *    reference: a report, or CheXpert labels.
 * 2. Generated reports come from running the model with the batch machinery
 *    (one JSON record per image in <output>/reports/, so --resume picks up
 *    after an interruption, and shards of an array can share the folder), or
 *    from an existing `report --jsonl` file (--jsonl: nothing is run).
 * 3. Both sides are labelled with the report labeler (reference labels given
 *    in the manifest are used as they are) and scored with definite labels
 *    only (lib/eval/metrics.ts), with bootstrap intervals over studies.
 * 4. Results: the table on stdout (or eval.json with --json), and eval.json,
 *    eval.svg and eval.png in <output>.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { renderChartPng, renderChartSvg } from '../eval/chart.js';
import { labelReport } from '../eval/labeler.js';
import { readManifest, type ManifestRow } from '../eval/manifest.js';
import { OBSERVATIONS, type Observation } from '../eval/observations.js';
import { evaluate, type EvalResult, type Generated } from '../eval/score.js';
import { formatTable, type TableFormat } from '../eval/table.js';
import { DEFAULT_PARALLEL, loadModel, type Model } from '../runtime/model.js';
import { runBatch } from './batch.js';
import { Interrupt } from './interrupt.js';
import type { InputFile } from './inputs.js';
import {
  addChatterOptions,
  addImageOptions,
  addModelOptions,
  addParallelOption,
  addSamplingOptions,
  intArg,
  sampling,
  type ChatterFlags,
  type ImageFlags,
  type ModelFlags,
  type SamplingFlags,
} from './options.js';
import { planOutputs, writeAtomic, type ResultRecord } from './output.js';
import { ProgressBar } from './progress.js';
import { InputIndex, readRecordsFile } from './records.js';
import { selectModel } from './select-model.js';
import { addShardOption, selectShard, type Shard } from './shard.js';

type EvalFlags = ModelFlags &
  SamplingFlags &
  ChatterFlags &
  ImageFlags & {
    jsonl?: string;
    output: string;
    resume?: boolean;
    shard?: Shard;
    bootstrap: number;
    format: TableFormat;
    json?: boolean;
    observations?: Observation[];
    dataset?: string;
    parallel?: number;
  };

/** "Cardiomegaly,pleural effusion" -> observations, matched as the manifest's columns are. */
function observationsArg(v: string): Observation[] {
  const squash = (s: string) => s.toLowerCase().replace(/[\s_-]+/g, '');
  const out: Observation[] = [];
  for (const part of v.split(',').filter((p) => p.trim() !== '')) {
    const o = OBSERVATIONS.find((x) => squash(x) === squash(part));
    if (!o) throw new InvalidArgumentError(`"${part.trim()}" is not one of the 14 CheXpert observations (${OBSERVATIONS.join(', ')})`);
    if (!out.includes(o)) out.push(o);
  }
  if (out.length === 0) throw new InvalidArgumentError('expected a comma-separated list of observations');
  return out;
}

/** Where a manifest image's record goes under reports/: its path as written, kept inside the folder. */
function recordName(image: string): string {
  return image
    .replace(/\\/g, '/')
    .split('/')
    .filter((s) => s !== '' && s !== '.')
    .map((s) => (s === '..' ? '__' : s))
    .join('/');
}

/** Records from a JSONL file, matched to the manifest's rows; a successful record wins over a failed one. */
async function generatedFromJsonl(file: string, rows: readonly ManifestRow[], manifestDir: string, problems: string[]): Promise<Map<ManifestRow, Generated>> {
  const r = await readRecordsFile(file);
  problems.push(...r.problems);
  if (r.records.length === 0 && r.problems.length > 0) throw new Error(r.problems[0]!);
  const index = new InputIndex(rows, (row) => row.image, () => manifestDir);
  const out = new Map<ManifestRow, Generated>();
  for (const { record } of r.records) {
    const row = index.find(record.file);
    if (!row) continue;
    const prev = out.get(row);
    if (prev && prev.error === null) continue;
    out.set(row, { text: typeof record.text === 'string' ? record.text : null, error: record.error ?? null });
  }
  return out;
}

async function openModel(flags: EvalFlags): Promise<Model> {
  const choice = await selectModel({
    ...(flags.model !== undefined ? { model: flags.model } : {}),
    ...(flags.mmproj !== undefined ? { mmproj: flags.mmproj } : {}),
    ...(flags.type !== undefined ? { type: flags.type } : {}),
    pull: true,
    quiet: flags.quiet === true,
  });
  if (choice.mmproj === undefined) throw new Error(`${choice.model}: no vision projector found next to it (mmproj-${path.basename(choice.model)}); pass --mmproj <file>`);
  return loadModel({
    model: choice.model,
    mmproj: choice.mmproj,
    ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
    ...(flags.ctx !== undefined ? { contextSize: flags.ctx } : {}),
    ...(flags.backend !== undefined ? { backend: flags.backend } : {}),
    ...(flags.device !== undefined ? { device: flags.device } : {}),
    ...(flags.parallel !== undefined ? { parallel: flags.parallel } : {}),
  });
}

/** Runs the model on the rows (records under reports/), then reads every row's record back. */
async function generatedByModel(rows: readonly ManifestRow[], flags: EvalFlags, reportsDir: string, plan: Map<InputFile, string>, inputs: InputFile[], signal: AbortSignal): Promise<Map<ManifestRow, Generated>> {
  const model = await openModel(flags);
  try {
    await runBatch({
      signal,
      model,
      task: 'report',
      inputs,
      sampling: sampling(flags),
      display: { ...(flags.window ? { window: flags.window } : {}), ...(flags.voi !== undefined ? { voi: flags.voi } : {}) },
      format: 'jsonl',
      outDir: reportsDir,
      resume: flags.resume === true,
      // As report/ddx: that many images share each forward pass; records and order do not change.
      parallel: flags.parallel ?? model.info.runtime.parallel,
      quiet: flags.quiet === true,
      verbose: flags.verbose === true,
    });
  } finally {
    await model.close();
  }
  const out = new Map<ManifestRow, Generated>();
  for (let i = 0; i < rows.length; i++) {
    const file = plan.get(inputs[i]!)!;
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) {
      // The batch writes no file for a failed image; its error went to stderr.
      out.set(rows[i]!, { text: null, error: `${rows[i]!.image}: no report was generated (see the error above)` });
      continue;
    }
    const rec = JSON.parse(text) as ResultRecord;
    out.set(rows[i]!, { text: rec.text, error: rec.error });
  }
  return out;
}

export async function runEval(manifestFile: string, flags: EvalFlags, usage: (message: string) => never): Promise<number> {
  if (flags.resume && flags.jsonl) usage('--resume applies when eval runs the model; with --jsonl nothing is run');
  if (flags.parallel !== undefined && flags.jsonl) usage('--parallel applies when eval runs the model; with --jsonl nothing is run');
  const manifest = await readManifest(manifestFile);
  const manifestDir = path.dirname(path.resolve(manifestFile));
  const rows = flags.shard ? selectShard(manifest.rows, flags.shard, (r) => r.image) : manifest.rows;
  const suffix = flags.shard ? `.shard-${flags.shard.index}-of-${flags.shard.count}` : '';
  const outDir = flags.output;
  const problems: string[] = [];
  let generated: Map<ManifestRow, Generated>;
  if (rows.length === 0) generated = new Map();
  else if (flags.jsonl) generated = await generatedFromJsonl(flags.jsonl, rows, manifestDir, problems);
  else {
    const reportsDir = path.join(outDir, 'reports');
    const inputs: InputFile[] = rows.map((r) => ({ path: r.path, rel: recordName(r.image) }));
    let plan: Map<InputFile, string>;
    try {
      plan = planOutputs(reportsDir, inputs, 'jsonl');
    } catch (err) {
      usage((err as Error).message);
    }
    // Ctrl-C / SIGTERM stop the reports as for `report` (lib/cli/interrupt.ts):
    // the finished ones are kept, nothing is scored, `--resume` goes on.
    const interrupt = new Interrupt().install();
    try {
      generated = await generatedByModel(rows, flags, reportsDir, plan, inputs, interrupt.signal);
    } finally {
      interrupt.uninstall();
      interrupt.exitSoon();
    }
    if (interrupt.exitCode !== undefined) {
      process.stderr.write(`eval: stopped before scoring; run again with --resume to finish the reports, then score them\n`);
      return interrupt.exitCode;
    }
  }

  const bar = new ProgressBar({ unit: 'percent', quiet: flags.quiet === true });
  bar.update({ done: 0, total: 1, stage: 'label and bootstrap' });
  const mimicLike = flags.dataset !== undefined ? /mimic/i.test(flags.dataset) : manifest.mimicLike;
  const result: EvalResult = evaluate({
    rows,
    generated,
    label: labelReport,
    resamples: flags.bootstrap,
    ...(flags.seed !== undefined ? { seed: Number(flags.seed % 4294967296n) } : {}),
    ...(flags.observations ? { observations: flags.observations } : {}),
    mimicLike,
    onProgress: (f: number) => bar.update({ done: f, total: 1, stage: 'bootstrap' }),
  });
  bar.stop();

  const doc = {
    manifest: path.resolve(manifestFile),
    ...(flags.jsonl ? { records: path.resolve(flags.jsonl) } : { reports: path.resolve(outDir, 'reports') }),
    ...(flags.shard ? { shard: `${flags.shard.index}/${flags.shard.count}` } : {}),
    ...result,
  };
  const jsonFile = path.join(outDir, `eval${suffix}.json`);
  const svgFile = path.join(outDir, `eval${suffix}.svg`);
  const pngFile = path.join(outDir, `eval${suffix}.png`);
  const json = JSON.stringify(doc, null, 2) + '\n';
  await writeAtomic(jsonFile, json);
  const title = `CXR-LLaVA: F1 per finding on ${path.basename(manifestFile)}${flags.shard ? ` (shard ${flags.shard.index}/${flags.shard.count})` : ''}`;
  const svg = await renderChartSvg(result, title);
  await writeAtomic(svgFile, svg);
  await writeAtomic(pngFile, await renderChartPng(svg));

  process.stdout.write(flags.json ? json : formatTable(result, flags.format));
  const err = (l: string) => process.stderr.write(l + '\n');
  for (const p of problems) err(`error: ${p}`);
  for (const m of result.missing.slice(0, 20)) err(`missing: ${m} has no generated report in ${flags.jsonl ?? 'the run'}`);
  if (result.missing.length > 20) err(`missing: … and ${result.missing.length - 20} more`);
  if (flags.jsonl) for (const f of result.failed.slice(0, 20)) err(`failed: ${f}`);
  if (!flags.quiet) err(`wrote ${jsonFile}, ${pngFile} and ${svgFile}`);
  return result.missing.length > 0 || result.failed.length > 0 || problems.length > 0 ? 1 : 0;
}

function examples(...lines: string[]): string {
  return '\nExamples:\n' + lines.map((l) => `  $ ${l}`).join('\n');
}

export function registerEval(program: Command): Command {
  const cmd = program
    .command('eval')
    .description("Score the model's reports against reference reports or labels, per CheXpert finding, as the paper did (definite labels only, bootstrap intervals).")
    .argument('<manifest>', 'CSV or JSONL: one row per image with `image` and either `report` (the reference report) or CheXpert label columns (1/0/-1/blank)');
  addModelOptions(cmd);
  addSamplingOptions(cmd);
  addImageOptions(cmd);
  cmd
    .option('--jsonl <file>', 'score the reports in this file (from `report --jsonl`) instead of running the model')
    .option('-o, --output <dir>', 'where eval.json, eval.png, eval.svg and (when the model runs) reports/ go', '.')
    .option('--resume', 'skip images whose report is already in <output>/reports/ (after an interruption, or from other shards)')
    .option('--bootstrap <n>', 'bootstrap resamples for the 95% intervals', intArg(1, 1_000_000), 1000)
    .addOption(new Option('--format <format>', 'table on stdout: plain, md (Markdown) or csv').choices(['plain', 'md', 'csv']).default('plain'))
    .option('--json', 'print eval.json on stdout instead of the table')
    .option('--observations <list>', 'score only these observations, comma-separated (default: all 14)', observationsArg)
    .option('--dataset <name>', 'what the data is, overriding the manifest\'s `dataset` column; "mimic" adds the paper\'s published figures');
  addParallelOption(cmd, DEFAULT_PARALLEL);
  addShardOption(cmd);
  addChatterOptions(cmd);
  cmd.addHelpText(
    'after',
    '\nProtocol: both reports are labelled for the 14 CheXpert observations; a pair is scored\n' +
      'only when both labels are definite (positive or negative): uncertain and unmentioned\n' +
      'are left out, never read as negative. --seed seeds both the reports and the bootstrap\n' +
      '(default: a random seed for the reports, 1 for the bootstrap). Exit status 1 when an\n' +
      'image has no report or failed, 2 for a usage error.\n' +
      examples(
        'cxr-llava eval test.csv --output ev/',
        'cxr-llava eval test.csv --output ev/ --resume --temperature 0 --seed 7',
        'cxr-llava report scans/ -r --jsonl > reports.jsonl && cxr-llava eval test.csv --jsonl reports.jsonl --format md',
        'cxr-llava eval test.csv --shard 2/8 --output ev/ --resume',
      ),
  );
  cmd.action(async (manifest: string, flags: EvalFlags) => {
    process.exitCode = await runEval(manifest, flags, (m) => cmd.error(`error: ${m}`, { exitCode: 2, code: 'cxr.usage' }));
  });
  return cmd;
}
