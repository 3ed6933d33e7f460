/**
 * The evaluation as a table: plain text for a terminal, Markdown, or CSV.
 * Each metric reads "value (low–high)", the 95% bootstrap interval; "–" is a
 * metric that is undefined (a zero denominator: e.g. recall with no reference
 * positive among the scored pairs).
 */
import type { Interval, Intervals } from './bootstrap.js';
import type { MetricName } from './metrics.js';
import type { EvalResult } from './score.js';

export type TableFormat = 'plain' | 'md' | 'csv';

const METRICS: readonly MetricName[] = ['precision', 'recall', 'f1', 'specificity'];
const TITLES: Record<MetricName, string> = { precision: 'Precision', recall: 'Recall', f1: 'F1', specificity: 'Specificity' };

interface Row {
  label: string;
  pairs: number | null;
  support: number | null;
  counts: { tp: number; fp: number; fn: number; tn: number; excluded: number } | null;
  values: Record<MetricName, number | null>;
  ci: Intervals;
}

function rows(r: EvalResult): Row[] {
  const pick = (m: Record<MetricName, number | null>): Record<MetricName, number | null> => ({ precision: m.precision, recall: m.recall, f1: m.f1, specificity: m.specificity });
  const out: Row[] = r.perObservation.map((m) => ({ label: m.observation, pairs: m.pairs, support: m.support, counts: m.counts, values: pick(m), ci: m.ci }));
  out.push({ label: 'Macro average', pairs: r.macro.pairs, support: r.macro.support, counts: null, values: pick(r.macro), ci: r.macro.ci });
  out.push({ label: 'Micro average', pairs: r.micro.pairs, support: r.micro.support, counts: null, values: pick(r.micro), ci: r.micro.ci });
  if (r.paper) out.push({ label: "Macro, the paper's findings", pairs: null, support: null, counts: null, values: pick(r.paper.ours), ci: r.paper.ours.ci });
  return out;
}

function num(v: number | null, digits = 3): string {
  return v === null ? '–' : v.toFixed(digits);
}

function cell(v: number | null, ci: Interval): string {
  if (v === null) return '–';
  return ci.low === null || ci.high === null ? num(v) : `${num(v)} (${num(ci.low, 2)}–${num(ci.high, 2)})`;
}

/** One line saying what the table is. */
export function caption(r: EvalResult): string {
  const parts = [`${r.scored} of ${r.studies} studies scored`];
  if (r.missing.length) parts.push(`${r.missing.length} without a generated report`);
  if (r.failed.length) parts.push(`${r.failed.length} failed`);
  return (
    `${parts.join(', ')}; definite labels only (uncertain and unmentioned left out); ` +
    `95% bootstrap intervals over ${r.bootstrap.resamples} resamples of studies (seed ${r.bootstrap.seed})`
  );
}

function csvField(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function formatTable(r: EvalResult, format: TableFormat = 'plain'): string {
  const rs = rows(r);
  if (format === 'csv') {
    const head = ['observation', 'pairs', 'support', 'tp', 'fp', 'fn', 'tn', 'excluded', ...METRICS.flatMap((m) => [m, `${m}_low`, `${m}_high`])];
    const lines = rs.map((x) =>
      [
        csvField(x.label),
        x.pairs ?? '',
        x.support ?? '',
        ...(x.counts ? [x.counts.tp, x.counts.fp, x.counts.fn, x.counts.tn, x.counts.excluded] : ['', '', '', '', '']),
        ...METRICS.flatMap((m) => [x.values[m] ?? '', x.ci[m].low ?? '', x.ci[m].high ?? '']),
      ].join(','),
    );
    return [head.join(','), ...lines].join('\n') + '\n';
  }
  const head = ['Observation', 'Pairs', 'Support', ...METRICS.map((m) => TITLES[m])];
  const body = rs.map((x) => [x.label, x.pairs === null ? '' : String(x.pairs), x.support === null ? '' : String(x.support), ...METRICS.map((m) => cell(x.values[m], x.ci[m]))]);
  const paper = r.paper ? `Published (Lee et al., Eur Radiol 2025, ${r.paper.testSet}): average F1 ${r.paper.averageF1.toFixed(2)} over ${r.paper.findings.join(', ')}.` : undefined;
  if (format === 'md') {
    const line = (c: string[]) => `| ${c.join(' | ')} |`;
    const out = [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...body.map(line), '', caption(r) + '.'];
    if (paper) out.push('', paper);
    return out.join('\n') + '\n';
  }
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (c: string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ').trimEnd();
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  const nObs = r.perObservation.length;
  const out = [fmt(head), sep, ...body.slice(0, nObs).map(fmt), sep, ...body.slice(nObs).map(fmt), '', caption(r) + '.'];
  if (paper) out.push(paper);
  return out.join('\n') + '\n';
}
