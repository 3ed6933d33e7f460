/**
 * Where results go: text on stdout, one JSON object per line (`--jsonl`), one
 * JSON array (`--json`), or one file per input in a folder (`--output`),
 * written atomically so an interrupted run never leaves half a report that
 * `--resume` would then mistake for a finished one.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, unlinkSync } from 'node:fs';
import { link, mkdir, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { diskFullError } from '../errors.js';
import type { Findings } from '../eval/observations.js';
import type { InputFile } from './inputs.js';

export type Task = 'report' | 'ddx' | 'ask';
export type Format = 'text' | 'jsonl' | 'json';

/** One result, as a JSONL line, an element of the --json array, or an --output .json file. */
export interface ResultRecord {
  file: string;
  task: Task;
  /** The question, for `ask`. */
  question?: string;
  /** The answer; null when the input failed. */
  text: string | null;
  /** The text model's file name. */
  model: string;
  /** Sampling settings; `seed` is a decimal string because 64-bit seeds do not fit a JSON number. */
  params: { temperature: number; topP: number; maxTokens: number; seed: string | null };
  /** `stop` (end of text) or `length` (hit --max-tokens or the context). */
  finishReason?: 'stop' | 'length';
  timings: {
    preprocessMs?: number;
    encodeMs?: number;
    prefillTokens: number;
    prefillMs: number;
    decodeTokens: number;
    decodeMs: number;
  } | null;
  /** Things worth knowing about the image that did not stop it (from the image/DICOM reader). */
  warnings?: string[];
  /** The DICOM SOP Instance UID, when the image layer reports one. */
  sopInstanceUid?: string;
  /** With --findings: the CheXpert labels of `text` (`labelReport`); null when the input failed. */
  findings?: Findings | null;
  /** One-line reason this input failed; null on success. */
  error: string | null;
}

/** Temp files being written now; a forced exit (a second Ctrl-C) removes them. */
const pendingTemps = new Set<string>();

/** Removes the temp files of writes still in progress (synchronously: for a forced exit). */
export function removePendingTemps(): void {
  for (const tmp of pendingTemps) {
    try {
      unlinkSync(tmp);
    } catch {
      // Not created yet, or already renamed.
    }
  }
  pendingTemps.clear();
}

export interface WriteAtomicOptions {
  /** What the disk-full message tells the user to do (default: free some space, then run again). */
  diskFull?: string;
  /**
   * Leave an existing `file` as it is (`--resume`: another run sharing the folder
   * finished it first): the new data is dropped and writeAtomic returns false.
   */
  noReplace?: boolean;
}

/**
 * Writes `data` to `file` via a temp file in the same folder and a rename: the
 * file is whole or absent, also when two processes write it at once (each has its
 * own temp name). With `noReplace` the temp file is hard-linked into place, which
 * fails when `file` exists, so the first writer wins and its file is never
 * replaced (where the file system has no hard links, an existence check and a
 * rename stand in). Returns whether `file` now holds `data`. A failed write
 * removes its temp file and throws; a full disk throws `<file>: disk full (ENOSPC): ...` (CxrError ERR_IO).
 */
export async function writeAtomic(file: string, data: string | Uint8Array, options: WriteAtomicOptions = {}): Promise<boolean> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  pendingTemps.add(tmp);
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(tmp, data);
    if (options.noReplace) return await publishNew(tmp, file);
    await rename(tmp, file);
    return true;
  } catch (err) {
    throw diskFullError(file, err, options.diskFull ?? 'free some space, then run again');
  } finally {
    await unlink(tmp).catch(() => {}); // gone already after a rename
    pendingTemps.delete(tmp);
  }
}

/** Moves `tmp` to `file` unless `file` exists; false when it did. */
async function publishNew(tmp: string, file: string): Promise<boolean> {
  try {
    await link(tmp, file);
    return true;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
  }
  if (existsSync(file)) return false;
  await rename(tmp, file);
  return true;
}

/** The output file of one input: its relative name with the extension swapped. */
export function outputPath(dir: string, input: InputFile, format: Format): string {
  const ext = path.extname(input.rel);
  const stem = ext ? input.rel.slice(0, -ext.length) : input.rel;
  return path.join(dir, stem + (format === 'text' ? '.txt' : '.json'));
}

/**
 * Output paths of all inputs; throws a message naming both inputs when two
 * would write the same file (e.g. a.png and a.jpg), before any work is done.
 */
export function planOutputs(dir: string, inputs: readonly InputFile[], format: Format): Map<InputFile, string> {
  const plan = new Map<InputFile, string>();
  const owner = new Map<string, InputFile>();
  for (const f of inputs) {
    const out = outputPath(dir, f, format);
    const prev = owner.get(out);
    if (prev) throw new Error(`${prev.path} and ${f.path} would both be written to ${out}; rename one, or run them separately`);
    owner.set(out, f);
    plan.set(f, out);
  }
  return plan;
}

/** Whether --resume may skip this input. */
export function alreadyDone(outFile: string): boolean {
  return existsSync(outFile);
}

/** Text-mode header for one input; used when there is more than one input. */
export function header(file: string): string {
  return `==> ${file} <==\n`;
}

/** The --findings line under a text report: "Findings: Cardiomegaly positive, Pneumothorax negative". */
export function findingsLine(f: Findings): string {
  const parts = Object.entries(f).map(([o, label]) => `${o} ${label}`);
  return `Findings: ${parts.length > 0 ? parts.join(', ') : 'none stated'}\n`;
}

export function recordJson(r: ResultRecord, pretty: boolean): string {
  return pretty ? JSON.stringify(r, null, 2) + '\n' : JSON.stringify(r) + '\n';
}
