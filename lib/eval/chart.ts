/**
 * The evaluation as a picture: F1 per finding as a dot, its 95% bootstrap
 * interval as whiskers, the macro and micro averages below, and, for
 * MIMIC-like data, the paper's published figures as reference marks.
 *
 * Drawn with Vega-Lite (compiled to Vega, rendered to SVG in Node without a
 * browser or canvas) and rasterised to PNG by sharp.
 */
import sharp from 'sharp';
import { parse as parseVega, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { EvalResult } from './score.js';

interface Datum {
  label: string;
  group: 'finding' | 'average';
  f1: number | null;
  low: number | null;
  high: number | null;
  note: string;
}

const FINDING = '#1f5aa6';
const AVERAGE = '#c0392b';
const PAPER = '#6b6b6b';

function span(v: number, low: number | null, high: number | null): string {
  return low === null || high === null ? v.toFixed(2) : `${v.toFixed(2)} (${low.toFixed(2)}–${high.toFixed(2)})`;
}

function data(r: EvalResult): Datum[] {
  const out: Datum[] = r.perObservation.map((m) => ({
    label: m.observation,
    group: 'finding',
    f1: m.f1,
    low: m.ci.f1.low,
    high: m.ci.f1.high,
    note: m.f1 === null ? `no F1 · n ${m.pairs} · ${m.support} pos.` : `${span(m.f1, m.ci.f1.low, m.ci.f1.high)} · n ${m.pairs} · ${m.support} pos.`,
  }));
  const avg = (label: string, f1: number | null, low: number | null, high: number | null): Datum => ({
    label,
    group: 'average',
    f1,
    low,
    high,
    note: f1 === null ? '–' : span(f1, low, high),
  });
  out.push(avg('Macro average', r.macro.f1, r.macro.ci.f1.low, r.macro.ci.f1.high));
  out.push(avg('Micro average', r.micro.f1, r.micro.ci.f1.low, r.micro.ci.f1.high));
  if (r.paper) out.push(avg("Macro, the paper's findings", r.paper.ours.f1, r.paper.ours.ci.f1.low, r.paper.ours.ci.f1.high));
  return out;
}

/** The Vega-Lite specification of the chart: the dots and whiskers, and beside them the numbers. */
export function chartSpec(r: EvalResult, title = 'F1 per finding'): TopLevelSpec {
  const values = data(r);
  const order = values.map((d) => d.label);
  const y = { field: 'label', type: 'nominal' as const, sort: order, scale: { domain: order }, title: null, axis: { labelFontSize: 12, labelLimit: 260, ticks: false, domain: false, labelPadding: 8 } };
  const x = { type: 'quantitative' as const, scale: { domain: [0, 1], nice: false }, axis: { values: [0, 0.2, 0.4, 0.6, 0.8, 1], format: '.1f', title: 'F1 (dot) and 95% bootstrap interval (whiskers)', titleFontWeight: 'normal' as const, titleFontSize: 12, labelFontSize: 11, grid: true } };
  const color = { field: 'group', type: 'nominal' as const, scale: { domain: ['finding', 'average'], range: [FINDING, AVERAGE] }, legend: null };
  const layers: Record<string, unknown>[] = [
    { transform: [{ filter: 'datum.low !== null' }], mark: { type: 'rule', strokeWidth: 2 }, encoding: { y, x: { ...x, field: 'low' }, x2: { field: 'high' }, color } },
    { transform: [{ filter: 'datum.low !== null' }], mark: { type: 'tick', thickness: 2, size: 10 }, encoding: { y, x: { ...x, field: 'low' }, color } },
    { transform: [{ filter: 'datum.high !== null' }], mark: { type: 'tick', thickness: 2, size: 10 }, encoding: { y, x: { ...x, field: 'high' }, color } },
    { transform: [{ filter: 'datum.f1 !== null' }], mark: { type: 'point', filled: true, size: 70, opacity: 1 }, encoding: { y, x: { ...x, field: 'f1' }, color } },
  ];
  const subtitle = [`${r.scored} studies · definite labels only (uncertain and unmentioned left out)`, `${r.bootstrap.resamples} bootstrap resamples of studies (seed ${r.bootstrap.seed}) · n = scored pairs`];
  if (r.paper) {
    const marks = Object.entries(r.paper.perFindingF1).map(([label, f1]) => ({ label, f1 }));
    layers.push({
      data: { values: [{ v: r.paper.averageF1, t: `paper ${r.paper.averageF1.toFixed(2)}` }] },
      layer: [
        { mark: { type: 'rule', strokeDash: [6, 4], strokeWidth: 1.5, color: PAPER }, encoding: { x: { ...x, field: 'v' } } },
        { mark: { type: 'text', dy: -6, fontSize: 11, color: PAPER, baseline: 'bottom' }, encoding: { x: { ...x, field: 'v' }, y: { value: 0 }, text: { field: 't' } } },
      ],
    });
    if (marks.length > 0) {
      layers.push({ data: { values: marks }, mark: { type: 'point', shape: 'diamond', filled: false, size: 90, strokeWidth: 1.5, color: PAPER }, encoding: { y, x: { ...x, field: 'f1' } } });
    }
    subtitle.push(`Dashed: the paper's average F1, ${r.paper.testSet}, ${r.paper.findings.length} findings (Lee et al., Eur Radiol 2025)`);
    subtitle.push(marks.length === 0 ? 'Its per-finding F1 values are not marked: we could not find them published' : "Diamonds: the paper's per-finding F1");
  }
  const numbers = {
    width: 250,
    title: { text: 'F1 (95% CI) · n pairs · reference positives', fontSize: 11, fontWeight: 'normal', anchor: 'start', color: '#555' },
    mark: { type: 'text', align: 'left', fontSize: 11, color: '#333' },
    encoding: { y: { ...y, axis: null }, x: { value: 4 }, text: { field: 'note' } },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle, anchor: 'start', fontSize: 15, subtitleFontSize: 11, subtitleColor: '#555', offset: 14 },
    background: 'white',
    padding: 16,
    data: { values },
    hconcat: [{ width: 420, height: { step: 24 }, layer: layers }, { ...numbers, height: { step: 24 } }],
    spacing: 12,
    config: { font: 'DejaVu Sans, Helvetica, Arial, sans-serif', view: { stroke: null }, axis: { gridColor: '#e6e6e6' } },
  } as unknown as TopLevelSpec;
}

/** The chart as SVG text. */
export async function renderChartSvg(r: EvalResult, title?: string): Promise<string> {
  const view = new View(parseVega(compile(chartSpec(r, title)).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The chart as PNG bytes, rasterised from the SVG at twice its size (sharp / librsvg). */
export async function renderChartPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg), { density: 144 }).png().toBuffer();
}
