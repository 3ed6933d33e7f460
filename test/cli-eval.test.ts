// `cxr-llava eval` end to end through the CLI: the tiny model's reports on a
// manifest of its own images give a table, eval.json and a PNG (opened with
// sharp); --jsonl scores known reports with hand-counted results; --resume,
// --shard and the formats; bad manifests and bad options.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { cleanEnv, imageBytes, runCli, runInPty, writeTinyCxrModel } from './helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-eval-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
mkdirSync(path.join(dir, 'images'));
for (let i = 1; i <= 6; i++) writeFileSync(path.join(dir, 'images', `s${i}.png`), await imageBytes(64 + 8 * i, 72, i));
const env = cleanEnv(dir);
const fast = ['--model', modelDir, '--temperature', '0', '--max-tokens', '8', '--threads', '1', '--seed', '3', '--bootstrap', '200'];

// Three studies with CheXpert labels, three with reference reports; MIMIC-like.
const header = 'image,dataset,report,Cardiomegaly,Pleural Effusion,Edema,Pneumothorax';
const manifest = [
  header,
  'images/s1.png,mimic-cxr,,1,0,,0',
  'images/s2.png,mimic-cxr,,0,1,-1,',
  'images/s3.png,mimic-cxr,,1,1,0,0',
  'images/s4.png,mimic-cxr,"Moderate cardiomegaly. No pleural effusion or pneumothorax.",,,,',
  'images/s5.png,mimic-cxr,"The heart size is normal. Small right pleural effusion.",,,,',
  'images/s6.png,mimic-cxr,"No acute cardiopulmonary process.",,,,',
].join('\n');
writeFileSync(path.join(dir, 'test.csv'), manifest + '\n');

interface EvalJson {
  studies: number;
  scored: number;
  missing: string[];
  failed: string[];
  bootstrap: { resamples: number; seed: number };
  perObservation: { observation: string; counts: { tp: number; fp: number; fn: number; tn: number; excluded: number }; f1: number | null; ci: { f1: { low: number | null; high: number | null } } }[];
  macro: { f1: number | null };
  paper?: { averageF1: number };
}

t.test('eval on the tiny model: a table on stdout, eval.json, and a PNG that is not blank', async (t) => {
  const out = path.join(dir, 'ev');
  const r = await runCli(['eval', 'test.csv', '--output', out, ...fast], { env, cwd: dir, timeoutMs: 120_000 });
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.match(lines[0], /^Observation\s+Pairs\s+Support\s+Precision\s+Recall\s+F1\s+Specificity$/);
  for (const o of ['No Finding', 'Cardiomegaly', 'Support Devices', 'Macro average', 'Micro average', "Macro, the paper's findings"]) {
    t.ok(lines.some((l) => l.startsWith(o)), `a row for ${o}`);
  }
  t.match(r.stdout, /6 of 6 studies scored; definite labels only .*200 resamples of studies \(seed 3\)/);
  t.match(r.stdout, /Published \(Lee et al\., Eur Radiol 2025, MIMIC-CXR internal test set\): average F1 0\.81/);
  t.notMatch(r.stdout + r.stderr, /\x1b|\r/, 'no progress bar or colour into a pipe');
  t.match(r.stderr, /6 done, 0 failed in/);
  const doc = JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8')) as EvalJson;
  t.equal(doc.studies, 6);
  t.equal(doc.scored, 6);
  t.equal(doc.bootstrap.resamples, 200);
  t.equal(doc.perObservation.length, 14);
  t.equal(doc.paper?.averageF1, 0.81);
  t.equal(readdir(path.join(out, 'reports')).length, 6, 'one record per image under reports/');
  const svg = readFileSync(path.join(out, 'eval.svg'), 'utf8');
  t.match(svg, /^<svg /);
  t.match(svg, /Cardiomegaly/);
  const png = sharp(path.join(out, 'eval.png'));
  const meta = await png.metadata();
  t.equal(meta.format, 'png');
  t.ok(meta.width! >= 1000 && meta.height! >= 600, `${meta.width}x${meta.height}`);
  const stats = await png.stats();
  t.ok(stats.channels[0]!.stdev > 10, `not blank: stdev ${stats.channels[0]!.stdev}`);
  t.ok(stats.channels[0]!.min < 100, 'has dark marks (text, axes)');

  // --resume: nothing is generated again, the same numbers come out.
  const again = await runCli(['eval', 'test.csv', '--output', out, '--resume', '--json', ...fast], { env, cwd: dir, timeoutMs: 120_000 });
  t.equal(again.code, 0, again.stderr);
  t.match(again.stderr, /0 done, 0 failed, 6 skipped \(output exists\) in \d+:\d\d/);
  const doc2 = JSON.parse(again.stdout) as EvalJson;
  t.same(doc2.perObservation, doc.perObservation);
});

t.test('--parallel 4 gives the reports and eval.json metrics of --parallel 1 (temperature 0)', async (t) => {
  const longer = fast.map((a, i) => (fast[i - 1] === '--max-tokens' ? '24' : a));
  const run = async (n: number): Promise<{ doc: EvalJson; texts: Map<string, string> }> => {
    const out = path.join(dir, `ev-par${n}`);
    const r = await runCli(['eval', 'test.csv', '--output', out, '--parallel', String(n), ...longer], { env, cwd: dir, timeoutMs: 180_000 });
    t.equal(r.code, 0, r.stderr);
    t.match(r.stderr, /6 done, 0 failed in/);
    const texts = new Map<string, string>();
    for (const f of readdir(path.join(out, 'reports'))) texts.set(path.relative(out, f), (JSON.parse(readFileSync(f, 'utf8')) as { text: string }).text);
    return { doc: JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8')) as EvalJson, texts };
  };
  const one = await run(1);
  const four = await run(4);
  t.equal(one.texts.size, 6);
  t.ok(new Set(one.texts.values()).size > 1, 'the images give different reports');
  t.same([...four.texts.entries()].sort(), [...one.texts.entries()].sort(), 'every report word for word');
  t.same(four.doc.perObservation, one.doc.perObservation, 'per-observation counts, metrics and intervals');
  t.same(four.doc.macro, one.doc.macro, 'macro average');
  t.equal(four.doc.scored, one.doc.scored);
  const bad = await runCli(['eval', 'test.csv', '--jsonl', 'gen.jsonl', '--parallel', '2'], { env, cwd: dir });
  t.equal(bad.code, 2, 'with --jsonl nothing runs: a usage error');
  t.match(bad.stderr, /--parallel applies when eval runs the model/);
});

function readdir(d: string): string[] {
  return readdirSync(d, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
}

t.test('--jsonl: known reports, hand-counted confusion matrices', async (t) => {
  // Generated reports for the six studies (as `report --jsonl` writes them), one of them failed.
  const gen = [
    { file: 'images/s1.png', text: 'There is cardiomegaly. No pleural effusion. No pneumothorax.' },
    { file: 'images/s2.png', text: 'Large left pleural effusion. The heart size is normal.' },
    { file: 'images/s3.png', text: 'Cardiomegaly. No pleural effusion.' },
    { file: path.join(dir, 'images/s4.png'), text: 'Cardiomegaly. Small pleural effusion.' },
    // Written on another machine, under another mount point: matched by its trailing path.
    { file: '/scratch/job42/images/s5.png', text: 'Possible small pleural effusion.' },
    { file: 'images/s6.png', text: null, error: 'images/s6.png: the file is empty' },
  ].map((g) => ({ task: 'report', model: 'm.gguf', params: {}, timings: null, error: null, ...g }));
  writeFileSync(path.join(dir, 'gen.jsonl'), gen.map((g) => JSON.stringify(g)).join('\n') + '\n');
  const out = path.join(dir, 'ev-jsonl');
  const r = await runCli(['eval', 'test.csv', '--jsonl', 'gen.jsonl', '--output', out, '--json', '--bootstrap', '100'], { env, cwd: dir });
  t.equal(r.code, 1, 'a failed study: exit 1');
  t.match(r.stderr, /^failed: images\/s6\.png: the file is empty$/m);
  const doc = JSON.parse(r.stdout) as EvalJson;
  t.equal(doc.scored, 5);
  t.same(doc.failed, ['images/s6.png: the file is empty']);
  const by = Object.fromEntries(doc.perObservation.map((m) => [m.observation, m]));
  // Cardiomegaly: s1 ref+ gen+ TP; s2 ref- gen- (heart size normal) TN; s3 ref+ gen+ TP; s4 ref+ (report) gen+ TP;
  // s5 ref- (heart size normal) gen absent -> left out.
  t.same(by['Cardiomegaly']!.counts, { tp: 3, fp: 0, fn: 0, tn: 1, excluded: 1 });
  t.equal(by['Cardiomegaly']!.f1, 1);
  // Pleural effusion: s1 ref- gen- TN; s2 ref+ gen+ TP; s3 ref+ gen- FN; s4 ref- gen+ FP; s5 ref+ gen uncertain -> left out.
  t.same(by['Pleural Effusion']!.counts, { tp: 1, fp: 1, fn: 1, tn: 1, excluded: 1 });
  t.equal(by['Pleural Effusion']!.f1, 0.5);
  // Pneumothorax: s1 ref- gen- TN; s3 ref- gen absent; s4 ref- gen absent; others absent.
  t.same(by['Pneumothorax']!.counts, { tp: 0, fp: 0, fn: 0, tn: 1, excluded: 4 });
  t.equal(by['Pneumothorax']!.f1, null, 'no positive pair either way: F1 undefined');
  t.ok(existsSync(path.join(out, 'eval.png')));
  t.notOk(existsSync(path.join(out, 'reports')), 'nothing was run');

  const md = await runCli(['eval', 'test.csv', '--jsonl', 'gen.jsonl', '--output', out, '--format', 'md', '--bootstrap', '50', '-q'], { env, cwd: dir });
  t.match(md.stdout, /^\| Observation \| Pairs \| Support \| Precision \| Recall \| F1 \| Specificity \|\n\| --- \| ---: \|/);
  t.match(md.stdout, /^\| Cardiomegaly \| 4 \| 3 \| 1\.000 \(1\.00–1\.00\) \|/m);
  t.equal(md.stderr.match(/^failed:/gm)?.length, 1, '-q keeps the problems');
  const csv = await runCli(['eval', 'test.csv', '--jsonl', 'gen.jsonl', '--output', out, '--format', 'csv', '--bootstrap', '50', '-q'], { env, cwd: dir });
  const rows = csv.stdout.trimEnd().split('\n');
  t.equal(rows[0], 'observation,pairs,support,tp,fp,fn,tn,excluded,precision,precision_low,precision_high,recall,recall_low,recall_high,f1,f1_low,f1_high,specificity,specificity_low,specificity_high');
  t.match(rows.find((l) => l.startsWith('Pleural Effusion,'))!, /^Pleural Effusion,4,2,1,1,1,1,1,0\.5,/);
  t.equal(rows.length, 1 + 14 + 3);
});

t.test('--shard splits the manifest; the shards share reports/, and a last --resume run scores all', async (t) => {
  const out = path.join(dir, 'ev-shards');
  let done = 0;
  for (const k of [1, 2]) {
    const r = await runCli(['eval', 'test.csv', '--output', out, '--resume', '--shard', `${k}/2`, ...fast], { env, cwd: dir, timeoutMs: 120_000 });
    t.equal(r.code, 0, r.stderr);
    t.ok(existsSync(path.join(out, `eval.shard-${k}-of-2.json`)));
    done += (JSON.parse(readFileSync(path.join(out, `eval.shard-${k}-of-2.json`), 'utf8')) as EvalJson).studies;
  }
  t.equal(done, 6, 'the two shards hold the six studies between them');
  const all = await runCli(['eval', 'test.csv', '--output', out, '--resume', ...fast], { env, cwd: dir, timeoutMs: 120_000 });
  t.equal(all.code, 0);
  t.match(all.stderr, /6 skipped \(output exists\)/);
  t.equal((JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8')) as EvalJson).scored, 6);
});

t.test('bad manifests and options: clear errors before any work', async (t) => {
  writeFileSync(path.join(dir, 'bad.csv'), 'image,Cardiomegaly,Edema\nimages/s1.png,2,\n,1,0\nimages/s2.png,,\nimages/s2.png,1,\n');
  const r = await runCli(['eval', 'bad.csv', '--output', path.join(dir, 'ev-bad'), ...fast], { env, cwd: dir });
  t.equal(r.code, 1);
  t.match(r.stderr, /bad\.csv: 3 problems:/);
  t.match(r.stderr, /line 2: Cardiomegaly: Expected 1, 0, -1 or blank for a CheXpert label but received "2"/);
  t.match(r.stderr, /line 3: no image path/);
  t.match(r.stderr, /line 5: images\/s2\.png is listed twice \(also line 4\)/);
  t.notOk(existsSync(path.join(dir, 'ev-bad')), 'nothing written');

  const none = await runCli(['eval', 'nope.csv'], { env, cwd: dir });
  t.equal(none.code, 1);
  t.match(none.stderr, /^error: nope\.csv: no such file$/m);

  for (const [args, msg] of [
    [['--bootstrap', '0'], /option '--bootstrap <n>' argument '0' is invalid/],
    [['--format', 'xml'], /option '--format <format>' argument 'xml' is invalid/],
    [['--observations', 'Cardiomegaly,heart attack'], /"heart attack" is not one of the 14 CheXpert observations/],
    [['--shard', '3/2'], /expected K\/N with 1 <= K <= N/],
    [['--jsonl', 'gen.jsonl', '--resume'], /--resume applies when eval runs the model/],
  ] as const) {
    const b = await runCli(['eval', 'test.csv', ...args], { env, cwd: dir });
    t.equal(b.code, 2, args.join(' '));
    t.match(b.stderr, msg);
  }
});

t.test('on a terminal: a progress bar on stderr while the model runs', async (t) => {
  const r = await runInPty(['eval', 'test.csv', '--output', path.join(dir, 'ev-tty'), ...fast], { env, cwd: dir, timeoutMs: 120_000 });
  t.equal(r.code, 0);
  t.match(r.stdout, /\[[#-]{10,}\] \d+\/6/, 'the batch bar');
  t.match(r.stdout, /Macro average/);
});
