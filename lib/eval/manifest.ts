/**
 * The evaluation manifest: which images to score and what their reference
 * says. A CSV (with a header row) or JSONL file, one study per row:
 *
 * - `image` (or `path`, `image_path`, `file`): the image, relative to the
 *   manifest's folder unless absolute;
 * - the reference, either as `report` (or `reference_report`): the reference
 *   report's text, labelled with the same labeler as the generated report; or
 *   as CheXpert label columns named as the 14 observations (case, spaces and
 *   underscores do not matter: `Pleural Effusion`, `pleural_effusion`), each
 *   1 (positive), 0 (negative), -1 (uncertain) or blank (not mentioned). In
 *   JSONL the labels may also sit in a `labels` object, with null for blank.
 * - optional `id` and `dataset` (e.g. `mimic`: the chart then shows the
 *   paper's published figures for comparison).
 *
 * When a row has both, its labels win if any label cell is filled in.
 * Every problem is collected and reported with its line number, before any
 * model is loaded.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { OBSERVATIONS, labelFromChexpertValue, type Findings, type Label, type Observation } from './observations.js';

export type Reference = { report: string } | { labels: Findings };

export interface ManifestRow {
  /** 1-based line (CSV: of the record's first line; JSONL: of the object). */
  line: number;
  /** The image path as written in the manifest. */
  image: string;
  /** The image path to read: `image` resolved against the manifest's folder. */
  path: string;
  id?: string;
  dataset?: string;
  reference: Reference;
}

export interface Manifest {
  file: string;
  rows: ManifestRow[];
  /** Every row says its dataset is MIMIC(-CXR)-like, so the paper's MIMIC figures apply. */
  mimicLike: boolean;
}

const IMAGE_KEYS = ['image', 'path', 'image_path', 'file'];
const REPORT_KEYS = ['report', 'reference_report'];

/** "Pleural Effusion", "pleural_effusion", "PLEURALEFFUSION" -> one key. */
function squash(s: string): string {
  return s.toLowerCase().replace(/[\s_-]+/g, '');
}
const OBS_BY_KEY = new Map<string, Observation>(OBSERVATIONS.map((o) => [squash(o), o]));

export class ManifestError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    const shown = problems.slice(0, 10);
    const more = problems.length > shown.length ? `\n  … and ${problems.length - shown.length} more` : '';
    super(`${file}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  ${shown.join('\n  ')}${more}`}`);
    this.name = 'ManifestError';
  }
}

/** A label cell from CSV text or JSON (number, string, null, or a Label word). */
function labelOf(v: unknown): Label | undefined {
  if (v === 'positive' || v === 'negative' || v === 'uncertain') return v;
  if (v === null || v === undefined) return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') throw new RangeError(`Expected 1, 0, -1 or blank for a CheXpert label but received ${JSON.stringify(v)}`);
  return labelFromChexpertValue(v);
}

interface RawRow {
  line: number;
  fields: Record<string, unknown>;
}

function readRow(raw: RawRow, dir: string, problems: string[]): ManifestRow | undefined {
  const at = `line ${raw.line}`;
  const keys = Object.keys(raw.fields);
  const get = (names: string[]): unknown => {
    const k = keys.find((key) => names.includes(key.trim().toLowerCase()));
    return k === undefined ? undefined : raw.fields[k];
  };
  const image = get(IMAGE_KEYS);
  if (typeof image !== 'string' || image.trim() === '') {
    problems.push(`${at}: no image path (a column named ${IMAGE_KEYS.join(', ')})`);
    return undefined;
  }
  const labels: Findings = {};
  let filled = 0;
  let labelColumns = 0;
  const bad: string[] = [];
  const visit = (key: string, value: unknown): void => {
    const o = OBS_BY_KEY.get(squash(key));
    if (!o) return;
    labelColumns++;
    try {
      const l = labelOf(value);
      if (l !== undefined) {
        labels[o] = l;
        filled++;
      }
    } catch (err) {
      bad.push(`${o}: ${(err as Error).message}`);
    }
  };
  for (const k of keys) visit(k, raw.fields[k]);
  const nested = get(['labels']);
  if (nested !== undefined && nested !== null) {
    if (typeof nested !== 'object' || Array.isArray(nested)) bad.push('"labels" must be an object of observation: label');
    else for (const [k, v] of Object.entries(nested)) {
      if (!OBS_BY_KEY.has(squash(k))) bad.push(`labels: "${k}" is not one of the 14 CheXpert observations`);
      visit(k, v);
    }
  }
  if (bad.length > 0) {
    for (const b of bad) problems.push(`${at}: ${b}`);
    return undefined;
  }
  const report = get(REPORT_KEYS);
  let reference: Reference;
  if (filled > 0 || (labelColumns > 0 && (typeof report !== 'string' || report.trim() === ''))) reference = { labels };
  else if (typeof report === 'string' && report.trim() !== '') reference = { report };
  else {
    problems.push(`${at}: no reference: give a "report" column or the CheXpert label columns (${OBSERVATIONS.slice(0, 3).join(', ')}, …)`);
    return undefined;
  }
  const str = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : typeof v === 'number' ? String(v) : undefined);
  const id = str(get(['id', 'study_id', 'dicom_id']));
  const dataset = str(get(['dataset']));
  const img = image.trim();
  return { line: raw.line, image: img, path: path.resolve(dir, img), ...(id ? { id } : {}), ...(dataset ? { dataset } : {}), reference };
}

/** Rows of a manifest held in memory (`name` is used in messages and for the format: .jsonl/.ndjson or CSV). */
export function parseManifest(text: string, file: string): Manifest {
  const dir = path.dirname(path.resolve(file));
  const problems: string[] = [];
  const raws: RawRow[] = [];
  if (/\.(jsonl|ndjson)$/i.test(file)) {
    text.split('\n').forEach((l, i) => {
      if (l.trim() === '') return;
      try {
        const v: unknown = JSON.parse(l);
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
        raws.push({ line: i + 1, fields: v as Record<string, unknown> });
      } catch (err) {
        problems.push(`line ${i + 1}: ${(err as Error).message}`);
      }
    });
  } else {
    try {
      const records = parseCsv(text, { columns: true, bom: true, skip_empty_lines: true, trim: false, info: true, relax_column_count: false }) as {
        record: Record<string, string>;
        info: { lines: number };
      }[];
      for (const r of records) raws.push({ line: r.info.lines, fields: r.record });
    } catch (err) {
      throw new ManifestError(file, [`not a readable CSV: ${(err as Error).message}`]);
    }
  }
  const rows: ManifestRow[] = [];
  const seen = new Map<string, number>();
  for (const raw of raws) {
    const row = readRow(raw, dir, problems);
    if (!row) continue;
    const prev = seen.get(row.path);
    if (prev !== undefined) {
      problems.push(`line ${row.line}: ${row.image} is listed twice (also line ${prev})`);
      continue;
    }
    seen.set(row.path, row.line);
    rows.push(row);
  }
  if (problems.length > 0) throw new ManifestError(file, problems);
  if (rows.length === 0) throw new ManifestError(file, ['no rows (a CSV needs a header row and one row per study)']);
  const mimicLike = rows.every((r) => r.dataset !== undefined && /mimic/i.test(r.dataset));
  return { file, rows, mimicLike };
}

export async function readManifest(file: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  return parseManifest(text, file);
}

/**
 * The image paths a manifest lists, as written, without reading references:
 * what `merge --manifest` needs. A CSV or JSONL manifest (by extension) or a
 * plain list, one path per line (as `report -` reads).
 */
export async function readInputList(file: string): Promise<{ image: string; base: string }[]> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  const dir = path.dirname(path.resolve(file));
  const pick = (fields: Record<string, unknown>, line: number): string => {
    const k = Object.keys(fields).find((key) => IMAGE_KEYS.includes(key.trim().toLowerCase()));
    const v = k === undefined ? undefined : fields[k];
    if (typeof v !== 'string' || v.trim() === '') throw new ManifestError(file, [`line ${line}: no image path (a column named ${IMAGE_KEYS.join(', ')})`]);
    return v.trim();
  };
  if (/\.(jsonl|ndjson)$/i.test(file)) {
    const out: { image: string; base: string }[] = [];
    text.split('\n').forEach((l, i) => {
      if (l.trim() === '') return;
      let v: unknown;
      try {
        v = JSON.parse(l);
      } catch (err) {
        throw new ManifestError(file, [`line ${i + 1}: ${(err as Error).message}`]);
      }
      out.push({ image: pick(v as Record<string, unknown>, i + 1), base: dir });
    });
    return out;
  }
  if (/\.csv$/i.test(file)) {
    let records: { record: Record<string, string>; info: { lines: number } }[];
    try {
      records = parseCsv(text, { columns: true, bom: true, skip_empty_lines: true, info: true }) as typeof records;
    } catch (err) {
      throw new ManifestError(file, [`not a readable CSV: ${(err as Error).message}`]);
    }
    return records.map((r) => ({ image: pick(r.record, r.info.lines), base: dir }));
  }
  // A plain list holds paths as a command line would: relative to the current folder.
  return text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '')
    .map((image) => ({ image, base: process.cwd() }));
}
