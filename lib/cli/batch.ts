/**
 * The batch runner behind `report`, `ddx` and `ask`: one loaded model, many
 * images, results in input order.
 *
 * Reading a file, decoding it and the Lanczos resize run off the model's
 * thread, so they are done one image ahead: while image N is encoded and
 * generated, image N+1 is already being read and preprocessed. With
 * `parallel` > 1, that many images are in the model at once (the engine runs
 * their sequences in shared forward passes); results are still written, and
 * errors reported, in input order, and text streamed to a terminal shows the
 * earliest unfinished image live while later ones wait their turn.
 */
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { labelReport } from '../eval/labeler.js';
import { decodeImage, type RawPixels } from '../inputs/image.js';
import type { EncodedImage, Model } from '../runtime/model.js';
import { clock, ms, perSecond } from './format.js';
import type { InputFile } from './inputs.js';
import type { ImageFlags } from './options.js';
import { isDiskFull } from '../errors.js';
import { alreadyDone, findingsLine, header, planOutputs, recordJson, writeAtomic, type Format, type ResultRecord, type Task } from './output.js';
import { ProgressBar } from './progress.js';
import { SrWriter } from './sr-output.js';

/** The outcome of preparing one item: its value, or why it failed. */
export type Settled<P> = { ok: true; value: P } | { ok: false; error: unknown };

/** `p`, or a failure with the signal's reason as soon as `signal` aborts (a read that never returns cannot hold a stop up). */
function untilAborted<P>(p: Promise<Settled<P>>, signal?: AbortSignal): Promise<Settled<P>> {
  if (!signal) return p;
  if (signal.aborted) return Promise.resolve({ ok: false, error: signal.reason });
  return new Promise((resolve) => {
    const onAbort = (): void => resolve({ ok: false, error: signal.reason });
    signal.addEventListener('abort', onAbort, { once: true });
    void p.then((s) => {
      signal.removeEventListener('abort', onAbort);
      resolve(s);
    });
  });
}

/**
 * Calls `consume` for each item in order, with `prepare(item)` already started
 * for the next item while `consume` works on the current one (a prefetch depth
 * of one: enough to hide I/O and decoding behind generation, and at most two
 * decoded images in memory). Once `signal` is aborted no further item is consumed.
 */
export async function runPrefetched<T, P>(
  items: readonly T[],
  prepare: (item: T) => Promise<P>,
  consume: (item: T, prepared: Settled<P>, index: number) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const start = (item: T): Promise<Settled<P>> =>
    prepare(item).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  let next = items.length > 0 ? start(items[0]!) : undefined;
  for (let i = 0; i < items.length && signal?.aborted !== true; i++) {
    const current = next!;
    next = i + 1 < items.length ? start(items[i + 1]!) : undefined;
    await consume(items[i]!, await untilAborted(current, signal), i);
  }
}

/**
 * Like runPrefetched, with up to `width` items consumed at once: item i + width
 * starts as soon as one of the running ones ends, and the next item is always
 * being prepared ahead. Consumers end in any order; callers order their output.
 */
export async function runWindowed<T, P>(
  items: readonly T[],
  width: number,
  prepare: (item: T) => Promise<P>,
  consume: (item: T, prepared: Settled<P>, index: number) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  if (width <= 1) return runPrefetched(items, prepare, consume, signal);
  const start = (i: number): Promise<Settled<P>> =>
    prepare(items[i]!).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  const prepared: (Promise<Settled<P>> | undefined)[] = [];
  const prepared_ = (i: number): Promise<Settled<P>> => (prepared[i] ??= start(i));
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length && signal?.aborted !== true) {
      const i = next++;
      const p = prepared_(i);
      if (i + 1 < items.length) void prepared_(i + 1);
      const settled = await untilAborted(p, signal);
      prepared[i] = undefined; // the decoded image is only the consumer's now
      await consume(items[i]!, settled, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
}

/**
 * An image decoded for the vision tower: its 8-bit pixels, which the engine
 * preprocesses and encodes (model.encodeImage), without another trip through JS.
 */
export interface PreparedImage {
  pixels: RawPixels;
  /** The name error messages use. */
  source: string;
  /** Time decoding took (the native preprocessing is counted with the encode: EncodedImage.preprocessMs). */
  preprocessMs: number;
  warnings: string[];
  sopInstanceUid?: string;
}

/** Decodes one file (or the bytes of one, named `name` in errors) for `model`, keeping what the reader reported about it. */
export async function prepareImage(model: Model, file: string | Uint8Array, display: ImageFlags = {}, name?: string): Promise<PreparedImage> {
  const vision = model.info.vision;
  if (!vision) throw new Error(`${model.info.path}: no vision projector (mmproj) is loaded; pass --mmproj`);
  const t0 = performance.now();
  const img = await decodeImage(file, {
    ...(name !== undefined ? { name } : {}),
    ...(display.window ? { window: display.window } : {}),
    ...(display.voi !== undefined ? { voi: display.voi } : {}),
  });
  // DICOM input may carry its instance UID; other readers leave it out.
  const uid = (img as { sopInstanceUid?: unknown }).sopInstanceUid;
  return {
    pixels: { data: img.data, width: img.width, height: img.height, channels: img.channels },
    source: img.source,
    preprocessMs: performance.now() - t0,
    warnings: Array.isArray(img.warnings) ? img.warnings : [],
    ...(typeof uid === 'string' && uid ? { sopInstanceUid: uid } : {}),
  };
}

export interface SamplingParams {
  temperature: number;
  topP: number;
  maxTokens: number;
  seed?: bigint;
}

/** What one image's record is made of, besides the image. */
export interface RecordRequest {
  task: Task;
  /** The question, for `ask`. */
  question?: string;
  /** Shown as `file` in the record: the path as given, or an upload's name. */
  file: string;
  sampling: SamplingParams;
  /** Add the CheXpert labels of the text (`findings`). */
  findings?: boolean;
}

/** A record with nothing run yet: what a failure before or during generation reports. */
export function baseRecord(model: Model, req: RecordRequest, img?: PreparedImage): ResultRecord {
  const s = req.sampling;
  const r: ResultRecord = {
    file: req.file,
    task: req.task,
    ...(req.question !== undefined ? { question: req.question } : {}),
    text: null,
    model: path.basename(model.info.path),
    params: { temperature: s.temperature, topP: s.topP, maxTokens: s.maxTokens, seed: s.seed === undefined ? null : s.seed.toString() },
    timings: null,
    ...(req.findings ? { findings: null } : {}),
    error: null,
  };
  if (img && img.warnings.length > 0) r.warnings = img.warnings;
  if (img?.sopInstanceUid) r.sopInstanceUid = img.sopInstanceUid;
  return r;
}

/**
 * One prepared image through the model: the vision tower (or `hooks.encode`,
 * e.g. a cache) and the task's official prompt. The
 * record a `--jsonl` line holds; the server's /v1/reports returns the same.
 */
export async function recordFor(
  model: Model,
  req: RecordRequest,
  img: PreparedImage,
  hooks: {
    onStage?: (stage: 'encode' | 'prefill') => void;
    onToken?: (text: string) => void;
    signal?: AbortSignal;
    /** Supplies the encoded image instead of running the vision tower here (`hit`: it was not encoded now, e.g. it came from a cache). */
    encode?: () => Promise<{ image: EncodedImage; hit: boolean }>;
  } = {},
): Promise<ResultRecord> {
  const base = baseRecord(model, req, img);
  hooks.onStage?.('encode');
  const { image: encoded, hit } = hooks.encode
    ? await hooks.encode()
    : { image: await model.encodeImage(img.pixels, { name: img.source, ...(hooks.signal ? { signal: hooks.signal } : {}) }), hit: false };
  hooks.onStage?.('prefill');
  const s = req.sampling;
  const gen = {
    temperature: s.temperature,
    topP: s.topP,
    maxTokens: s.maxTokens,
    ...(hooks.onToken ? { onToken: hooks.onToken } : {}),
    ...(hooks.signal ? { signal: hooks.signal } : {}),
    ...(s.seed !== undefined ? { seed: s.seed } : {}),
  };
  const r =
    req.task === 'report' ? await model.report(encoded, gen) : req.task === 'ddx' ? await model.differential(encoded, gen) : await model.ask(encoded, req.question!, gen);
  return {
    ...base,
    text: r.text,
    params: { ...base.params, seed: r.seed.toString() },
    finishReason: r.finishReason,
    timings: { preprocessMs: round(img.preprocessMs + (hit ? 0 : encoded.preprocessMs)), encodeMs: hit ? 0 : round(encoded.encodeMs), ...r.timings },
    ...(req.findings ? { findings: labelReport(r.text) } : {}),
  };
}

export interface BatchOptions {
  model: Model;
  task: Task;
  /** The question, for `ask`. */
  question?: string;
  inputs: readonly InputFile[];
  sampling: SamplingParams;
  /** Display window / VOI choice for DICOM and 16-bit inputs. */
  display?: ImageFlags;
  format: Format;
  /** Write one file per input here instead of to stdout. */
  outDir?: string;
  /** Add the CheXpert labels of each text to its record (`findings`), or a Findings line under it in text. */
  findings?: boolean;
  /** Skip inputs whose output file exists (needs outDir). */
  resume?: boolean;
  /** `report --sr`: also write a DICOM SR beside each report on a DICOM input (needs outDir); the version goes into the SR. */
  sr?: { version: string };
  /** Images in the model at once (optional, default 1); the model's own `parallel` bounds what runs together. */
  parallel?: number;
  quiet?: boolean;
  verbose?: boolean;
  /**
   * Stops the batch (the CLI's Ctrl-C): nothing new starts, running generations
   * are aborted and get no output (`--resume` runs them again), finished ones are
   * still written in order.
   */
  signal?: AbortSignal;
  stdout?: NodeJS.WriteStream;
  stderr?: NodeJS.WriteStream;
}

export interface BatchSummary {
  ok: number;
  failed: number;
  skipped: number;
  /** Inputs left without a result because `signal` stopped the batch. */
  stopped: number;
}

/** What --resume tells the user after a write failed for lack of space. */
const DISK_FULL_HINT = 'free some space, then run again with --resume (finished outputs are kept)';

/** One input's place in the batch while it runs: its record once settled, and its streamed text and stage. */
interface Slot {
  done: Promise<ResultRecord | 'skipped' | undefined>;
  resolve: (r: ResultRecord | 'skipped' | undefined) => void;
  /** Text generated while an earlier input still streams. */
  pending: string;
  stage: string;
  /** The error line with its stack (--verbose). */
  detail?: string;
}

/** "x.png: why", without naming the file twice when the error already does. */
function errorLine(file: string, err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.startsWith(file + ':') ? msg : `${file}: ${msg}`;
}

export async function runBatch(o: BatchOptions): Promise<BatchSummary> {
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const model = o.model;
  const plan = o.outDir ? planOutputs(o.outDir, o.inputs, o.format) : undefined;
  const todo = plan && o.resume ? o.inputs.filter((f) => !alreadyDone(plan.get(f)!)) : [...o.inputs];
  const summary: BatchSummary = { ok: 0, failed: 0, skipped: o.inputs.length - todo.length, stopped: 0 };
  const bar = new ProgressBar({ stream: stderr, output: stdout, quiet: o.quiet === true });
  const stream = o.format === 'text' && !plan && stdout.isTTY === true;
  const headers = o.format === 'text' && !plan && o.inputs.length > 1;
  const collected: ResultRecord[] = [];
  const sr = o.sr && plan ? new SrWriter(model.info.path, o.sr.version, (line) => bar.log(line), DISK_FULL_HINT) : undefined;
  const t0 = Date.now();
  /** Text blocks written to stdout so far; blocks after the first are set off by a blank line. */
  let blocks = 0;
  if (summary.skipped > 0 && o.verbose) bar.log(`${summary.skipped} of ${o.inputs.length} already done in ${o.outDir}; skipping them`);

  // Aborted by the caller's signal, or by an output that cannot be written (the rest could not be either).
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(o.signal!.reason);
  if (o.signal?.aborted) onAbort();
  else o.signal?.addEventListener('abort', onAbort, { once: true });
  /** The write error that stopped the batch; runBatch throws it at the end. */
  let fatal: { error: unknown } | undefined;

  /**
   * Writes one record where it goes. 'failed': the input counts as failed after all (its
   * SR could not be made); 'skipped': with --resume, another run sharing the folder wrote it first.
   */
  const emit = async (input: InputFile, r: ResultRecord): Promise<'ok' | 'failed' | 'skipped'> => {
    if (plan) {
      const out = plan.get(input)!;
      // Its SR would replace the other run's, which belongs with that run's report.
      if (o.resume && alreadyDone(out)) return 'skipped';
      if (r.error === null && sr) {
        // The SR first: with --resume the report file is what marks an input done.
        try {
          await sr.write(input.path, out, r.text ?? '');
        } catch (err) {
          if (isDiskFull(err)) throw err;
          bar.log(`error: ${errorLine(input.path, err)}`);
          return 'failed';
        }
      }
      if (r.error === null) {
        const body = o.format === 'text' ? textBlock(r) : recordJson(r, true);
        if (!(await writeAtomic(out, body, { diskFull: DISK_FULL_HINT, noReplace: o.resume === true }))) return 'skipped';
      }
    } else if (o.format === 'jsonl') bar.output(recordJson(r, false));
    else if (o.format === 'json') collected.push(r);
    else if (!stream && r.error === null) {
      bar.output((headers ? (blocks > 0 ? '\n' : '') + header(input.path) : '') + textBlock(r));
      blocks++;
    }
    return r.error === null ? 'ok' : 'failed';
  };

  // Each item's record, settled when its generation ends (undefined: stopped before it ended; 'skipped': done by
  // another run meanwhile); they are written in input order.
  const width = Math.max(1, Math.min(o.parallel ?? 1, Math.max(1, todo.length)));
  // The writer drops each slot once written, so a long batch does not keep every record.
  const records: (Slot | undefined)[] = todo.map(() => {
    let resolve!: (r: ResultRecord | 'skipped' | undefined) => void;
    const done = new Promise<ResultRecord | 'skipped' | undefined>((r) => (resolve = r));
    return { done, resolve, pending: '', stage: 'read' };
  });
  /** The earliest item not yet written: the one whose text streams live. */
  let head = 0;
  let midText = false;
  const write = (text: string): void => {
    bar.output(text);
    if (text !== '') midText = !text.endsWith('\n');
  };
  const writer = (async () => {
    for (let i = 0; i < todo.length && fatal === undefined; i++) {
      head = i;
      const input = todo[i]!;
      const slot = records[i]!;
      // The bar now follows this item, from the stage it has reached.
      bar.update({ done: i, total: todo.length, stage: slot.stage, item: input.path, note: '' });
      if (headers && stream) write((blocks++ > 0 ? '\n' : '') + header(input.path));
      if (stream && slot.pending) write(slot.pending);
      slot.pending = '';
      const record = await slot.done;
      records[i] = undefined;
      if (stream && midText) write('\n');
      midText = false;
      if (record === undefined) continue; // stopped: no output, so --resume runs it again
      if (record === 'skipped') {
        summary.skipped++;
        continue;
      }
      if (stream && record.findings) write(findingsLine(record.findings));
      if (record.error !== null) bar.log(`error: ${slot.detail ?? record.error}`);
      try {
        summary[await emit(input, record)]++;
      } catch (err) {
        fatal = { error: err };
        stop.abort(err);
      }
      bar.update({ done: i + 1, total: todo.length, stage: 'done' });
    }
  })();

  await runWindowed(
    todo,
    width,
    (input) => (input.error !== undefined ? Promise.reject(new Error(input.error)) : prepareImage(model, input.path, o.display)),
    async (input, prepared, index) => {
      const slot = records[index]!;
      const update = (stage: string, note?: string): void => {
        slot.stage = stage;
        if (index === head) bar.update({ done: index, total: todo.length, stage, item: input.path, note: note ?? '' });
      };
      // --resume with another run on the same folder: it may have finished this one meanwhile.
      if (plan && o.resume && alreadyDone(plan.get(input)!)) {
        slot.resolve('skipped');
        return;
      }
      update('read');
      const req: RecordRequest = { task: o.task, ...(o.question !== undefined ? { question: o.question } : {}), file: input.path, sampling: o.sampling, ...(o.findings ? { findings: true } : {}) };
      let record: ResultRecord;
      try {
        if (!prepared.ok) throw prepared.error;
        let tokens = 0;
        let decodeStart = 0;
        const onToken = (text: string): void => {
          if (tokens++ === 0) decodeStart = performance.now();
          const rate = perSecond(tokens - 1, performance.now() - decodeStart);
          update('generate', rate > 0 ? `${rate.toFixed(1)} tok/s` : undefined);
          if (!stream) return;
          if (index === head) write(text);
          else slot.pending += text;
        };
        record = await recordFor(model, req, prepared.value, { onStage: update, onToken, signal: stop.signal });
        if (o.verbose) bar.log(timingLine(input.path, record.timings!));
      } catch (err) {
        if (stop.signal.aborted) {
          slot.resolve(undefined);
          return;
        }
        const line = errorLine(input.path, err);
        record = { ...baseRecord(model, req, prepared.ok ? prepared.value : undefined), error: line };
        if (o.verbose && err instanceof Error && err.stack) slot.detail = line + '\n' + err.stack;
      }
      slot.resolve(record);
    },
    stop.signal,
  );
  // Items never started (the batch was stopped) have no record.
  for (const r of records) r?.resolve(undefined);
  await writer;
  o.signal?.removeEventListener('abort', onAbort);
  bar.stop();
  if (fatal) throw fatal.error;
  summary.stopped = o.inputs.length - summary.skipped - summary.ok - summary.failed;
  if (o.format === 'json') stdout.write(JSON.stringify(collected, null, 2) + '\n');
  if (!o.quiet && (o.inputs.length > 1 || summary.skipped > 0 || summary.stopped > 0)) {
    const parts = [`${summary.ok} done`, `${summary.failed} failed`];
    if (summary.skipped > 0) parts.push(`${summary.skipped} skipped (output exists)`);
    if (summary.stopped > 0) parts.push(`${summary.stopped} not done (stopped${plan ? '; run again with --resume to finish them' : ''})`);
    stderr.write(`${parts.join(', ')} in ${clock((Date.now() - t0) / 1000)}\n`);
  }
  return summary;
}

/** A text-mode result: the text, and the Findings line with --findings. */
function textBlock(r: ResultRecord): string {
  return (r.text ?? '').trimEnd() + '\n' + (r.findings ? findingsLine(r.findings) : '');
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}

function timingLine(file: string, t: NonNullable<ResultRecord['timings']>): string {
  return (
    `${file}: preprocess ${ms(t.preprocessMs ?? 0)}, encode ${ms(t.encodeMs ?? 0)}, ` +
    `prefill ${t.prefillTokens} tok in ${ms(t.prefillMs)} (${perSecond(t.prefillTokens, t.prefillMs).toFixed(1)} tok/s), ` +
    `decode ${t.decodeTokens} tok in ${ms(t.decodeMs)} (${perSecond(t.decodeTokens, t.decodeMs).toFixed(1)} tok/s)`
  );
}
