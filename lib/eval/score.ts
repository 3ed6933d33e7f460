/**
 * From a manifest and the generated reports to the evaluation: labels both
 * sides, scores them (metrics.ts: definite labels only), and bootstraps the
 * intervals (bootstrap.ts). The labeler is passed in, so the scoring can be
 * tested with known labels and stays independent of how reports are labelled.
 */
import { bootstrapScores, type BootstrapResult, type Intervals } from './bootstrap.js';
import type { ManifestRow } from './manifest.js';
import { scoreStudies, type AverageMetrics, type ObservationMetrics, type StudyLabels } from './metrics.js';
import { OBSERVATIONS, type Findings, type Observation } from './observations.js';
import { PAPER_CITATION, PAPER_MIMIC } from './paper.js';

/** Turns a report's text into labels (the report labeler). */
export type ReportLabeler = (text: string) => Findings;

/** The generated side of one study: a record's text, or why there is none. */
export interface Generated {
  text: string | null;
  error: string | null;
}

export interface EvaluateOptions {
  rows: readonly ManifestRow[];
  /** The generated report of each row; a row absent from the map has no record. */
  generated: ReadonlyMap<ManifestRow, Generated>;
  label: ReportLabeler;
  /** Resamples (optional, default 1000). */
  resamples?: number;
  /** Seed of the resampling (optional, default 1). */
  seed?: number;
  /** Observations to score (optional, default all 14). */
  observations?: readonly Observation[];
  /** Compare with the paper's MIMIC figures (optional, default false). */
  mimicLike?: boolean;
  /** Progress of the bootstrap, a fraction (optional). */
  onProgress?: (fraction: number) => void;
}

export interface StudyResult {
  image: string;
  id?: string;
  reference: Findings;
  generated: Findings;
}

export type WithIntervals<M> = M & { ci: Intervals };

export interface EvalResult {
  protocol: string;
  studies: number;
  scored: number;
  /** Rows without any generated record. */
  missing: string[];
  /** Rows whose generation failed: "image: why". */
  failed: string[];
  bootstrap: { resamples: number; seed: number; level: number; unit: 'study' };
  perObservation: WithIntervals<ObservationMetrics>[];
  macro: WithIntervals<AverageMetrics>;
  micro: WithIntervals<AverageMetrics>;
  /** Present for MIMIC-like data: the paper's figures, and our macro F1 over the same findings. */
  paper?: {
    citation: string;
    testSet: string;
    averageF1: number;
    findings: readonly Observation[];
    perFindingF1: Partial<Record<Observation, number>>;
    ours: WithIntervals<Pick<AverageMetrics, 'f1' | 'precision' | 'recall' | 'specificity'>>;
  };
  labels: StudyResult[];
}

export const PROTOCOL =
  'definite labels only: a (study, observation) pair is scored when both the reference and the generated label are positive or negative ' +
  '(TP: both positive; FP: reference negative, generated positive; FN: reference positive, generated negative; TN: both negative); ' +
  'a pair with an uncertain or unmentioned label on either side is left out, never counted as negative';

export function evaluate(o: EvaluateOptions): EvalResult {
  const observations = o.observations ?? OBSERVATIONS;
  const missing: string[] = [];
  const failed: string[] = [];
  const studies: StudyLabels[] = [];
  const labels: StudyResult[] = [];
  for (const row of o.rows) {
    const g = o.generated.get(row);
    if (!g) {
      missing.push(row.image);
      continue;
    }
    if (g.error !== null || g.text === null) {
      failed.push(g.error ?? `${row.image}: no text`);
      continue;
    }
    const reference = 'labels' in row.reference ? row.reference.labels : o.label(row.reference.report);
    const generated = o.label(g.text);
    studies.push({ reference, generated });
    labels.push({ image: row.image, ...(row.id ? { id: row.id } : {}), reference, generated });
  }
  const scores = scoreStudies(studies, observations);
  const subsets: Record<string, readonly Observation[]> = o.mimicLike ? { paper: PAPER_MIMIC.findings.filter((f) => observations.includes(f)) } : {};
  const boot: BootstrapResult = bootstrapScores(studies, {
    observations,
    subsets,
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    ...(o.resamples !== undefined ? { resamples: o.resamples } : {}),
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
  });
  const result: EvalResult = {
    protocol: PROTOCOL,
    studies: o.rows.length,
    scored: studies.length,
    missing,
    failed,
    bootstrap: { resamples: boot.resamples, seed: boot.seed, level: boot.level, unit: 'study' },
    perObservation: scores.perObservation.map((m) => ({ ...m, ci: boot.perObservation[m.observation]! })),
    macro: { ...scores.macro, ci: boot.macro },
    micro: { ...scores.micro, ci: boot.micro },
    labels,
  };
  if (o.mimicLike) {
    const subset = subsets.paper!;
    const mean = (k: 'f1' | 'precision' | 'recall' | 'specificity'): number | null => {
      const v = scores.perObservation.filter((m) => subset.includes(m.observation)).map((m) => m[k]).filter((x): x is number => x !== null);
      return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length;
    };
    result.paper = {
      citation: PAPER_CITATION,
      testSet: PAPER_MIMIC.testSet,
      averageF1: PAPER_MIMIC.averageF1,
      findings: PAPER_MIMIC.findings,
      perFindingF1: PAPER_MIMIC.perFindingF1,
      ours: { f1: mean('f1'), precision: mean('precision'), recall: mean('recall'), specificity: mean('specificity'), ci: boot.subsets.paper! },
    };
  }
  return result;
}
