// --findings on report/ddx and model.report().findings: the CheXpert labels of
// each text in every record. The tiny model writes nonsense, so its records
// are checked against labelReport(text); the record shape with words we
// choose goes through the batch runner with a model that answers a fixed text.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { labelReport, loadModel, type Findings, type Model } from '../lib/index.js';
import { runBatch } from '../lib/cli/batch.js';
import { findingsLine } from '../lib/cli/output.js';
import { cleanEnv, imageBytes, runCli, writeImageFolder, writeTinyCxrModel } from './helpers/cli.js';
import { writeFile } from 'node:fs/promises';
import { PassThrough } from 'node:stream';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-findings-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
const { model, mmproj } = await writeTinyCxrModel(modelDir);
const imgDir = path.join(dir, 'images');
const { good, bad } = await writeImageFolder(imgDir);
const env = cleanEnv(dir);
const fast = ['--model', modelDir, '--temperature', '0', '--max-tokens', '8', '--threads', '1'];

interface Rec {
  file: string;
  text: string | null;
  findings?: Findings | null;
  error: string | null;
}

const parseJsonl = (s: string): Rec[] =>
  s
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Rec);

t.test('report --jsonl --findings: every record has findings; the labels of its text, or null when it failed', async (t) => {
  const r = await runCli(['report', imgDir, '--jsonl', '--findings', ...fast], { env });
  t.equal(r.code, 1, 'three bad images');
  const recs = parseJsonl(r.stdout);
  t.equal(recs.length, good.length + bad.length);
  for (const x of recs) {
    t.ok('findings' in x, `${x.file} has findings`);
    if (x.error === null) t.same(x.findings, labelReport(x.text!), `${x.file}: labelReport(text)`);
    else t.equal(x.findings, null, `${x.file} failed: findings null`);
  }
});

t.test('without --findings the records have no findings key', async (t) => {
  const r = await runCli(['report', good[0]!, '--jsonl', ...fast], { env });
  t.equal(r.code, 0, r.stderr);
  t.notOk('findings' in parseJsonl(r.stdout)[0]!);
});

t.test('ddx --json --findings, and --output files', async (t) => {
  const r = await runCli(['ddx', good[0]!, good[1]!, '--json', '--findings', ...fast], { env });
  t.equal(r.code, 0, r.stderr);
  const recs = JSON.parse(r.stdout) as Rec[];
  t.equal(recs.length, 2);
  for (const x of recs) t.same(x.findings, labelReport(x.text!));
  const out = path.join(dir, 'out');
  const o = await runCli(['report', good[0]!, '--jsonl', '--findings', '--output', out, ...fast], { env });
  t.equal(o.code, 0, o.stderr);
  const rec = JSON.parse(readFileSync(path.join(out, path.basename(good[0]!, '.png') + '.json'), 'utf8')) as Rec;
  t.same(rec.findings, labelReport(rec.text!));
});

t.test('text output with --findings ends each report with a Findings line', async (t) => {
  const plain = await runCli(['report', good[0]!, ...fast], { env });
  const withF = await runCli(['report', good[0]!, '--findings', ...fast], { env });
  t.equal(withF.code, 0, withF.stderr);
  t.equal(withF.stdout, plain.stdout + findingsLine(labelReport(plain.stdout)), 'same text, then the line');
  t.match(withF.stdout, /\nFindings: .+\n$/);
});

t.test('ask has no --findings: a usage error before any work', async (t) => {
  const r = await runCli(['ask', good[0]!, 'Is there an effusion?', '--findings', ...fast], { env });
  t.equal(r.code, 2);
  t.match(r.stderr, /unknown option '--findings'/);
});

t.test('the record shape for a report whose text we choose', async (t) => {
  const text = 'Mild cardiomegaly. No pleural effusion or pneumothorax.\nPossible left basilar atelectasis. ET tube in place.';
  // A model that answers a fixed text: the batch runner only uses these members.
  const fixed = {
    info: { path: 'fixed.gguf', vision: { imageSize: 64, mean: 0.5, std: 0.5 } },
    encodeImage: async () => ({ encodeMs: 1, warnings: [] }),
    report: async () => ({ text, tokens: [], finishReason: 'stop', seed: 1n, timings: { prefillTokens: 1, prefillMs: 1, decodeTokens: 1, decodeMs: 1 } }),
  } as unknown as Model;
  const png = path.join(dir, 'fixed.png');
  await writeFile(png, await imageBytes(64, 64, 9));
  const stdout = new PassThrough();
  let written = '';
  stdout.on('data', (d: Buffer) => (written += d.toString()));
  await runBatch({
    model: fixed,
    task: 'report',
    inputs: [{ path: png, rel: 'fixed.png' }],
    sampling: { temperature: 0, topP: 0.8, maxTokens: 8 },
    format: 'jsonl',
    findings: true,
    quiet: true,
    stdout: stdout as unknown as NodeJS.WriteStream,
    stderr: new PassThrough() as unknown as NodeJS.WriteStream,
  });
  const rec = JSON.parse(written) as Rec;
  t.equal(rec.text, text);
  t.same(rec.findings, {
    Cardiomegaly: 'positive',
    Atelectasis: 'uncertain',
    Pneumothorax: 'negative',
    'Pleural Effusion': 'negative',
    'Support Devices': 'positive',
  });
  t.same(Object.keys(rec.findings!), ['Cardiomegaly', 'Atelectasis', 'Pneumothorax', 'Pleural Effusion', 'Support Devices'], 'CheXpert column order');
});

t.test('model.report() results carry findings; differential() results do not', async (t) => {
  const m = await loadModel({ model, mmproj, threads: 1 });
  t.teardown(() => m.close());
  const r = await m.report(good[0]!, { temperature: 0, maxTokens: 8 });
  t.same(r.findings, labelReport(r.text));
  const d = await m.differential(good[0]!, { temperature: 0, maxTokens: 8 });
  t.notOk('findings' in d);
});
