// The batch commands through a real child process on the tiny model: a folder
// with good and bad images, stdin lists, --output with --resume, --json, ask,
// chat from a pipe, and bench.
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, runCli, writeImageFolder, writeTinyCxrModel } from './helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
const { model, mmproj } = await writeTinyCxrModel(modelDir);
const imgDir = path.join(dir, 'images');
const { good, bad } = await writeImageFolder(imgDir);
const env = cleanEnv(dir);
// Greedy and short: the tiny model is fast, the assertions do not depend on its words.
const fast = ['--model', modelDir, '--temperature', '0', '--max-tokens', '8', '--threads', '1'];

interface Rec {
  file: string;
  task: string;
  text: string | null;
  model: string;
  params: { temperature: number; topP: number; maxTokens: number; seed: string | null };
  timings: { encodeMs: number; prefillTokens: number; decodeTokens: number; preprocessMs: number } | null;
  error: string | null;
}

function parseJsonl(s: string): Rec[] {
  return s
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Rec);
}

t.test('a folder of 5 good and 3 bad images: 5 reports, 3 error records, exit 1', async (t) => {
  const r = await runCli(['report', imgDir, '--jsonl', ...fast], { env });
  t.equal(r.code, 1, r.stderr);
  const recs = parseJsonl(r.stdout);
  t.equal(recs.length, 8);
  // Input order: the folder sorted by name.
  t.same(
    recs.map((x) => path.basename(x.file)),
    ['a.png', 'b.jpg', 'c.webp', 'd.tif', 'e.png', 'notes.png', 'truncated.png', 'zero.png'],
  );
  const ok = recs.filter((x) => x.error === null);
  t.same(ok.map((x) => x.file).sort(), [...good].sort());
  for (const x of ok) {
    t.equal(x.task, 'report');
    t.equal(x.model, 'cxr-llava-v2.f32.gguf');
    t.type(x.text, 'string');
    t.ok(x.text!.length > 0, `${x.file} has text`);
    t.same(x.params, { temperature: 0, topP: 0.8, maxTokens: 8, seed: x.params.seed });
    t.match(x.params.seed, /^\d+$/);
    t.ok(x.timings!.decodeTokens >= 1 && x.timings!.decodeTokens <= 8, 'decoded at most --max-tokens');
    t.ok(x.timings!.encodeMs > 0 && x.timings!.prefillTokens > 16, 'image encoded and prefilled (16 image tokens + the prompt)');
  }
  // Greedy decoding depends on the image: the five images do not all give the same text.
  t.ok(new Set(ok.map((x) => x.text)).size > 1, 'different images, different reports');
  const errs = recs.filter((x) => x.error !== null);
  t.same(errs.map((x) => x.file).sort(), [...bad].sort());
  const byName = Object.fromEntries(errs.map((x) => [path.basename(x.file), x]));
  t.equal(byName['notes.png']!.error, `${bad[0]}: not a supported image (supported formats: PNG, JPEG, TIFF and WebP)`);
  t.equal(byName['truncated.png']!.error, `${bad[1]}: the PNG data is truncated or corrupt`);
  t.equal(byName['zero.png']!.error, `${bad[2]}: the file is empty`);
  for (const x of errs) {
    t.equal(x.text, null);
    t.equal(x.timings, null);
  }
  // stderr: one line per bad file and the summary; no stack traces, no progress bar.
  const lines = r.stderr.trimEnd().split('\n');
  t.same(lines.slice(0, 3), errs.map((x) => `error: ${x.error}`));
  t.match(lines[3], /^5 done, 3 failed in \d+:\d\d$/);
  t.equal(lines.length, 4);
  t.notMatch(r.stderr, /\x1b|\r|    at /);
});

t.test('the same seed reproduces the same text; the records carry it', async (t) => {
  const args = ['report', good[0]!, '--jsonl', '--model', modelDir, '--temperature', '1', '--max-tokens', '8', '--threads', '1'];
  const a = parseJsonl((await runCli([...args, '--seed', '18446744073709551615'], { env })).stdout)[0]!;
  const b = parseJsonl((await runCli([...args, '--seed', '18446744073709551615'], { env })).stdout)[0]!;
  t.equal(a.params.seed, '18446744073709551615');
  t.equal(a.text, b.text);
});

t.test('- reads a list of paths from stdin; a missing file is one failed record', async (t) => {
  const missing = path.join(dir, 'nope.png');
  const r = await runCli(['report', '-', '--jsonl', ...fast], { env, stdin: `${good[1]}\n\n${missing}\r\n${good[2]}\n` });
  t.equal(r.code, 1);
  const recs = parseJsonl(r.stdout);
  t.same(recs.map((x) => x.file), [good[1], missing, good[2]]);
  t.equal(recs[1]!.error, `${missing}: file not found`);
  t.ok(recs[0]!.text && recs[2]!.text);
});

t.test('quoted globs are expanded; a pattern without matches is a failed record', async (t) => {
  const r = await runCli(['ddx', path.join(imgDir, '[ab].*'), path.join(imgDir, '*.gif'), '--jsonl', ...fast], { env });
  t.equal(r.code, 1);
  const recs = parseJsonl(r.stdout);
  t.same(recs.map((x) => path.basename(x.file)), ['a.png', 'b.jpg', '*.gif']);
  t.equal(recs[0]!.task, 'ddx');
  t.equal(recs[2]!.error, `${path.join(imgDir, '*.gif')}: no file matches this pattern`);
});

t.test('--output writes one file per image atomically; --resume skips finished ones', async (t) => {
  const out = path.join(dir, 'out');
  const first = await runCli(['report', imgDir, '--output', out, ...fast], { env });
  t.equal(first.code, 1);
  t.equal(first.stdout, '', 'nothing on stdout with --output');
  t.same(readdirSync(out).sort(), ['a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt'], 'only successes are written, no temp files left');
  const before = Object.fromEntries(readdirSync(out).map((f) => [f, statSync(path.join(out, f)).mtimeMs]));
  t.ok(readFileSync(path.join(out, 'a.txt'), 'utf8').trim().length > 0);

  const second = await runCli(['report', imgDir, '--output', out, '--resume', ...fast], { env });
  // The bad files have no output, so they are tried (and fail) again; nothing else is done.
  t.equal(second.code, 1);
  t.match(second.stderr, /^0 done, 3 failed, 5 skipped \(output exists\) in /m);
  for (const f of readdirSync(out)) t.equal(statSync(path.join(out, f)).mtimeMs, before[f], `${f} not rewritten`);

  const goodOnly = await runCli(['report', ...good, '--output', out, '--resume', ...fast], { env });
  t.equal(goodOnly.code, 0, 'all skipped is success');
  t.match(goodOnly.stderr, /^0 done, 0 failed, 5 skipped/m);
});

t.test('--output --json writes .json records; two inputs that map to one file are a usage error', async (t) => {
  const out = path.join(dir, 'out-json');
  const r = await runCli(['report', good[0]!, good[1]!, '--output', out, '--json', ...fast], { env });
  t.equal(r.code, 0, r.stderr);
  t.same(readdirSync(out).sort(), ['a.json', 'b.json']);
  const rec = JSON.parse(readFileSync(path.join(out, 'a.json'), 'utf8')) as Rec;
  t.equal(rec.file, good[0]);
  t.equal(rec.error, null);

  const clash = path.join(dir, 'clash');
  writeFileSync(path.join(dir, 'a.jpg'), readFileSync(good[1]!));
  const u = await runCli(['report', good[0]!, path.join(dir, 'a.jpg'), '--output', clash, ...fast], { env });
  t.equal(u.code, 2);
  t.equal(u.stderr, `error: ${good[0]} and ${path.join(dir, 'a.jpg')} would both be written to ${path.join(clash, 'a.txt')}; rename one, or run them separately\n`);
});

t.test('--json prints one array; text mode prints a header per image', async (t) => {
  const j = await runCli(['report', good[0]!, good[3]!, '--json', ...fast], { env });
  t.equal(j.code, 0, j.stderr);
  const arr = JSON.parse(j.stdout) as Rec[];
  t.same(arr.map((x) => x.file), [good[0], good[3]]);
  t.ok(arr.every((x) => x.error === null && typeof x.text === 'string'));

  const txt = await runCli(['report', good[0]!, good[3]!, ...fast], { env });
  t.equal(txt.code, 0);
  const blocks = txt.stdout.split(/^==> (.*) <==\n/m).slice(1);
  t.same([blocks[0], blocks[2]], [good[0], good[3]]);
  t.equal(blocks[1]!.trim(), arr[0]!.text!.trim(), 'the same greedy text as --json');

  const one = await runCli(['report', good[0]!, ...fast], { env });
  t.equal(one.stdout.trim(), arr[0]!.text!.trim(), 'one image: no header');
});

t.test('ask answers a question; records carry it', async (t) => {
  const r = await runCli(['ask', good[0]!, 'Is there a pleural effusion?', '--jsonl', ...fast], { env });
  t.equal(r.code, 0, r.stderr);
  const [rec] = parseJsonl(r.stdout) as (Rec & { question: string })[];
  t.equal(rec!.task, 'ask');
  t.equal(rec!.question, 'Is there a pleural effusion?');
  t.ok(rec!.text);
});

t.test('the model is found by --model file, --mmproj, $CXR_LLAVA_MODEL; a missing one is one error line', async (t) => {
  const viaFile = await runCli(['report', good[0]!, ...fast, '--model', model, '--mmproj', mmproj], { env });
  t.equal(viaFile.code, 0, viaFile.stderr);
  const viaEnv = await runCli(['report', good[0]!, '--temperature', '0', '--max-tokens', '8'], { env: { ...env, CXR_LLAVA_MODEL: model } });
  t.equal(viaEnv.code, 0, viaEnv.stderr);
  t.equal(viaEnv.stdout, viaFile.stdout);
  const none = await runCli(['bench', '--runs', '1'], { env });
  t.equal(none.code, 1);
  t.match(none.stderr, /^error: No model of ECOFRI\/CXR-LLAVA-v2 in the cache at .*Run `cxr-llava pull`/);
  t.equal(none.stderr.split('\n').length, 2, 'one line');
  const bad = await runCli(['report', good[0]!, '--model', path.join(dir, 'missing.gguf')], { env });
  t.equal(bad.code, 1);
  t.equal(bad.stderr, `error: ${path.join(dir, 'missing.gguf')}: file not found (from --model)\n`);
  const verbose = await runCli(['report', good[0]!, '--model', imgDir, '--verbose'], { env });
  t.equal(verbose.code, 1);
  t.match(verbose.stderr, /no cxr-llava-v2\.<type>\.gguf in this folder\n\s+at /, '--verbose adds the stack');
});

t.test('chat from a pipe: one answer per line, follow-ups reuse the cache', async (t) => {
  const r = await runCli(['chat', good[0]!, ...fast, '--verbose'], { env, stdin: 'Is the heart enlarged?\n\nAny effusion?\n' });
  t.equal(r.code, 0, r.stderr);
  const answers = r.stdout.trimEnd().split('\n');
  t.equal(answers.length, 2, r.stdout);
  const prefills = [...r.stderr.matchAll(/^prefill (\d+) tok/gm)].map((m) => Number(m[1]));
  t.equal(prefills.length, 2);
  // The second turn computes only its own text, not the image and the first turn again.
  t.ok(prefills[1]! < prefills[0]! - 16, `follow-up prefill ${prefills[1]} < first ${prefills[0]} - 16 image tokens`);
});

t.test('bench prints medians', async (t) => {
  const r = await runCli(['bench', '--model', modelDir, '--runs', '2', '--tokens', '8', '--threads', '1', '--json'], { env });
  t.equal(r.code, 0, r.stderr);
  const b = JSON.parse(r.stdout) as { runs: number; encodeMs: number; prefillTokensPerSecond: number; decodeTokens: number; decodeTokensPerSecond: number };
  t.equal(b.runs, 2);
  t.equal(b.decodeTokens, 8);
  t.ok(b.encodeMs > 0 && b.prefillTokensPerSecond > 0 && b.decodeTokensPerSecond > 0);
  const text = await runCli(['bench', '--model', modelDir, '--runs', '1', '--tokens', '4', '--threads', '1'], { env });
  t.match(text.stdout, /^encode +[\d.]+ ms per image$/m);
  t.match(text.stdout, /^decode +[\d.]+ tok\/s \(4 tokens\)$/m);
});

t.test('DICOM in a batch: a lateral view is reported with a warning; --window and --voi are checked', async (t) => {
  const fixtures = path.join(path.dirname(new URL(import.meta.url).pathname), 'fixtures', 'dicom');
  const lateral = path.join(fixtures, 'lateral.dcm');
  const r = await runCli(['report', lateral, path.join(fixtures, 'same8.dcm'), '--jsonl', ...fast], { env });
  t.equal(r.code, 0, r.stderr);
  const recs = parseJsonl(r.stdout) as (Rec & { warnings?: string[]; sopInstanceUid?: string })[];
  t.equal(recs.length, 2);
  t.match(recs[0]!.warnings?.join('\n'), /view position is LL/, 'the lateral view is flagged in the record');
  t.match(recs[0]!.sopInstanceUid, /^[0-9.]+$/);
  t.ok(typeof recs[0]!.text === 'string' && recs[0]!.error === null, 'and the report is still produced');
  const w = await runCli(['report', lateral, '--window', '300,200', '--voi', '1', '--jsonl', ...fast], { env });
  t.equal(w.code, 0, w.stderr);
  const bad = await runCli(['report', lateral, '--window', '40', ...fast], { env });
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--window.*expected CENTER,WIDTH/);
  const badVoi = await runCli(['report', lateral, '--voi', '0', ...fast], { env });
  t.equal(badVoi.code, 2);
});
