/**
 * The 14 CheXpert observations and the four states a labeler gives each one.
 * Shared by the report labeler (`labeler.ts`), `cxr-llava eval` and `--findings`.
 */

/** The observations in CheXpert's column order. */
export const OBSERVATIONS = [
  'No Finding',
  'Enlarged Cardiomediastinum',
  'Cardiomegaly',
  'Lung Lesion',
  'Lung Opacity',
  'Edema',
  'Consolidation',
  'Pneumonia',
  'Atelectasis',
  'Pneumothorax',
  'Pleural Effusion',
  'Pleural Other',
  'Fracture',
  'Support Devices',
] as const;

export type Observation = (typeof OBSERVATIONS)[number];

/** What a report says of one observation. An observation it does not mention is absent from `Findings`. */
export type Label = 'positive' | 'negative' | 'uncertain';

/** One report's labels: only the observations it mentions. */
export type Findings = Partial<Record<Observation, Label>>;

/** CheXpert's CSV encoding of a label: 1, 0, -1, blank for absent. */
export function labelFromChexpertValue(value: string | number | null | undefined): Label | undefined {
  if (value === null || value === undefined) return undefined;
  const s = String(value).trim();
  if (s === '') return undefined;
  const n = Number(s);
  if (n === 1) return 'positive';
  if (n === 0) return 'negative';
  if (n === -1) return 'uncertain';
  throw new RangeError(`Expected 1, 0, -1 or blank for a CheXpert label but received ${JSON.stringify(value)}`);
}
