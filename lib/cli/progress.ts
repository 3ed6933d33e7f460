/**
 * A one-line progress bar on stderr: done/total, the current stage, a rate and
 * an ETA. It draws only when stderr is a terminal (never into a pipe or a log
 * file) and not `--quiet`.
 *
 * Text streamed to stdout on the same terminal would collide with the bar, so
 * output goes through `output()`: the bar is erased first and is only drawn
 * again once the text has ended a line.
 */
import { clock, humanBytes } from './format.js';

export type ProgressUnit = 'images' | 'bytes' | 'percent';

export interface ProgressState {
  /** Units done so far (images, bytes, or a fraction 0..1 for 'percent'). */
  done: number;
  /** Units in all. */
  total: number;
  /** What is happening now, e.g. "generate". */
  stage?: string;
  /** The file or tensor being worked on. */
  item?: string;
  /** Extra rate to show, e.g. "12.3 tok/s". */
  note?: string;
}

export interface ProgressOptions {
  /** What `done` and `total` count (optional, default 'images'). */
  unit?: ProgressUnit;
  /** Where to draw (optional, default process.stderr). */
  stream?: NodeJS.WriteStream;
  /** Never draw (optional, default false). */
  quiet?: boolean;
  /** The stream that program output goes to, to keep the two apart (optional, default process.stdout). */
  output?: NodeJS.WriteStream;
}

/** Redraws at most this often; a terminal does not need 100 frames per second. */
const FRAME_MS = 100;

export class ProgressBar {
  readonly enabled: boolean;
  readonly #stream: NodeJS.WriteStream;
  readonly #output: NodeJS.WriteStream;
  readonly #unit: ProgressUnit;
  #state: ProgressState = { done: 0, total: 0 };
  #drawn = false;
  /** stdout text has started a line that it has not finished: drawing now would land inside it. */
  #midLine = false;
  #lastDraw = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #start = Date.now();
  /** Rate window: when counting started and from what value (skipped inputs must not count as speed). */
  #rateFrom: { t: number; done: number } | undefined;

  constructor(options: ProgressOptions = {}) {
    this.#stream = options.stream ?? process.stderr;
    this.#output = options.output ?? process.stdout;
    this.#unit = options.unit ?? 'images';
    this.enabled = options.quiet !== true && this.#stream.isTTY === true;
  }

  /** Sets the state and redraws (throttled). */
  update(state: Partial<ProgressState>): void {
    this.#state = { ...this.#state, ...state };
    if (!this.enabled) return;
    this.#rateFrom ??= { t: Date.now(), done: this.#state.done };
    const now = Date.now();
    if (now - this.#lastDraw >= FRAME_MS) this.#draw();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#draw();
      }, FRAME_MS);
      this.#timer.unref();
    }
  }

  /** Writes text to the program's output without tearing the bar. */
  output(text: string): void {
    if (text.length === 0) return;
    // One terminal behind both streams: track where its cursor is, bar or no bar.
    const shared = this.#output.isTTY === true && this.#stream.isTTY === true;
    if (shared) this.#erase();
    this.#output.write(text);
    if (shared) {
      this.#midLine = !text.endsWith('\n');
      if (!this.#midLine) this.#draw();
    }
  }

  /** Prints a whole line on the bar's stream (a message or an error) above the bar. */
  log(line: string): void {
    this.#erase();
    if (this.#midLine) {
      this.#output.write('\n');
      this.#midLine = false;
    }
    this.#stream.write(line.endsWith('\n') ? line : line + '\n');
    this.#draw();
  }

  /** Removes the bar for good. */
  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#erase();
  }

  /** The bar as text, `width` columns at most. Exposed for tests. */
  render(width: number, now = Date.now()): string {
    const s = this.#state;
    const frac = s.total > 0 ? Math.min(1, s.done / s.total) : 0;
    let count: string;
    if (this.#unit === 'bytes') count = `${humanBytes(s.done)}/${humanBytes(s.total)}`;
    else if (this.#unit === 'percent') count = `${Math.floor(frac * 100)}%`;
    else count = `${s.done}/${s.total}`;
    const parts = [count];
    if (s.stage) parts.push(s.stage);
    if (s.note) parts.push(s.note);
    const from = this.#rateFrom;
    const secs = from ? (now - from.t) / 1000 : 0;
    const rate = from && secs > 0 ? (s.done - from.done) / secs : 0;
    if (rate > 0) {
      if (this.#unit === 'bytes') parts.push(`${humanBytes(rate)}/s`);
      else if (this.#unit === 'images') parts.push(rate >= 1 ? `${rate.toFixed(1)} img/s` : `${(1 / rate).toFixed(1)} s/img`);
      parts.push(`ETA ${clock((s.total - s.done) / rate)}`);
    } else {
      parts.push(`${clock((now - this.#start) / 1000)} elapsed`);
    }
    const barWidth = Math.max(10, Math.min(30, Math.floor(width / 4)));
    const filled = Math.round(frac * barWidth);
    let line = `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${parts.join('  ')}`;
    if (line.length > width) return line.slice(0, Math.max(0, width - 1)) + '…';
    // The file name gets what room is left; its end (the name itself) matters most.
    const room = width - line.length - 2;
    if (s.item && room >= 8) line += '  ' + (s.item.length > room ? '…' + s.item.slice(s.item.length - room + 1) : s.item);
    return line;
  }

  #draw(): void {
    if (!this.enabled || this.#midLine) return;
    this.#lastDraw = Date.now();
    const width = (this.#stream.columns ?? 80) - 1;
    this.#stream.write(`\r${this.render(width)}\x1b[K`);
    this.#drawn = true;
  }

  #erase(): void {
    if (!this.#drawn) return;
    this.#stream.write('\r\x1b[K');
    this.#drawn = false;
  }
}

/** Progress reported as phases (download, hash, convert text, convert vision): one bar per phase. */
export interface PhaseEvent {
  phase: string;
  /** Fraction of this phase done, 0 to 1. */
  progress: number;
  item?: string;
  /** Byte counts, when the phase is a download. */
  bytes?: number;
  totalBytes?: number;
}

/** A bar that restarts its rate and ETA whenever the phase changes, counting bytes when it can. */
export class PhasedProgress {
  readonly #quiet: boolean;
  #bar: ProgressBar | undefined;
  #phase = '';

  constructor(quiet: boolean) {
    this.#quiet = quiet;
  }

  update(p: PhaseEvent): void {
    const bytes = p.totalBytes !== undefined && p.bytes !== undefined;
    if (p.phase !== this.#phase || !this.#bar) {
      this.#bar?.stop();
      this.#phase = p.phase;
      this.#bar = new ProgressBar({ unit: bytes ? 'bytes' : 'percent', quiet: this.#quiet });
    }
    const stage = p.phase === 'text' || p.phase === 'vision' ? `convert ${p.phase}` : p.phase;
    const item = p.item ? { item: p.item } : {};
    if (bytes) this.#bar.update({ done: p.bytes!, total: p.totalBytes!, stage, ...item });
    else this.#bar.update({ done: p.progress, total: 1, stage, ...item });
  }

  /** A message line above the bar (or plain, without a terminal). */
  log(line: string): void {
    if (this.#quiet) return;
    if (this.#bar) this.#bar.log(line);
    else process.stderr.write(line + '\n');
  }

  stop(): void {
    this.#bar?.stop();
  }
}
