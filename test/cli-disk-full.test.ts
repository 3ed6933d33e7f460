// A full disk under the CLI's outputs, through the real CLI: per-image files
// (--output), DICOM SRs (--sr), --jsonl into a file, and `convert`. The disk is
// the fs-faults preload (test/helpers/fs-faults.cjs: N bytes free, then write(2)'s
// short write and ENOSPC), so no mount is needed; one test repeats the batch on
// a real tmpfs where mounting is allowed. Each stops with `error: <file>: disk full
// (ENOSPC): <what to do>`, keeps what was finished, and leaves nothing half-written.
import t from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { humanBytes } from '../lib/cli/format.js';
import { cleanEnv, FS_FAULTS, runCli, writeManyImages, writeTinyCxrModel } from './helpers/cli.js';
import { writeOfficialCheckpoint } from './helpers/official-checkpoint.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-diskfull-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
const imgDir = path.join(dir, 'images');
const N = 8;
const images = await writeManyImages(imgDir, N);
const env = cleanEnv(dir);
const fast = ['--model', modelDir, '--temperature', '0', '--max-tokens', '32', '--threads', '1'];
const faults = { nodeArgs: ['--require', FS_FAULTS] };
const RESUME_HINT = 'free some space, then run again with --resume (finished outputs are kept)';

/** Sizes of the files a run without faults writes (greedy decoding: the same text every run). */
const reference = path.join(dir, 'reference');
{
  const r = await runCli(['report', imgDir, '--output', reference, '--jsonl', ...fast], { env });
  if (r.code !== 0) throw new Error(r.stderr);
}
const sizes = images.map((f) => statSync(path.join(reference, path.basename(f).replace(/\.png$/, '.json'))).size);

t.test('--output: the file that does not fit is named, earlier ones are whole, --resume finishes', async (t) => {
  const out = path.join(dir, 'out');
  // Room for the first three files and half of the fourth.
  const free = sizes[0]! + sizes[1]! + sizes[2]! + Math.floor(sizes[3]! / 2);
  const r = await runCli(['report', imgDir, '--output', out, '--jsonl', '--parallel', '1', ...fast], { env: { ...env, CXR_FAULT_FREE_BYTES: String(free) }, ...faults });
  t.equal(r.code, 1);
  t.equal(r.stderr, `error: ${path.join(out, 'x3.json')}: disk full (ENOSPC): ${RESUME_HINT}\n`);
  t.same(readdirSync(out).sort(), ['x0.json', 'x1.json', 'x2.json'], 'the three that fit, nothing else (no temp file)');
  for (const f of ['x0.json', 'x1.json', 'x2.json']) {
    t.same(JSON.parse(readFileSync(path.join(out, f), 'utf8')).text, JSON.parse(readFileSync(path.join(reference, f), 'utf8')).text, `${f} is whole`);
  }
  const again = await runCli(['report', imgDir, '--output', out, '--jsonl', '--resume', ...fast], { env });
  t.equal(again.code, 0, again.stderr);
  t.match(again.stderr, /^5 done, 0 failed, 3 skipped \(output exists\) in \d+:\d\d$/m);
  t.same(readdirSync(out).sort(), images.map((f) => path.basename(f).replace(/\.png$/, '.json')).sort());
});

t.test('--sr: a DICOM SR that does not fit stops the batch; its report is not written, so --resume redoes it', async (t) => {
  const fixtures = fileURLToPath(new URL('./fixtures/dicom/', import.meta.url));
  const scans = path.join(dir, 'scans');
  mkdirSync(scans, { recursive: true });
  for (const f of ['lateral.dcm', 'm-crgb-rle.dcm']) copyFileSync(path.join(fixtures, f), path.join(scans, f));
  const out = path.join(dir, 'out-sr');
  // Only the SRs fill the disk: the first one does not fit at all.
  const r = await runCli(['report', scans, '--output', out, '--sr', '--parallel', '1', ...fast], {
    env: { ...env, CXR_FAULT_FREE_BYTES: '100', CXR_FAULT_FULL_MATCH: '.sr.dcm' },
    ...faults,
  });
  t.equal(r.code, 1);
  t.equal(r.stderr, `error: ${path.join(out, 'lateral.sr.dcm')}: disk full (ENOSPC): ${RESUME_HINT}\n`);
  t.same(readdirSync(out), [], 'no report, no SR, no temp file');
  const again = await runCli(['report', scans, '--output', out, '--sr', '--resume', ...fast], { env });
  t.equal(again.code, 0, again.stderr);
  t.same(readdirSync(out).sort(), ['lateral.sr.dcm', 'lateral.txt', 'm-crgb-rle.sr.dcm', 'm-crgb-rle.txt']);
});

t.test('--jsonl > file: the file is named and cut back to its last whole line', async (t) => {
  const file = path.join(dir, 'reports.jsonl');
  // stdout into a file goes through fs.writeSync; room for two lines and a bit of the third.
  const r = await runCli(['report', imgDir, '--jsonl', '--parallel', '1', ...fast], {
    env: { ...env, CXR_FAULT_FREE_BYTES: '1500', CXR_FAULT_FULL_MATCH: '<stdout>' },
    stdoutFile: file,
    ...faults,
  });
  t.equal(r.code, 1);
  t.equal(r.stderr, `error: ${file}: disk full (ENOSPC): free some space, then run the command again; it is cut back to its last whole line\n`);
  const text = readFileSync(file, 'utf8');
  t.ok(text.length > 0 && text.length <= 1500 && text.endsWith('\n'), `${text.length} bytes, ending with a newline`);
  const lines = text.trimEnd().split('\n');
  t.same(
    lines.map((l) => (JSON.parse(l) as { file: string }).file),
    images.slice(0, lines.length),
    'every line a whole record, in input order',
  );
});

t.test('convert: the GGUF that does not fit is named with the space both need; nothing is left in --out', async (t) => {
  const ckpt = (await writeOfficialCheckpoint(path.join(dir, 'ckpt'))).dir;
  const good = path.join(dir, 'gguf-good');
  const ok = await runCli(['convert', ckpt, '--out', good, '--type', 'f32', '--vision-type', 'f32', '--quiet'], { env });
  t.equal(ok.code, 0, ok.stderr);
  const text = statSync(path.join(good, 'cxr-llava-v2.f32.gguf')).size;
  const mmproj = statSync(path.join(good, 'mmproj-cxr-llava-v2.f32.gguf')).size;
  const need = humanBytes(text + mmproj);

  for (const [what, free, file] of [
    ['the text model', Math.floor(text / 2), 'cxr-llava-v2.f32.gguf'],
    ['the mmproj, after the text model fitted', text + Math.floor(mmproj / 2), 'mmproj-cxr-llava-v2.f32.gguf'],
  ] as const) {
    const out = path.join(dir, `gguf-${free}`);
    mkdirSync(out);
    const r = await runCli(['convert', ckpt, '--out', out, '--type', 'f32', '--vision-type', 'f32', '--quiet'], { env: { ...env, CXR_FAULT_FREE_BYTES: String(free) }, ...faults });
    t.equal(r.code, 1, what);
    t.equal(
      r.stderr,
      `error: ${path.join(out, file)}: disk full (ENOSPC): the two GGUF files need ${need} free in ${out}; free some space there, then run the command again (nothing was left behind)\n`,
      what,
    );
    t.same(readdirSync(out), [], `${what}: ${out} is empty (no GGUF, no staging folder)`);
  }
});

// The same batch on a real small file system, where this machine lets us mount one.
const mnt = path.join(dir, 'tmpfs');
mkdirSync(mnt);
const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', mnt], { encoding: 'utf8' });
if (mounted.status === 0) t.teardown(() => void spawnSync('umount', [mnt]));
t.test('--output on a full 16 KiB tmpfs', { skip: mounted.status === 0 ? false : `mount -t tmpfs is not permitted here (${(mounted.stderr || mounted.error?.message || '').trim()}); the injected failures above cover it` }, async (t) => {
  const out = path.join(mnt, 'out');
  const many = path.join(dir, 'many');
  await writeManyImages(many, 40);
  const r = await runCli(['report', many, '--output', out, '--jsonl', '--parallel', '1', ...fast], { env });
  t.equal(r.code, 1);
  const m = new RegExp(`^error: ${out}/(x\\d+\\.json): disk full \\(ENOSPC\\): free some space`).exec(r.stderr);
  t.ok(m, r.stderr);
  const written = readdirSync(out);
  t.ok(written.length > 0 && written.length < 40, `${written.length} files fitted`);
  t.notOk(written.includes(m?.[1] ?? ''), 'the file that did not fit is absent');
  for (const f of written) t.doesNotThrow(() => JSON.parse(readFileSync(path.join(out, f), 'utf8')), `${f} is whole JSON`);
});
