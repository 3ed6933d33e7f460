// Metrics and bootstrap intervals against the numpy reference
// (tools/reference/eval_metrics.py): a synthetic manifest of 600 studies with
// known labels on both sides, read through the manifest parser.
import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bootstrapScores, mulberry32, percentile } from '../lib/eval/bootstrap.js';
import { parseManifest } from '../lib/eval/manifest.js';
import { CELL, confusionCell, metricsFromCounts, scoreStudies, type StudyLabels } from '../lib/eval/metrics.js';
import { OBSERVATIONS, type Findings } from '../lib/eval/observations.js';

const FIX = fileURLToPath(new URL('./fixtures/eval/', import.meta.url));

interface GoldenInterval {
  low: number | null;
  high: number | null;
  defined: number;
}
type GoldenIntervals = Record<'precision' | 'recall' | 'f1' | 'specificity', GoldenInterval>;
interface Goldens {
  studies: number;
  resamples: number;
  seed: number;
  mulberry32First: number[];
  perObservation: Record<string, { counts: Record<string, number>; support: number; precision: number | null; recall: number | null; f1: number | null; specificity: number | null }>;
  macro: Record<string, number | null>;
  micro: Record<string, number | null>;
  intervals: Record<'same_stream' | 'numpy', { perObservation: Record<string, GoldenIntervals>; macro: GoldenIntervals; micro: GoldenIntervals }>;
}
const golden = JSON.parse(readFileSync(path.join(FIX, 'goldens.json'), 'utf8')) as Goldens;

function labelsOf(file: string): Findings[] {
  const m = parseManifest(readFileSync(path.join(FIX, file), 'utf8'), path.join(FIX, file));
  return m.rows.map((r) => {
    if (!('labels' in r.reference)) throw new Error(`${file}: row ${r.line} has no labels`);
    return r.reference.labels;
  });
}
const ref = labelsOf('reference.csv');
const gen = labelsOf('generated.csv');
const studies: StudyLabels[] = ref.map((reference, i) => ({ reference, generated: gen[i]! }));

t.test('the protocol: only definite pairs enter the confusion matrix', async (t) => {
  t.equal(confusionCell('positive', 'positive'), CELL.tp);
  t.equal(confusionCell('negative', 'positive'), CELL.fp);
  t.equal(confusionCell('positive', 'negative'), CELL.fn);
  t.equal(confusionCell('negative', 'negative'), CELL.tn);
  for (const other of ['uncertain', undefined] as const) {
    for (const l of ['positive', 'negative', 'uncertain', undefined] as const) {
      t.equal(confusionCell(other, l), CELL.excluded, `reference ${other}, generated ${l}`);
      t.equal(confusionCell(l, other), CELL.excluded, `reference ${l}, generated ${other}`);
    }
  }
  t.same(metricsFromCounts({ tp: 0, fp: 0, fn: 3, tn: 2, excluded: 0 }), { precision: null, recall: 0, f1: 0, specificity: 1, support: 3, pairs: 5 });
  t.same(metricsFromCounts({ tp: 0, fp: 0, fn: 0, tn: 0, excluded: 9 }), { precision: null, recall: null, f1: null, specificity: null, support: 0, pairs: 0 });
});

t.test('per-observation counts and metrics equal numpy exactly', async (t) => {
  t.equal(studies.length, golden.studies);
  const s = scoreStudies(studies);
  for (const m of s.perObservation) {
    const g = golden.perObservation[m.observation]!;
    t.same(m.counts, g.counts, `${m.observation} counts`);
    t.equal(m.support, g.support, `${m.observation} support`);
    // Exact: the same IEEE operations on the same integers.
    t.equal(m.f1, g.f1, `${m.observation} F1`);
    t.equal(m.precision, g.precision, `${m.observation} precision`);
    t.equal(m.recall, g.recall, `${m.observation} recall`);
    t.equal(m.specificity, g.specificity, `${m.observation} specificity`);
  }
  // The fixture's edge cases are what the reference says they are.
  t.equal(golden.perObservation['Pleural Other']!.recall, null, 'no reference positive: recall undefined');
  t.equal(golden.perObservation['Fracture']!.f1, null, 'nothing scored: F1 undefined');
  for (const k of ['precision', 'recall', 'f1', 'specificity'] as const) {
    // Means of 13-14 values: numpy sums pairwise, so allow the last bits.
    t.ok(Math.abs(s.macro[k]! - golden.macro[k]!) < 1e-12, `macro ${k} ${s.macro[k]} vs ${golden.macro[k]}`);
    t.equal(s.micro[k], golden.micro[k], `micro ${k}`);
  }
  t.same(s.macro.observations, OBSERVATIONS.filter((o) => o !== 'Fracture'), 'macro F1 is over the observations where F1 is defined');
});

t.test('bootstrap intervals: draw for draw with the reference, within 0.01 of numpy\'s own generator', async (t) => {
  const b = bootstrapScores(studies, { resamples: golden.resamples, seed: golden.seed });
  t.equal(b.resamples, 1000);
  const check = (label: string, ours: Record<string, { low: number | null; high: number | null; defined: number }>, same: GoldenIntervals, indep: GoldenIntervals): void => {
    for (const k of ['precision', 'recall', 'f1', 'specificity'] as const) {
      const o = ours[k]!;
      const g = same[k];
      t.equal(o.defined, g.defined, `${label} ${k}: resamples where defined`);
      if (g.low === null) {
        t.equal(o.low, null, `${label} ${k}: undefined in every resample`);
        continue;
      }
      t.ok(Math.abs(o.low! - g.low) < 1e-12 && Math.abs(o.high! - g.high!) < 1e-12, `${label} ${k}: [${o.low}, ${o.high}] vs same-stream [${g.low}, ${g.high}]`);
      const n = indep[k];
      t.ok(Math.abs(o.low! - n.low!) <= 0.01 && Math.abs(o.high! - n.high!) <= 0.01, `${label} ${k}: [${o.low?.toFixed(4)}, ${o.high?.toFixed(4)}] vs numpy [${n.low?.toFixed(4)}, ${n.high?.toFixed(4)}]`);
    }
  };
  for (const o of OBSERVATIONS) check(o, b.perObservation[o]!, golden.intervals.same_stream.perObservation[o]!, golden.intervals.numpy.perObservation[o]!);
  check('macro', b.macro, golden.intervals.same_stream.macro, golden.intervals.numpy.macro);
  check('micro', b.micro, golden.intervals.same_stream.micro, golden.intervals.numpy.micro);
  // The interval brackets the point estimate.
  const s = scoreStudies(studies);
  for (const m of s.perObservation) {
    if (m.f1 === null) continue;
    const ci = b.perObservation[m.observation]!.f1;
    t.ok(ci.low! <= m.f1 && m.f1 <= ci.high!, `${m.observation}: ${ci.low} <= ${m.f1} <= ${ci.high}`);
  }
});

t.test('the seed fixes the intervals; another seed moves them', async (t) => {
  const a = bootstrapScores(studies, { resamples: 200, seed: 3 });
  const b = bootstrapScores(studies, { resamples: 200, seed: 3 });
  const c = bootstrapScores(studies, { resamples: 200, seed: 4 });
  t.same(a, b);
  t.not(a.macro.f1.low, c.macro.f1.low);
  t.throws(() => bootstrapScores(studies, { resamples: 0 }), /Expected a positive integer for resamples but received 0/);
});

t.test('mulberry32 and percentile', async (t) => {
  // The first outputs for the fixture's seed, as tools/reference/eval_metrics.py computes them.
  const next = mulberry32(golden.seed);
  t.same([next(), next(), next(), next(), next()], golden.mulberry32First);
  t.equal(percentile([1, 2, 3, 4], 50), 2.5);
  t.equal(percentile([10], 2.5), 10);
  t.equal(percentile([0, 10], 97.5), 9.75);
  t.throws(() => percentile([], 50), /empty/);
});
