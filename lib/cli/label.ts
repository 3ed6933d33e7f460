/**
 * `cxr-llava label`: the report labeler on text that already exists, with no
 * model: radiologists' reports in text files, or the JSONL of an earlier
 * `report --jsonl` run that was made without `--findings`.
 *
 * - a `.jsonl` file: each line is a JSON object with a `text`; it is written
 *   back with `findings` added (null where `text` is not a string, e.g. a
 *   failed record);
 * - any other file: the whole file is one report; the record is `{file, findings}`;
 * - `-`: stdin, read as JSONL when it starts with `{`, else as one report;
 * - `--text <report>`: that text.
 *
 * Output is JSON lines on stdout. A file that cannot be read or a line that
 * is not JSON is one error line on stderr and the rest goes on; exit status 1
 * when any failed.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { explainReport, type LabeledMention } from '../eval/labeler.js';
import type { Findings } from '../eval/observations.js';

interface LabelFlags {
  text?: string;
  explain?: boolean;
}

/** A mention as `--explain` writes it. */
type MentionRecord = Pick<LabeledMention, 'observation' | 'label' | 'text' | 'cue'>;

function label(text: string, explain: boolean): { findings: Findings; mentions?: MentionRecord[] } {
  const r = explainReport(text);
  if (!explain) return { findings: r.findings };
  return { findings: r.findings, mentions: r.mentions.map((m) => ({ observation: m.observation, label: m.label, text: m.text, ...(m.cue !== undefined ? { cue: m.cue } : {}) })) };
}

/** Labels one input's content; returns the output lines and the problems found. */
export function labelContent(name: string, content: string, asJsonl: boolean, explain: boolean): { lines: string[]; problems: string[] } {
  const lines: string[] = [];
  const problems: string[] = [];
  if (!asJsonl) {
    lines.push(JSON.stringify({ file: name, ...label(content, explain) }));
    return { lines, problems };
  }
  content.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    let rec: unknown;
    try {
      rec = JSON.parse(raw);
    } catch {
      problems.push(`${name}:${i + 1}: not a JSON object`);
      return;
    }
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) {
      problems.push(`${name}:${i + 1}: not a JSON object`);
      return;
    }
    const text = (rec as { text?: unknown }).text;
    const added = typeof text === 'string' ? label(text, explain) : { findings: null };
    lines.push(JSON.stringify({ ...rec, ...added }));
  });
  return { lines, problems };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function registerLabel(program: Command): Command {
  return program
    .command('label')
    .description('Label report text with the 14 CheXpert observations (positive/negative/uncertain), without a model.')
    .argument('[files...]', 'report text files (one report each), .jsonl files with a "text" per line (e.g. from report --jsonl), or - for stdin')
    .option('--text <report>', 'label this text instead of files')
    .option('--explain', 'add "mentions": each mention found, its label and the cue that set it')
    .addHelpText(
      'after',
      '\nWrites one JSON object per line: {file, findings} for a text file; the input record\n' +
        'with "findings" added for a .jsonl line. Labels follow CheXpert: positive, negative,\n' +
        'uncertain; an observation the report does not mention is left out. The rules are\n' +
        'lib/eval/rules.ts. Exit status 1 when a file or line could not be read.\n' +
        '\nExamples:\n' +
        '  $ cxr-llava label --text "Mild cardiomegaly. No pleural effusion. Cannot exclude pneumonia."\n' +
        '  $ cxr-llava label reports/*.txt > labels.jsonl\n' +
        '  $ cxr-llava label reports.jsonl > reports-with-findings.jsonl\n' +
        '  $ cxr-llava label --explain --text "No new consolidation."\n',
    )
    .action(async (files: string[], flags: LabelFlags, cmd: Command) => {
      const explain = flags.explain === true;
      if (flags.text !== undefined) {
        if (files.length > 0) cmd.error('error: give --text or files, not both', { exitCode: 2, code: 'cxr.usage' });
        process.stdout.write(JSON.stringify(label(flags.text, explain)) + '\n');
        return;
      }
      if (files.length === 0) cmd.error('error: nothing to label: give report files, - for stdin, or --text "<report>"', { exitCode: 2, code: 'cxr.usage' });
      if (files.filter((f) => f === '-').length > 1) cmd.error("error: '-' (stdin) may be given once", { exitCode: 2, code: 'cxr.usage' });
      let failed = false;
      for (const file of files) {
        let content: string;
        try {
          content = file === '-' ? await readStdin() : await readFile(file, 'utf8');
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          const why = code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a folder, not a file' : (err as Error).message;
          process.stderr.write(`error: ${file}: ${why}\n`);
          failed = true;
          continue;
        }
        const asJsonl = file === '-' ? content.trimStart().startsWith('{') : path.extname(file).toLowerCase() === '.jsonl';
        const r = labelContent(file === '-' ? '<stdin>' : file, content, asJsonl, explain);
        if (r.lines.length > 0) process.stdout.write(r.lines.join('\n') + '\n');
        for (const p of r.problems) process.stderr.write(`error: ${p}\n`);
        if (r.problems.length > 0) failed = true;
      }
      if (failed) process.exitCode = 1;
    });
}
