/**
 * Percentile bootstrap intervals for the metrics of metrics.ts.
 *
 * The unit resampled is the study (one image and its reports): each resample
 * draws n studies with replacement from the n, recounts every observation's
 * confusion matrix, and recomputes every metric and both averages. Resampling
 * studies, not pairs, keeps the observations of one study together, as they
 * were written in one report.
 *
 * The interval is the (1-level)/2 and (1+level)/2 percentiles of the resampled
 * values, with linear interpolation between order statistics (numpy's default
 * `percentile` method). Resamples in which a metric is undefined (e.g. no
 * reference positive drawn, so no recall) are left out of its percentiles;
 * `defined` says how many remained.
 *
 * The random source is mulberry32 (a 32-bit generator; the seed fixes every
 * draw), and a draw from n is floor(u32 * n / 2^32).
 * tools/reference/eval_metrics.py re-implements it to check the resampling
 * draw for draw, and also runs numpy's own generator as an independent check.
 */
import { OBSERVATIONS, type Observation } from './observations.js';
import { METRIC_NAMES, cellTable, countCells, scoresFromCounts, type MetricName, type Scores, type StudyLabels } from './metrics.js';

/** mulberry32: returns a function giving the next 32-bit unsigned integer. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The p-th percentile (0..100) of ascending `sorted`, interpolating linearly between order statistics. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('percentile of an empty list');
  const at = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}

export interface Interval {
  /** Lower bound; null when the metric was undefined in every resample. */
  low: number | null;
  high: number | null;
  /** Resamples in which the metric was defined. */
  defined: number;
}

export type Intervals = Record<MetricName, Interval>;

export interface BootstrapOptions {
  /** Number of resamples (optional, default 1000). */
  resamples?: number;
  /** Seed of the resampling (optional, default 1). */
  seed?: number;
  /** Coverage of the interval (optional, default 0.95). */
  level?: number;
  /** Observations to score, in order (optional, default all 14). */
  observations?: readonly Observation[];
  /** Extra averages over subsets of the observations, e.g. the paper's six (optional). */
  subsets?: Record<string, readonly Observation[]>;
  /** Called now and then with the fraction of resamples done (optional). */
  onProgress?: (fraction: number) => void;
}

export interface BootstrapResult {
  resamples: number;
  seed: number;
  level: number;
  perObservation: Partial<Record<Observation, Intervals>>;
  macro: Intervals;
  micro: Intervals;
  /** Macro-average intervals of each subset named in the options. */
  subsets: Record<string, Intervals>;
}

/** Macro average of one metric over a subset of a resample's scores. */
export function subsetMacro(scores: Scores, subset: readonly Observation[], k: MetricName): number | null {
  const v = scores.perObservation.filter((m) => subset.includes(m.observation)).map((m) => m[k]).filter((x): x is number => x !== null);
  return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length;
}

/** Bootstrap intervals for every metric of every observation and of the averages. */
export function bootstrapScores(studies: readonly StudyLabels[], options: BootstrapOptions = {}): BootstrapResult {
  const resamples = options.resamples ?? 1000;
  const seed = options.seed ?? 1;
  const level = options.level ?? 0.95;
  const observations = options.observations ?? OBSERVATIONS;
  const subsets = options.subsets ?? {};
  if (!Number.isInteger(resamples) || resamples < 1) throw new RangeError(`Expected a positive integer for resamples but received ${resamples}`);
  if (!(level > 0 && level < 1)) throw new RangeError(`Expected a level between 0 and 1 but received ${level}`);
  const n = studies.length;
  const nObs = observations.length;
  const cells = cellTable(studies, observations);
  const next = mulberry32(seed);

  // samples[key][metric]: the defined values over resamples.
  const keys = [...observations.map((o) => `obs:${o}`), 'macro', 'micro', ...Object.keys(subsets).map((s) => `subset:${s}`)];
  const samples = new Map<string, Record<MetricName, number[]>>(keys.map((k) => [k, { precision: [], recall: [], f1: [], specificity: [] }]));
  const push = (key: string, k: MetricName, v: number | null): void => {
    if (v !== null) samples.get(key)![k].push(v);
  };
  const rows = new Array<number>(n);
  const every = Math.max(1, Math.floor(resamples / 100));
  for (let b = 0; b < resamples; b++) {
    if (options.onProgress && b % every === 0) options.onProgress(b / resamples);
    for (let i = 0; i < n; i++) rows[i] = Math.floor((next() * n) / 4294967296);
    const s = scoresFromCounts(countCells(cells, nObs, rows), observations);
    for (const k of METRIC_NAMES) {
      for (const m of s.perObservation) push(`obs:${m.observation}`, k, m[k]);
      push('macro', k, s.macro[k]);
      push('micro', k, s.micro[k]);
      for (const [name, subset] of Object.entries(subsets)) push(`subset:${name}`, k, subsetMacro(s, subset, k));
    }
  }

  const lowP = ((1 - level) / 2) * 100;
  const highP = ((1 + level) / 2) * 100;
  const intervals = (key: string): Intervals => {
    const out = {} as Intervals;
    for (const k of METRIC_NAMES) {
      const v = samples.get(key)![k].sort((a, b) => a - b);
      out[k] = v.length === 0 ? { low: null, high: null, defined: 0 } : { low: percentile(v, lowP), high: percentile(v, highP), defined: v.length };
    }
    return out;
  };
  const perObservation: Partial<Record<Observation, Intervals>> = {};
  for (const o of observations) perObservation[o] = intervals(`obs:${o}`);
  return {
    resamples,
    seed,
    level,
    perObservation,
    macro: intervals('macro'),
    micro: intervals('micro'),
    subsets: Object.fromEntries(Object.keys(subsets).map((s) => [s, intervals(`subset:${s}`)])),
  };
}
