/**
 * Per-observation agreement between reference and generated labels, scored as
 * the CXR-LLaVA paper did: only definite labels count.
 *
 * How one (study, observation) pair enters the confusion matrix:
 *
 * | reference \ generated | positive | negative | uncertain / absent |
 * |-----------------------|----------|----------|--------------------|
 * | positive              | TP       | FN       | left out           |
 * | negative              | FP       | TN       | left out           |
 * | uncertain / absent    | left out | left out | left out           |
 *
 * A pair is scored only when both sides are definite (positive or negative).
 * An uncertain or unmentioned label on either side leaves the pair out; it is
 * never read as negative. `tools/reference/eval_metrics.py` applies the same rule.
 */
import { OBSERVATIONS, type Findings, type Label, type Observation } from './observations.js';

/** Where one pair lands: 0 left out, 1 TP, 2 FP, 3 FN, 4 TN (small integers, so a study's cells fit a byte array). */
export const CELL = { excluded: 0, tp: 1, fp: 2, fn: 3, tn: 4 } as const;
export type Cell = (typeof CELL)[keyof typeof CELL];

/** The confusion-matrix cell of one pair, or CELL.excluded when either label is not definite. */
export function confusionCell(reference: Label | undefined, generated: Label | undefined): Cell {
  const definite = (l: Label | undefined) => l === 'positive' || l === 'negative';
  if (!definite(reference) || !definite(generated)) return CELL.excluded;
  if (reference === 'positive') return generated === 'positive' ? CELL.tp : CELL.fn;
  return generated === 'positive' ? CELL.fp : CELL.tn;
}

export interface Counts {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
  /** Pairs left out: a label on either side was uncertain or absent. */
  excluded: number;
}

/** Metrics of one observation or of an average; a ratio with a zero denominator is null (undefined, not 0). */
export interface Metrics {
  precision: number | null;
  recall: number | null;
  f1: number | null;
  specificity: number | null;
  /** Reference positives among the scored pairs (TP + FN). */
  support: number;
  /** Pairs scored (TP + FP + FN + TN). */
  pairs: number;
}

export interface ObservationMetrics extends Metrics {
  observation: Observation;
  counts: Counts;
}

export interface AverageMetrics extends Metrics {
  /** The observations that entered the average (macro: those with a defined value; micro: all given). */
  observations: Observation[];
}

/** One study's labels from both sides. */
export interface StudyLabels {
  reference: Findings;
  generated: Findings;
}

export function emptyCounts(): Counts {
  return { tp: 0, fp: 0, fn: 0, tn: 0, excluded: 0 };
}

function ratio(num: number, den: number): number | null {
  return den === 0 ? null : num / den;
}

/**
 * Precision TP/(TP+FP), recall (sensitivity) TP/(TP+FN), specificity TN/(TN+FP),
 * F1 2TP/(2TP+FP+FN): the harmonic mean of precision and recall, written so that
 * it is 0, not undefined, when there are errors but no true positive.
 */
export function metricsFromCounts(c: Counts): Metrics {
  return {
    precision: ratio(c.tp, c.tp + c.fp),
    recall: ratio(c.tp, c.tp + c.fn),
    f1: ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn),
    specificity: ratio(c.tn, c.tn + c.fp),
    support: c.tp + c.fn,
    pairs: c.tp + c.fp + c.fn + c.tn,
  };
}

/** Each study's cell for each observation: row-major, `studies.length` x `observations.length`. */
export function cellTable(studies: readonly StudyLabels[], observations: readonly Observation[] = OBSERVATIONS): Uint8Array {
  const cells = new Uint8Array(studies.length * observations.length);
  studies.forEach((s, i) => {
    observations.forEach((o, j) => {
      cells[i * observations.length + j] = confusionCell(s.reference[o], s.generated[o]);
    });
  });
  return cells;
}

/** Counts per observation over the studies listed in `rows` (indices into the cell table; repeats count again). */
export function countCells(cells: Uint8Array, nObs: number, rows: Iterable<number>): Counts[] {
  const out = Array.from({ length: nObs }, emptyCounts);
  for (const i of rows) {
    for (let j = 0; j < nObs; j++) {
      const c = out[j]!;
      switch (cells[i * nObs + j]) {
        case CELL.tp: c.tp++; break;
        case CELL.fp: c.fp++; break;
        case CELL.fn: c.fn++; break;
        case CELL.tn: c.tn++; break;
        default: c.excluded++;
      }
    }
  }
  return out;
}

const METRIC_KEYS = ['precision', 'recall', 'f1', 'specificity'] as const;
export type MetricName = (typeof METRIC_KEYS)[number];
export const METRIC_NAMES: readonly MetricName[] = METRIC_KEYS;

/**
 * Macro average: the unweighted mean, per metric, over the observations where
 * that metric is defined (an observation with no reference positive has no
 * recall and does not pull the mean to 0). Support and pairs are summed.
 */
export function macroAverage(per: readonly ObservationMetrics[]): AverageMetrics {
  const mean = (k: MetricName): number | null => {
    const v = per.map((m) => m[k]).filter((x): x is number => x !== null);
    return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length;
  };
  return {
    precision: mean('precision'),
    recall: mean('recall'),
    f1: mean('f1'),
    specificity: mean('specificity'),
    support: per.reduce((a, m) => a + m.support, 0),
    pairs: per.reduce((a, m) => a + m.pairs, 0),
    observations: per.filter((m) => m.f1 !== null).map((m) => m.observation),
  };
}

/** Micro average: the counts of all observations pooled, then the metrics of the pool. */
export function microAverage(per: readonly ObservationMetrics[]): AverageMetrics {
  const pooled = emptyCounts();
  for (const m of per) {
    pooled.tp += m.counts.tp;
    pooled.fp += m.counts.fp;
    pooled.fn += m.counts.fn;
    pooled.tn += m.counts.tn;
    pooled.excluded += m.counts.excluded;
  }
  return { ...metricsFromCounts(pooled), observations: per.map((m) => m.observation) };
}

export interface Scores {
  perObservation: ObservationMetrics[];
  macro: AverageMetrics;
  micro: AverageMetrics;
}

/** Metrics from per-observation counts, in the order of `observations`. */
export function scoresFromCounts(counts: readonly Counts[], observations: readonly Observation[]): Scores {
  const perObservation = observations.map((observation, j) => ({ observation, counts: counts[j]!, ...metricsFromCounts(counts[j]!) }));
  return { perObservation, macro: macroAverage(perObservation), micro: microAverage(perObservation) };
}

/** Per-observation, macro and micro metrics of a set of studies. */
export function scoreStudies(studies: readonly StudyLabels[], observations: readonly Observation[] = OBSERVATIONS): Scores {
  const cells = cellTable(studies, observations);
  return scoresFromCounts(countCells(cells, observations.length, studies.keys()), observations);
}
