/**
 * The published figures of CXR-LLaVA that `eval` draws as reference marks.
 *
 * Only what we could find published is here: the abstract's average F1 over
 * six major findings (0.81 on the MIMIC internal test set, 0.56 on the external
 * set). We could not find the per-finding F1 values in a source we could read,
 * so none are marked; `perFindingF1` stays empty until someone fills it in from
 * the paper's table.
 */
import type { Observation } from './observations.js';

export const PAPER_CITATION =
  'Lee S, Youn J, Kim H, Kim M, Yoon SH. CXR-LLaVA: a multimodal large language model for interpreting chest X-ray images. Eur Radiol 2025. doi:10.1007/s00330-024-11339-6';

export interface PublishedFigures {
  /** Where the numbers were measured. */
  testSet: string;
  /** The published average F1. */
  averageF1: number;
  /** The findings that average is over. */
  findings: readonly Observation[];
  /** Per-finding F1 as published; only the ones we could verify. */
  perFindingF1: Partial<Record<Observation, number>>;
}

/**
 * The MIMIC internal test set. The abstract says "six major pathological
 * findings". Which six (cardiomegaly, consolidation, edema, pleural effusion,
 * pneumonia, pneumothorax) is taken from a public re-evaluation of the paper
 * that lists them; we could not read the paper's own table to confirm it.
 */
export const PAPER_MIMIC: PublishedFigures = {
  testSet: 'MIMIC-CXR internal test set',
  averageF1: 0.81,
  findings: ['Cardiomegaly', 'Consolidation', 'Edema', 'Pleural Effusion', 'Pneumonia', 'Pneumothorax'],
  perFindingF1: {},
};
