// `cxr-llava report scans/ --output out/ --sr` as a user runs it: a DICOM Basic Text
// SR beside each report on a DICOM input, checked with dcmtk (dsrdump parses the SR
// tree and its constraints; dcmdump +E reads every element). The SR joins the source
// study (Patient and Study modules copied, new Series and SOP Instance UIDs); the
// text and JSON outputs stay free of identifiers; non-DICOM inputs get no SR, and
// the CLI says why once.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanEnv, imageBytes, runCli, writeTinyCxrModel } from './helpers/cli.js';
import { writeFileSync } from 'node:fs';

const fixtures = fileURLToPath(new URL('./fixtures/dicom/', import.meta.url));
const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string };

const hasDcmtk = spawnSync('dsrdump', ['--version']).status === 0 && spawnSync('dcmdump', ['--version']).status === 0;
if (!hasDcmtk) t.fail('dsrdump/dcmdump not found: install dcmtk (apt-get install -y dcmtk); .ci/run does');

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-sr-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
const tiny = await writeTinyCxrModel(modelDir);
const scans = path.join(dir, 'scans');
mkdirSync(scans);
const DICOM = ['lateral.dcm', 'm-c12-jpeg-sv1.dcm', 'm-crgb-rle.dcm', 'm-c12-nometa-ivrle.dcm'];
for (const f of DICOM) copyFileSync(path.join(fixtures, f), path.join(scans, f));
writeFileSync(path.join(scans, 'a.png'), await imageBytes(64, 64, 1));
writeFileSync(path.join(scans, 'b.png'), await imageBytes(64, 64, 2));
const out = path.join(dir, 'out');
const fast = ['--model', modelDir, '--temperature', '0', '--max-tokens', '6', '--threads', '1'];

/** One element's value from `dcmdump` output, e.g. tag "0010,0010". */
function dumped(dump: string, tag: string): string[] {
  const re = new RegExp(`^\\s*\\(${tag}\\) \\w\\w (?:\\[([^\\]]*)\\]|=(\\S+)|(\\S+))`, 'gmi');
  return [...dump.matchAll(re)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

function dcmdump(file: string): string {
  const r = spawnSync('dcmdump', ['+E', '+L', '-Un', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dcmdump +E ${file}: ${r.stderr}`);
  return r.stdout + r.stderr;
}

const run = await runCli(['report', scans, '--output', out, '--sr', ...fast], { env: cleanEnv(dir), timeoutMs: 180_000 });

t.test('the batch succeeds and writes an SR beside each report on a DICOM input, and none for PNGs', async (t) => {
  t.equal(run.code, 0, run.stderr);
  for (const f of DICOM) {
    const stem = f.replace(/\.dcm$/, '');
    t.ok(existsSync(path.join(out, `${stem}.txt`)), `${stem}.txt`);
    t.ok(existsSync(path.join(out, `${stem}.sr.dcm`)), `${stem}.sr.dcm`);
  }
  t.notOk(existsSync(path.join(out, 'a.sr.dcm')), 'no SR for a PNG');
  t.notOk(existsSync(path.join(out, 'b.sr.dcm')));
  const notes = run.stderr.split('\n').filter((l) => l.includes('--sr:'));
  t.equal(notes.length, 1, 'the CLI says once why non-DICOM inputs get no SR');
  t.match(notes[0], /is not DICOM, so it gets no DICOM SR/);
  t.same(readdirSync(out).filter((n) => n.endsWith('.tmp')), [], 'no temp files left behind');
});

for (const f of DICOM) {
  t.test(`${f}: dsrdump and dcmdump +E read the SR, and it joins the source study`, async (t) => {
    const stem = f.replace(/\.dcm$/, '');
    const sr = path.join(out, `${stem}.sr.dcm`);
    const ds = spawnSync('dsrdump', ['+Pl', sr], { encoding: 'utf8' });
    t.equal(ds.status, 0, `dsrdump exit status (${ds.stderr})`);
    // The one warning allowed: dcmtk 3.6.7's VR checker cannot check UTF-8 text (the tiny model's words may need it).
    const complaints = ds.stderr.split('\n').filter((l) => /^[EWF]:/.test(l) && !/VR checker does not support this Specific Character Set: ISO_IR 192/.test(l));
    t.same(complaints, [], 'dsrdump reports no error or warning');
    t.match(ds.stdout, /^Basic Text SR Document/m);
    t.match(ds.stdout, /Completion Flag\s+: PARTIAL/);
    t.match(ds.stdout, /Verification Flag\s+: UNVERIFIED/);
    t.match(ds.stdout, /<CONTAINER:\(,,"AI-generated chest X-ray report"\)=SEPARATE>/);
    t.match(ds.stdout, /<has obs context CODE:\(,,"Observer Type"\)=\(121007,DCM,"Device"\)>/);
    t.match(ds.stdout, new RegExp(`"Device Observer Name"\\)="cxr-llava ${pkg.version.replace(/\./g, '\\.')}"`));
    t.match(ds.stdout, /<contains TEXT:\(,,"Finding"\)=/);
    t.match(ds.stdout, /<inferred from IMAGE:=/);

    const srDump = dcmdump(sr);
    t.notMatch(srDump, /^E:/m, 'dcmdump +E: no errors');
    const src = dcmdump(path.join(fixtures, f));
    t.same(dumped(srDump, '0008,0016'), ['1.2.840.10008.5.1.4.1.1.88.11'], 'SOP Class: Basic Text SR');
    t.same(dumped(srDump, '0008,0060'), ['SR'], 'Modality SR');
    for (const [tag, what] of [['0010,0010', 'Patient Name'], ['0010,0020', 'Patient ID'], ['0010,0030', 'Birth Date'], ['0008,0050', 'Accession Number'], ['0020,000d', 'Study Instance UID']]) {
      t.equal(dumped(srDump, tag!)[0], dumped(src, tag!)[0], `${what} copied from the source`);
      t.ok(dumped(src, tag!)[0], `the source has a ${what}`);
    }
    const [srcSeries] = dumped(src, '0020,000e');
    const [srSeries] = dumped(srDump, '0020,000e');
    t.not(srSeries, srcSeries, 'a new Series Instance UID');
    t.match(srSeries, /^2\.25\.\d+$/, 'under the documented UID root 2.25');
    const [srInstance] = dumped(srDump, '0008,0018');
    t.match(srInstance, /^2\.25\.\d+$/);
    t.not(srInstance, dumped(src, '0008,0018')[0]);
    // The IMAGE item and the evidence sequence refer to the source instance.
    const refs = dumped(srDump, '0008,1155');
    t.ok(refs.length >= 2 && refs.every((r) => r === dumped(src, '0008,0018')[0]), 'references the source SOP Instance UID');
    t.ok(dumped(srDump, '0008,1150').every((r) => r === dumped(src, '0008,0016')[0]), 'and its SOP Class UID');
    // The report text, whole.
    const text = readFileSync(path.join(out, `${stem}.txt`), 'utf8').trim();
    t.ok(text.length > 0, 'the report has text');
    t.ok(dumped(srDump, '0040,a160').includes(text), 'the Text Value is the report');
    const sha = execFileSync('sha256sum', [tiny.model], { encoding: 'utf8' }).split(' ')[0]!;
    t.ok(dumped(srDump, '0040,a160').some((v) => v.includes(`sha256:${sha}`)), "the device's model name carries the model file's sha256");
  });
}

t.test('text outputs stay free of identifiers', async (t) => {
  for (const name of readdirSync(out).filter((n) => n.endsWith('.txt'))) {
    const s = readFileSync(path.join(out, name), 'utf8');
    for (const id of ['DOE', 'JANE', 'PID-8675309', '19700101', 'ACC-424242']) t.notOk(s.includes(id), `${name} has no ${id}`);
  }
  const r = await runCli(['report', path.join(scans, 'lateral.dcm'), '--jsonl', ...fast], { env: cleanEnv(dir) });
  t.equal(r.code, 0, r.stderr);
  for (const id of ['DOE', 'JANE', 'PID-8675309', '19700101', 'ACC-424242']) t.notOk(r.stdout.includes(id), `JSONL has no ${id}`);
});

t.test('--sr without --output is a usage error (exit 2), before any work', async (t) => {
  const r = await runCli(['report', scans, '--sr', ...fast], { env: cleanEnv(dir) });
  t.equal(r.code, 2);
  t.match(r.stderr, /--sr needs --output <dir>/);
});

t.test('--resume skips inputs whose report exists, and writes the SR with the report', async (t) => {
  const again = path.join(dir, 'again');
  mkdirSync(again);
  const r1 = await runCli(['report', path.join(scans, 'lateral.dcm'), '--output', again, '--sr', ...fast], { env: cleanEnv(dir) });
  t.equal(r1.code, 0, r1.stderr);
  const first = readFileSync(path.join(again, 'lateral.sr.dcm'));
  const r2 = await runCli(['report', path.join(scans, 'lateral.dcm'), '--output', again, '--sr', '--resume', ...fast], { env: cleanEnv(dir) });
  t.equal(r2.code, 0, r2.stderr);
  t.ok(readFileSync(path.join(again, 'lateral.sr.dcm')).equals(first), 'the SR of a finished input is left alone');
});
