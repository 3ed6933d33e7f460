/**
 * `cxr-llava merge out-*.jsonl > all.jsonl`: joins the JSONL outputs of the
 * shards of one corpus and says what is wrong with the whole:
 *
 * - duplicates: one input in two records (a shard run twice, or overlapping
 *   commands). One record is kept: a successful one over a failed one, else
 *   the first seen;
 * - failed: inputs whose only records carry an `error`;
 * - missing (with `--manifest`): inputs of the manifest with no record at all
 *   (a shard that never ran or died before writing).
 *
 * Records go to stdout (or `--output`, written atomically), in manifest order
 * with `--manifest`, else in the order read. Findings go to stderr. Exit
 * status 1 when any input is missing or failed, or a line was unreadable, so
 * a pipeline stops before scoring an incomplete corpus; duplicates alone do
 * not fail the merge.
 */
import type { Command } from 'commander';
import { readInputList } from '../eval/manifest.js';
import { writeAtomic, type ResultRecord } from './output.js';
import { InputIndex, readRecordsFile, type SourcedRecord } from './records.js';
import { shardKey } from './shard.js';

export interface MergeReport {
  records: ResultRecord[];
  duplicates: { file: string; at: string[] }[];
  failed: { file: string; error: string }[];
  missing: string[];
  problems: string[];
  /** Records whose input is not in the manifest (only with a manifest). */
  unexpected: string[];
}

/** Merges record files; `expected` lists the inputs (path as written, base folder) when a manifest is given. */
export async function mergeRecordFiles(files: readonly string[], expected?: readonly { image: string; base: string }[]): Promise<MergeReport> {
  const problems: string[] = [];
  const all: SourcedRecord[] = [];
  for (const f of files) {
    const r = await readRecordsFile(f);
    problems.push(...r.problems);
    all.push(...r.records);
  }
  const index = expected ? new InputIndex(expected, (e) => e.image, (e) => e.base) : undefined;
  // Group by input: the manifest entry when there is one, else the record's own normalised path (and task).
  const groups = new Map<unknown, SourcedRecord[]>();
  const unexpected: string[] = [];
  for (const s of all) {
    const hit = index?.find(s.record.file);
    if (index && hit === undefined) unexpected.push(s.record.file);
    const key = hit ?? `${s.record.task ?? ''}\u0000${shardKey(s.record.file)}`;
    const g = groups.get(key);
    if (g) g.push(s);
    else groups.set(key, [s]);
  }
  const duplicates: MergeReport['duplicates'] = [];
  const failed: MergeReport['failed'] = [];
  const chosen = new Map<unknown, ResultRecord>();
  for (const [key, g] of groups) {
    if (g.length > 1) duplicates.push({ file: g[0]!.record.file, at: g.map((s) => `${s.source}:${s.line}`) });
    const best = g.find((s) => s.record.error === null || s.record.error === undefined) ?? g[0]!;
    if (best.record.error !== null && best.record.error !== undefined) failed.push({ file: best.record.file, error: String(best.record.error) });
    chosen.set(key, best.record);
  }
  let records: ResultRecord[];
  const missing: string[] = [];
  if (expected) {
    records = [];
    for (const e of expected) {
      const r = chosen.get(e);
      if (r) records.push(r);
      else missing.push(e.image);
    }
    for (const [key, r] of chosen) if (typeof key === 'string') records.push(r);
  } else records = [...chosen.values()];
  return { records, duplicates, failed, missing, problems, unexpected };
}

export function registerMerge(program: Command): Command {
  return program
    .command('merge')
    .description('Join the JSONL outputs of shards (--shard K/N) into one, reporting duplicates, failures and missing inputs.')
    .argument('<files...>', 'JSONL files written by report/ddx --jsonl (e.g. out-*.jsonl)')
    .option('--manifest <file>', 'the inputs the shards were meant to cover: an eval manifest (.csv/.jsonl) or a list of paths, one per line')
    .option('-o, --output <file>', 'write the merged JSONL here (atomically) instead of stdout')
    .option('-q, --quiet', 'no summary line; problems only')
    .addHelpText(
      'after',
      '\nExit status 1 when an input of --manifest has no record, an input only failed, or a\n' +
        'line could not be read; duplicates are reported and one record is kept.\n' +
        '\nExamples:\n' +
        '  $ cxr-llava merge out-*.jsonl > all.jsonl\n' +
        '  $ cxr-llava merge out-*.jsonl --manifest test.csv -o all.jsonl && cxr-llava eval test.csv --jsonl all.jsonl\n',
    )
    .action(async (files: string[], flags: { manifest?: string; output?: string; quiet?: boolean }) => {
      const expected = flags.manifest ? await readInputList(flags.manifest) : undefined;
      const m = await mergeRecordFiles(files, expected);
      const body = m.records.map((r) => JSON.stringify(r) + '\n').join('');
      if (flags.output) await writeAtomic(flags.output, body);
      else process.stdout.write(body);
      const err = (l: string) => process.stderr.write(l + '\n');
      for (const p of m.problems) err(`error: ${p}`);
      for (const d of m.duplicates) err(`duplicate: ${d.file} (${d.at.join(', ')})`);
      for (const f of m.failed) err(`failed: ${f.error}`);
      for (const u of m.unexpected.slice(0, 20)) err(`not in the manifest: ${u}`);
      for (const x of m.missing.slice(0, 50)) err(`missing: ${x}`);
      if (m.missing.length > 50) err(`missing: … and ${m.missing.length - 50} more`);
      if (!flags.quiet) {
        const parts = [`${m.records.length} records from ${files.length} file${files.length === 1 ? '' : 's'}`, `${m.duplicates.length} duplicate${m.duplicates.length === 1 ? '' : 's'}`, `${m.failed.length} failed`];
        if (expected) parts.push(`${m.missing.length} missing of ${expected.length}`);
        err(`merged ${parts.join(', ')}`);
      }
      if (m.missing.length > 0 || m.failed.length > 0 || m.problems.length > 0) process.exitCode = 1;
    });
}
