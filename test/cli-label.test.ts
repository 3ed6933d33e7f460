// `cxr-llava label` through a real child process: text files, a report --jsonl
// file, stdin both ways, --text and --explain, and bad inputs that do not stop
// the rest.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { labelReport } from '../lib/index.js';
import { runCli } from './helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-label-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const a = path.join(dir, 'a.txt');
const b = path.join(dir, 'b.txt');
writeFileSync(a, 'FINDINGS: Mild cardiomegaly.\nNo pleural effusion.\n\nIMPRESSION: Cannot exclude left basilar pneumonia.\n');
writeFileSync(b, 'No acute cardiopulmonary process.\n');
const records = path.join(dir, 'reports.jsonl');
writeFileSync(
  records,
  [
    JSON.stringify({ file: 'x.png', task: 'report', text: 'Small right pneumothorax. Chest tube in place.', error: null }),
    JSON.stringify({ file: 'y.png', task: 'report', text: null, error: 'y.png: the file is empty' }),
    '',
  ].join('\n'),
);

const lines = (s: string): unknown[] =>
  s
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);

t.test('text files: one {file, findings} line each, in argument order', async (t) => {
  const r = await runCli(['label', a, b]);
  t.equal(r.code, 0, r.stderr);
  t.same(lines(r.stdout), [
    { file: a, findings: { Cardiomegaly: 'positive', Pneumonia: 'uncertain', 'Pleural Effusion': 'negative' } },
    { file: b, findings: { 'No Finding': 'positive' } },
  ]);
  t.equal(r.stderr, '');
});

t.test('a report --jsonl file comes back with findings added; a failed record gets null', async (t) => {
  const r = await runCli(['label', records]);
  t.equal(r.code, 0, r.stderr);
  t.same(lines(r.stdout), [
    { file: 'x.png', task: 'report', text: 'Small right pneumothorax. Chest tube in place.', error: null, findings: { Pneumothorax: 'positive', 'Support Devices': 'positive' } },
    { file: 'y.png', task: 'report', text: null, error: 'y.png: the file is empty', findings: null },
  ]);
});

t.test('stdin: JSONL when it starts with {, else one report', async (t) => {
  const text = 'Resolved right pneumothorax. Heart size is at the upper limit of normal.';
  const one = await runCli(['label', '-'], { stdin: text });
  t.same(lines(one.stdout), [{ file: '<stdin>', findings: labelReport(text) }]);
  t.same(labelReport(text), { Cardiomegaly: 'uncertain', Pneumothorax: 'negative' });
  const many = await runCli(['label', '-'], { stdin: '{"text":"No pneumothorax."}\n{"text":"Bibasilar atelectasis."}\n' });
  t.same(lines(many.stdout), [
    { text: 'No pneumothorax.', findings: { 'No Finding': 'positive', Pneumothorax: 'negative' } },
    { text: 'Bibasilar atelectasis.', findings: { Atelectasis: 'positive' } },
  ]);
});

t.test('--text, and --explain with the cue behind each label', async (t) => {
  const r = await runCli(['label', '--explain', '--text', 'No new consolidation. Possible small left effusion.']);
  t.equal(r.code, 0, r.stderr);
  t.same(lines(r.stdout), [
    {
      findings: { Consolidation: 'negative', 'Pleural Effusion': 'uncertain' },
      mentions: [
        { observation: 'Consolidation', label: 'negative', text: 'consolidation', cue: 'No' },
        { observation: 'Pleural Effusion', label: 'uncertain', text: 'effusion', cue: 'Possible' },
      ],
    },
  ]);
});

t.test('a missing file and a line that is not JSON are errors that do not stop the rest; exit 1', async (t) => {
  const broken = path.join(dir, 'broken.jsonl');
  writeFileSync(broken, '{"text":"Mild pulmonary edema."}\nnot json\n[1,2]\n');
  const missing = path.join(dir, 'missing.txt');
  const r = await runCli(['label', missing, broken, b]);
  t.equal(r.code, 1);
  t.same(lines(r.stdout), [{ text: 'Mild pulmonary edema.', findings: { Edema: 'positive' } }, { file: b, findings: { 'No Finding': 'positive' } }]);
  t.equal(r.stderr, `error: ${missing}: file not found\nerror: ${broken}:2: not a JSON object\nerror: ${broken}:3: not a JSON object\n`);
});

t.test('usage errors exit 2 before any work', async (t) => {
  const none = await runCli(['label']);
  t.equal(none.code, 2);
  t.match(none.stderr, /nothing to label: give report files, - for stdin, or --text "<report>"/);
  const both = await runCli(['label', a, '--text', 'No effusion.']);
  t.equal(both.code, 2);
  t.match(both.stderr, /give --text or files, not both/);
  t.equal(both.stdout, '');
});
