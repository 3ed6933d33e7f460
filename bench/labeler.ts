/**
 * The report labeler's speed: sentences per second over the hand-labelled
 * corpus, and whole reports per second (the corpus cut into 8-sentence
 * reports), against an anchor measured in the same process: keyword spotting,
 * one regular expression of every mention phrase run over the same sentences,
 * which is what the labeler costs before any negation or uncertainty scoping.
 * Runs alternate between labeler and anchor; medians are reported.
 *
 *   npm run bench:labeler [-- --runs 15 --min-ms 300]
 *
 * Prints one table and a JSON line.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { labelReport } from '../lib/index.js';
import { OBSERVATION_RULES } from '../lib/eval/rules.js';
import { repoRoot } from './machine.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '15' },
    'min-ms': { type: 'string', default: '300' },
  },
});
const runs = Number(values.runs);
const minMs = Number(values['min-ms']);
if (!Number.isInteger(runs) || runs < 1 || !Number.isFinite(minMs) || minMs <= 0) {
  process.stderr.write('usage: node dist/bench/labeler.js [--runs N] [--min-ms MS]\n');
  process.exit(2);
}

const corpus = path.join(repoRoot(), 'test/fixtures/labeler/corpus.jsonl');
const sentences = readFileSync(corpus, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => (JSON.parse(l) as { text: string }).text);
const reports: string[] = [];
for (let i = 0; i < sentences.length; i += 8) reports.push(sentences.slice(i, i + 8).join(' '));

// The anchor: every mention phrase as a plain word alternation (the phrase syntax's
// alternatives and prefixes approximated by \w*), counted per sentence.
const words = Object.values(OBSERVATION_RULES).flatMap((r) => [...r.mentions, ...(r.subjects ?? [])]);
const keyword = new RegExp(
  `\\b(?:${words.map((p) => p.replace(/[[\]]/g, '').split(' ').map((w) => `(?:${w.replace(/\*/g, '\\w*').replace(/[.+?^${}()\\/]/g, '\\$&')})`).join('\\s+')).join('|')})\\b`,
  'gi',
);
const spot = (s: string): number => s.match(keyword)?.length ?? 0;

/** Items per second for `fn` over `items`, repeating the pass until `minMs` has gone by. */
function rate<T>(items: readonly T[], fn: (x: T) => unknown): number {
  let n = 0;
  let sink = 0;
  const t0 = performance.now();
  let t = t0;
  do {
    for (const x of items) sink += fn(x) ? 1 : 0;
    n += items.length;
    t = performance.now();
  } while (t - t0 < minMs);
  if (sink < 0) console.log(sink);
  return (n * 1000) / (t - t0);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

// Warm-up: compile the regular expressions and let the JIT settle.
rate(sentences, labelReport);
rate(sentences, spot);

const labelS: number[] = [];
const anchorS: number[] = [];
const labelR: number[] = [];
for (let i = 0; i < runs; i++) {
  labelS.push(rate(sentences, labelReport));
  anchorS.push(rate(sentences, spot));
  labelR.push(rate(reports, labelReport));
}
const out = {
  sentences: sentences.length,
  reports: reports.length,
  runs,
  labeler_sentences_per_s: Math.round(median(labelS)),
  anchor_keyword_sentences_per_s: Math.round(median(anchorS)),
  labeler_over_anchor_time: median(anchorS) / median(labelS),
  labeler_reports_per_s: Math.round(median(labelR)),
};
console.log(`labeler        ${String(out.labeler_sentences_per_s).padStart(9)} sentences/s   ${String(out.labeler_reports_per_s).padStart(7)} reports/s (8 sentences)`);
console.log(`keyword anchor ${String(out.anchor_keyword_sentences_per_s).padStart(9)} sentences/s`);
console.log(`labeler time / anchor time: ${out.labeler_over_anchor_time.toFixed(2)} (median of ${runs} alternating runs over ${sentences.length} sentences)`);
console.log(JSON.stringify(out));
