/**
 * Reading result records back (the JSONL that `report --jsonl` writes, one
 * object per line) and matching them to the inputs a run was meant to cover.
 *
 * A record's `file` is the path the run was given. It matches an expected
 * input when the two are the same string once separators are normalised
 * (shardKey), or when both resolve to the same absolute path (the record's
 * against the current folder, the input's against its own base folder, e.g.
 * the manifest's), so records written from a manifest's absolute paths and
 * from paths relative to the job folder both find their input. Last, a record
 * whose path ends with an input's path as written (`/scratch/job7/images/a.png`
 * for `images/a.png`) finds it: records made on another machine, under another
 * mount point, still match.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ResultRecord } from './output.js';
import { shardKey } from './shard.js';

/** A record with where it came from. */
export interface SourcedRecord {
  record: ResultRecord;
  source: string;
  line: number;
}

export interface ReadResult {
  records: SourcedRecord[];
  /** "file:line: why" for each line that is not a record. */
  problems: string[];
}

/** The records of one JSONL file; lines that are not records are reported, not fatal. */
export async function readRecordsFile(file: string): Promise<ReadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { records: [], problems: [`${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`] };
  }
  const records: SourcedRecord[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((l, i) => {
    if (l.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch {
      problems.push(`${file}:${i + 1}: not JSON (a truncated line from an interrupted job?)`);
      return;
    }
    const r = v as Partial<ResultRecord> | null;
    if (!r || typeof r !== 'object' || typeof r.file !== 'string') {
      problems.push(`${file}:${i + 1}: not a result record (no "file")`);
      return;
    }
    records.push({ record: r as ResultRecord, source: file, line: i + 1 });
  });
  return { records, problems };
}

/** Finds the expected input of a record's `file`. */
export class InputIndex<T> {
  readonly #byKey = new Map<string, T>();
  readonly #byAbs = new Map<string, T>();

  /** `items` with their path as written and the folder it is relative to. */
  constructor(items: readonly T[], written: (item: T) => string, base: (item: T) => string) {
    for (const it of items) {
      this.#byKey.set(shardKey(written(it)), it);
      this.#byAbs.set(path.resolve(base(it), written(it)), it);
    }
  }

  find(file: string): T | undefined {
    const key = shardKey(file);
    const hit = this.#byKey.get(key) ?? this.#byAbs.get(path.resolve(file));
    if (hit !== undefined) return hit;
    // The longest trailing run of whole path segments that is an input's path as written.
    const parts = key.split('/');
    for (let i = 1; i < parts.length; i++) {
      const found = this.#byKey.get(parts.slice(i).join('/'));
      if (found !== undefined) return found;
    }
    return undefined;
  }
}
