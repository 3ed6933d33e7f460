/**
 * The report labeler: free text in, CheXpert's 14 observations out, each
 * positive, negative, uncertain or absent.
 *
 * It works as the published rule-based labelers do, in three steps:
 * 1. mentions: each sentence is searched for the phrases of every observation
 *    (`rules.ts`), and for structures whose stated state is a finding ("heart
 *    size is normal");
 * 2. classification: a mention reached by a negation cue is negative, by an
 *    uncertainty cue uncertain (the nearer cue wins), otherwise positive. A
 *    cue reaches forward (pre-trigger) or back (post-trigger) to the end of
 *    its clause: a terminator ("but", "which"), `;`, or a comma that opens a
 *    new clause; pseudo-triggers ("no change in") negate nothing;
 * 3. aggregation over the report, with CheXpert's precedence: positive if any
 *    mention is positive, else uncertain if any is uncertain, else negative.
 *    "No Finding" is positive when no pathology is positive or uncertain
 *    (support devices do not count), and absent otherwise.
 *
 * Matching is regular expressions over the lowercased text: the phrases are
 * short and fixed, so a tokenizer or parser would add a dependency without
 * changing what is found.
 */
import { OBSERVATIONS, type Findings, type Label, type Observation } from './observations.js';
import {
  ABBREVIATIONS,
  CLAUSE_OPENERS,
  CLAUSE_PUNCTUATION,
  CUES,
  NO_FINDING_IGNORES,
  OBSERVATION_RULES,
  SUBJECT_REACH,
  TERMINATORS,
  type CueDirection,
  type CueEffect,
  type Phrase,
} from './rules.js';

/** One mention found in a report, with the reason for its label. */
export interface LabeledMention {
  observation: Exclude<Observation, 'No Finding'>;
  label: Label;
  /** The mention as written in the report. */
  text: string;
  /** Offsets of `text` in the report. */
  start: number;
  end: number;
  /** The sentence it was found in. */
  sentence: string;
  /** The cue that made it negative or uncertain, as written; absent for a positive mention. */
  cue?: string;
}

/** What `explainReport` returns: the labels and the mentions behind them. */
export interface LabelExplanation {
  findings: Findings;
  mentions: LabeledMention[];
}

interface Span {
  start: number;
  end: number;
}

interface Cue extends Span {
  effect: CueEffect;
  direction: CueDirection;
  carriesNegation: boolean;
}

type State = 'abnormal' | 'normal' | 'borderline';

const WORD = '[a-z0-9]';

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** One word slot of a phrase as a regular expression (see the phrase syntax in rules.ts). */
function slotSource(slot: string): string {
  const alternatives = slot.split('|').map((w) => (w.endsWith('*') ? `${escapeRegExp(w.slice(0, -1))}${WORD}*` : escapeRegExp(w)));
  return alternatives.length === 1 ? alternatives[0]! : `(?:${alternatives.join('|')})`;
}

function phraseSource(phrase: Phrase): string {
  let out = '';
  let joined = false;
  for (const raw of phrase.trim().split(/\s+/)) {
    const optional = raw.startsWith('[') && raw.endsWith(']');
    const slot = slotSource(optional ? raw.slice(1, -1) : raw);
    if (optional) out += joined ? `(?:\\s+${slot})?` : `(?:${slot}\\s+)?`;
    else {
      out += joined ? `\\s+${slot}` : slot;
      joined = true;
    }
  }
  return out;
}

/**
 * A global regular expression for a list of phrases, longest first so that at
 * one position the longer phrase wins; matched on whole words only.
 */
function compileList(phrases: readonly Phrase[]): RegExp | undefined {
  if (phrases.length === 0) return undefined;
  const sources = [...phrases].sort((a, b) => b.length - a.length).map(phraseSource);
  return new RegExp(`(?<!${WORD})(?:${sources.join('|')})(?!${WORD})`, 'g');
}

function spans(re: RegExp | undefined, text: string): Span[] {
  if (!re) return [];
  const out: Span[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) {
      re.lastIndex++;
      continue;
    }
    out.push({ start: m.index, end: m.index + m[0].length });
  }
  return out;
}

const overlaps = (a: Span, b: Span): boolean => a.start < b.end && b.start < a.end;
const inside = (a: Span, b: Span): boolean => a.start >= b.start && a.end <= b.end;

interface CompiledObservation {
  observation: Exclude<Observation, 'No Finding'>;
  mentions?: RegExp;
  subjects?: RegExp;
  states: { state: State; re: RegExp }[];
  exclude?: RegExp;
}

const COMPILED: CompiledObservation[] = OBSERVATIONS.filter((o): o is Exclude<Observation, 'No Finding'> => o !== 'No Finding').map((observation) => {
  const r = OBSERVATION_RULES[observation];
  const states: { state: State; re: RegExp }[] = [];
  for (const state of ['abnormal', 'normal', 'borderline'] as const) {
    const re = compileList(r[state] ?? []);
    if (re) states.push({ state, re });
  }
  const c: CompiledObservation = { observation, states };
  const mentions = compileList(r.mentions);
  const subjects = compileList(r.subjects ?? []);
  const exclude = compileList(r.exclude ?? []);
  if (mentions) c.mentions = mentions;
  if (subjects) c.subjects = subjects;
  if (exclude) c.exclude = exclude;
  return c;
});

const CUE_LISTS = CUES.map((c) => ({ effect: c.effect, direction: c.direction, carriesNegation: c.carriesNegation === true, re: compileList(c.phrases)! }));
const TERMINATOR_RE = compileList(TERMINATORS)!;
const OPENER_RE = new RegExp(`,\\s*(?=(?:${[...CLAUSE_OPENERS].sort((a, b) => b.length - a.length).map(phraseSource).join('|')})(?!${WORD}))`, 'g');
const PUNCTUATION_RE = new RegExp(`[${CLAUSE_PUNCTUATION.map(escapeRegExp).join('')}]`, 'g');
const ABBREVIATION_SET = new Set(ABBREVIATIONS);

/** Lowercases ASCII and turns dashes and line breaks into spaces, keeping every offset. */
function normalize(text: string): string {
  return text.replace(/[A-Z]/g, (c) => c.toLowerCase()).replace(/[-\u2010-\u2015_\t\r\n]/g, ' ');
}

/**
 * The longest sentence labelled as one. Real report sentences are far
 * shorter; text without full stops (a model that never ends a sentence) is cut
 * at a comma or space before this, so the work per sentence stays bounded.
 */
const MAX_SENTENCE = 1000;

/**
 * Sentence spans of a report: a sentence ends at `.`, `!` or `?` followed by
 * a space or the end (not after an abbreviation, not inside a number), at a
 * blank line, and before a line that starts a list item.
 */
export function splitSentences(text: string): Span[] {
  const out: Span[] = [];
  let start = 0;
  const push = (end: number): void => {
    while (end - start > MAX_SENTENCE) {
      const window = text.slice(start, start + MAX_SENTENCE);
      const cut = Math.max(window.lastIndexOf(', '), window.lastIndexOf('; '));
      const at = cut > MAX_SENTENCE / 2 ? cut + 1 : window.lastIndexOf(' ') > 0 ? window.lastIndexOf(' ') : MAX_SENTENCE;
      pushSpan(start + at);
    }
    pushSpan(end);
  };
  const pushSpan = (end: number): void => {
    const s = text.slice(start, end);
    const lead = s.length - s.trimStart().length;
    const trail = s.length - s.trimEnd().length;
    if (s.trim() !== '') out.push({ start: start + lead, end: end - trail });
    start = end;
  };
  const re = /[.!?]+(?=\s|$)|\n[ \t]*\n|\n(?=[ \t]*(?:[-*\u2022]|\d+[.)])\s)/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0][0] === '.' && m[0].length === 1) {
      const word = /([A-Za-z.]+)$/.exec(text.slice(Math.max(start, m.index - 12), m.index));
      if (word && ABBREVIATION_SET.has(word[1]!.toLowerCase())) {
        // "No. 2" ends nothing, but "... no." at the end of a sentence does: only skip when a digit follows.
        if (word[1]!.toLowerCase() !== 'no' || /^\s*\d/.test(text.slice(m.index + 1))) continue;
      }
    }
    push(m.index + m[0].length);
  }
  push(text.length);
  return out;
}

/** Picks non-overlapping spans, longest first, then leftmost. */
function longestFirst<T extends Span>(items: T[]): T[] {
  const sorted = [...items].sort((a, b) => b.end - b.start - (a.end - a.start) || a.start - b.start);
  const kept: T[] = [];
  for (const s of sorted) if (!kept.some((k) => overlaps(k, s))) kept.push(s);
  return kept.sort((a, b) => a.start - b.start);
}

interface RawMention extends Span {
  observation: Exclude<Observation, 'No Finding'>;
  /** The label before cues: positive for a finding, negative/uncertain for a stated normal/borderline state. */
  base: Label;
  /** Whether a negation cue may make it negative (a stated normal state may be hedged, but "not normal" is not a negative). */
  negatable: boolean;
}

function wordsBetween(s: string, a: number, b: number): number {
  const gap = s.slice(Math.min(a, b), Math.max(a, b)).trim();
  return gap === '' ? 0 : gap.split(/\s+/).length;
}

function findMentions(s: string, blocked: (a: number, b: number, commas: boolean) => boolean): RawMention[] {
  const out: RawMention[] = [];
  for (const c of COMPILED) {
    const found = spans(c.mentions, s);
    const subjectsFound = spans(c.subjects, s);
    if (found.length === 0 && subjectsFound.length === 0) continue;
    const excluded = spans(c.exclude, s);
    const ok = (m: Span): boolean => !excluded.some((e) => overlaps(m, e) && (inside(m, e) || inside(e, m)));
    for (const m of found) if (ok(m)) out.push({ ...m, observation: c.observation, base: 'positive', negatable: true });
    const subjects = subjectsFound.filter(ok);
    if (subjects.length === 0) continue;
    const states = longestFirst(c.states.flatMap(({ state, re }) => spans(re, s).map((sp) => ({ ...sp, state }))));
    for (const subj of subjects) {
      let best: { span: Span & { state: State }; distance: number } | undefined;
      for (const st of states) {
        if (overlaps(st, subj)) continue;
        const after = st.start >= subj.end;
        const [a, b] = after ? [subj.end, st.start] : [st.end, subj.start];
        // No word of 30 letters stands between a subject and its state: skip the far ones unread.
        if (b - a > SUBJECT_REACH * 30) continue;
        const distance = wordsBetween(s, a, b);
        if (distance > SUBJECT_REACH || blocked(a, b, false)) continue;
        // Nearest wins; at equal distance the word after the subject ("heart size is normal").
        if (!best || distance < best.distance || (distance === best.distance && after)) best = { span: st, distance };
      }
      if (!best) continue;
      const { state } = best.span;
      out.push({
        start: best.span.start,
        end: best.span.end,
        observation: c.observation,
        base: state === 'abnormal' ? 'positive' : state === 'normal' ? 'negative' : 'uncertain',
        negatable: state !== 'normal',
      });
    }
  }
  return out;
}

/** Labels the mentions of one sentence (`s` is the normalized sentence). */
function labelSentence(s: string): { mention: RawMention; label: Label; cue?: Cue }[] {
  // Cues and clause boundaries are found only once something asks: most of a
  // sentence's cost, and a sentence without a mention never needs them.
  let cueList: Cue[] | undefined;
  let boundaries: number[] | undefined;
  let commas: number[] | undefined;
  const cuesOf = (): Cue[] =>
    (cueList ??= longestFirst(
      CUE_LISTS.flatMap(({ effect, direction, carriesNegation, re }) => spans(re, s).map((sp): Cue => ({ ...sp, effect, direction, carriesNegation }))),
    ));
  /** Whether a clause boundary (or, with `withCommas`, any comma) lies in [a, b). */
  const blocked = (a: number, b: number, withCommas: boolean): boolean => {
    if (!boundaries) {
      const cues = cuesOf();
      boundaries = [];
      for (const t of spans(TERMINATOR_RE, s)) if (!cues.some((c) => overlaps(c, t))) boundaries.push(t.start);
      for (const p of spans(PUNCTUATION_RE, s)) boundaries.push(p.start);
      OPENER_RE.lastIndex = 0;
      for (let m = OPENER_RE.exec(s); m !== null; m = OPENER_RE.exec(s)) boundaries.push(m.index);
      commas = [];
      for (let i = s.indexOf(','); i >= 0; i = s.indexOf(',', i + 1)) commas.push(i);
    }
    return boundaries.some((x) => x >= a && x < b) || (withCommas && commas!.some((x) => x >= a && x < b));
  };

  const out: { mention: RawMention; label: Label; cue?: Cue }[] = [];
  const mentions = findMentions(s, blocked);
  if (mentions.length === 0) return out;
  const cues = cuesOf();
  for (const mention of mentions) {
    let best: { cue: Cue; distance: number } | undefined;
    const consider = (cue: Cue, distance: number): void => {
      if (cue.effect === 'pseudo') return;
      if (!best || distance < best.distance || (distance === best.distance && cue.effect === 'uncertainty')) best = { cue, distance };
    };
    for (let i = 0; i < cues.length; i++) {
      const cue = cues[i]!;
      if (overlaps(cue, mention)) continue;
      if (cue.end <= mention.start && cue.direction !== 'post') {
        // Forward scope: no boundary and no other cue before the mention.
        const next = cues[i + 1];
        if (blocked(cue.end, mention.start, false) || (next && next.start < mention.start && next.start >= cue.end)) continue;
        // "No consolidation to suggest pneumonia": a linking hedge inside a negation's scope passes the negation on.
        const before = cues[i - 1];
        if (cue.carriesNegation && before && before.effect === 'negation' && before.direction !== 'post' && !blocked(before.end, cue.start, false)) {
          consider(before, mention.start - cue.end);
          continue;
        }
        consider(cue, mention.start - cue.end);
      } else if (cue.start >= mention.end && cue.direction !== 'pre') {
        // Backward scope: no boundary, comma or other cue between the mention and the cue.
        const prev = cues[i - 1];
        if (blocked(mention.end, cue.start + 1, true) || (prev && prev.start >= mention.end && prev.end <= cue.start)) continue;
        consider(cue, cue.start - mention.end);
      }
    }
    let label: Label = mention.base;
    const chosen = best as { cue: Cue; distance: number } | undefined;
    if (chosen && chosen.cue.effect === 'uncertainty') label = 'uncertain';
    else if (chosen && chosen.cue.effect === 'negation' && mention.negatable) label = 'negative';
    const applied = chosen && label !== mention.base ? chosen.cue : undefined;
    out.push(applied ? { mention, label, cue: applied } : { mention, label });
  }
  return out;
}

/** CheXpert's precedence across mentions of one observation. */
function aggregate(labels: readonly Label[]): Label | undefined {
  if (labels.includes('positive')) return 'positive';
  if (labels.includes('uncertain')) return 'uncertain';
  if (labels.includes('negative')) return 'negative';
  return undefined;
}

/**
 * Labels a report and says why: every mention found, its label, and the cue
 * that set it. `findings` is what `labelReport` returns.
 */
export function explainReport(text: string): LabelExplanation {
  return run(text, true);
}

function run(text: string, explain: boolean): LabelExplanation {
  if (typeof text !== 'string') throw new TypeError(`Expected a string for the report text but received ${text === null ? 'null' : typeof text}`);
  const norm = normalize(text);
  const mentions: LabeledMention[] = [];
  const byObservation = new Map<Observation, Label[]>();
  for (const sent of splitSentences(norm)) {
    const s = norm.slice(sent.start, sent.end);
    for (const { mention, label, cue } of labelSentence(s)) {
      const labels = byObservation.get(mention.observation);
      if (labels) labels.push(label);
      else byObservation.set(mention.observation, [label]);
      if (!explain) continue;
      const m: LabeledMention = {
        observation: mention.observation,
        label,
        text: text.slice(sent.start + mention.start, sent.start + mention.end),
        start: sent.start + mention.start,
        end: sent.start + mention.end,
        sentence: text.slice(sent.start, sent.end),
      };
      if (cue) m.cue = text.slice(sent.start + cue.start, sent.start + cue.end);
      mentions.push(m);
    }
  }
  mentions.sort((a, b) => a.start - b.start);
  const findings: Findings = {};
  const pathology = OBSERVATIONS.some(
    (o) => o !== 'No Finding' && !NO_FINDING_IGNORES.includes(o) && ['positive', 'uncertain'].includes(aggregate(byObservation.get(o) ?? []) ?? ''),
  );
  for (const o of OBSERVATIONS) {
    if (o === 'No Finding') {
      if (!pathology && /[a-z]/.test(norm)) findings[o] = 'positive';
      continue;
    }
    const label = aggregate(byObservation.get(o) ?? []);
    if (label) findings[o] = label;
  }
  return { findings, mentions };
}

/**
 * The CheXpert observations a radiology report states, each `positive`,
 * `negative` or `uncertain`; observations it does not mention are left out.
 * Keys come in CheXpert's column order.
 *
 * ```ts
 * labelReport('Small left pleural effusion. No pneumothorax. Cannot exclude pneumonia.');
 * // { Pneumonia: 'uncertain', Pneumothorax: 'negative', 'Pleural Effusion': 'positive' }
 * ```
 */
export function labelReport(text: string): Findings {
  return run(text, false).findings;
}
