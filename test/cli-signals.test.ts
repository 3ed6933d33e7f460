// Ctrl-C (SIGINT) and SIGTERM during `report --output`, through the real CLI on
// the tiny model: the batch stops with exit 130 / 143, every file in the output
// folder is a whole record (no temp files), and `--resume` finishes the rest
// with one record per input. A second Ctrl-C exits at once, also mid-write.
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, FS_FAULTS, runCli, startCli, writeManyImages, writeTinyCxrModel, type RunningCli } from './helpers/cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-signals-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
const imgDir = path.join(dir, 'images');
// Enough images that the batch is still running when the first file appears (~25 ms an image here).
const N = 200;
const images = await writeManyImages(imgDir, N);
const env = cleanEnv(dir);
const args = (out: string): string[] => ['report', imgDir, '--output', out, '--jsonl', '--model', modelDir, '--max-tokens', '64', '--threads', '1'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once `out` holds a file matching `re` (polling; the child writes it). */
async function waitForFile(out: string, re: RegExp, run: RunningCli): Promise<void> {
  let ended = false;
  void run.done.then(() => (ended = true));
  while (!ended) {
    if (existsSync(out) && readdirSync(out).some((f) => re.test(f))) return;
    await sleep(10);
  }
  throw new Error(`the CLI ended before ${re} appeared in ${out}:\n${run.stderr()}`);
}

/** Every entry of `out` is an input's whole record (one assertion for the folder); returns the inputs they are for. */
function checkFolder(t: Test, out: string): string[] {
  const problems: string[] = [];
  const done: string[] = [];
  for (const f of readdirSync(out)) {
    if (!/^x\d{3}\.json$/.test(f)) {
      problems.push(`${f}: not an output file (a temp file left behind?)`);
      continue;
    }
    try {
      const rec = JSON.parse(readFileSync(path.join(out, f), 'utf8')) as { file: string; error: string | null; text: unknown };
      if (rec.file !== path.join(imgDir, f.replace(/\.json$/, '.png'))) problems.push(`${f}: the record of ${rec.file}`);
      if (rec.error !== null || typeof rec.text !== 'string') problems.push(`${f}: not a finished report (${rec.error})`);
      done.push(rec.file);
    } catch (err) {
      problems.push(`${f}: ${(err as Error).message}`);
    }
  }
  t.same(problems, [], `${out}: ${done.length} files, each a whole record of its input`);
  return done;
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  t.test(`${signal} mid-batch: exit ${code}, only whole files, --resume finishes the set`, async (t) => {
    const out = path.join(dir, `out-${signal}`);
    const run = startCli(args(out), { env });
    await waitForFile(out, /\.json$/, run);
    run.child.kill(signal);
    const r = await run.done;
    t.equal(r.code, code, r.stderr);
    t.equal(r.signal, null, 'the CLI exits by itself, not killed by the signal');
    t.match(r.stderr, new RegExp(`^${signal}: stopping; what is written so far is kept`, 'm'));
    const m = /^(\d+) done, 0 failed, (\d+) not done \(stopped; run again with --resume to finish them\) in \d+:\d\d$/m.exec(r.stderr);
    t.ok(m, `summary line in:\n${r.stderr}`);
    const first = checkFolder(t, out);
    t.equal(Number(m?.[1]), first.length, 'the summary counts the files written');
    t.equal(Number(m?.[1]) + Number(m?.[2]), N);
    t.ok(first.length > 0 && first.length < N, `stopped part way (${first.length} of ${N})`);
    if (signal === 'SIGINT') t.comment(`transcript (stderr of the interrupted run):\n${r.stderr}`);

    const again = await runCli([...args(out), '--resume'], { env });
    t.equal(again.code, 0, again.stderr);
    t.match(again.stderr, new RegExp(`^${N - first.length} done, 0 failed, ${first.length} skipped \\(output exists\\) in \\d+:\\d\\d$`, 'm'));
    const all = checkFolder(t, out);
    t.same(all.sort(), [...images].sort(), 'exactly one record per input');
  });
}

t.test('a second Ctrl-C exits at once, mid-write, and leaves no temp file', async (t) => {
  const out = path.join(dir, 'out-twice');
  // Each rename waits 3 s, so a write is in progress whenever the signals arrive.
  const slow = 3000;
  const run = startCli(args(out), { env: { ...env, CXR_FAULT_SLOW_RENAME_MS: String(slow) }, nodeArgs: ['--require', FS_FAULTS] });
  await waitForFile(out, /\.tmp$/, run);
  run.child.kill('SIGINT');
  await sleep(200);
  const tmpBefore = readdirSync(out).filter((f) => f.endsWith('.tmp'));
  t.ok(tmpBefore.length > 0, 'a temp file is there while its rename waits');
  const t0 = Date.now();
  run.child.kill('SIGINT');
  const r = await run.done;
  const took = Date.now() - t0;
  // It dies by the signal itself (the shell shows 130), not waiting for anything.
  t.equal(r.signal, 'SIGINT', r.stderr);
  t.match(r.stderr, /^SIGINT: stopping;.*\nSIGINT: stopped at once$/m);
  t.ok(took < slow - 500, `exited ${took} ms after the second signal, before the write in progress could end (${slow} ms)`);
  t.same(readdirSync(out).filter((f) => f.endsWith('.tmp')), [], 'no temp file left');
  checkFolder(t, out);
  const again = await runCli([...args(out), '--resume'], { env });
  t.equal(again.code, 0, again.stderr);
  t.same(checkFolder(t, out).sort(), [...images].sort(), 'one record per input after --resume');
});

// eval runs its reports through the same batch: a Ctrl-C stops it before
// scoring (exit 130, no eval.json), whole report files only, and `--resume`
// finishes the reports and scores every study.
t.test('SIGINT during eval: exit 130, nothing scored, --resume finishes and scores all', async (t) => {
  const manifest = path.join(dir, 'eval.csv');
  writeFileSync(manifest, ['image,report', ...images.map((f) => `images/${path.basename(f)},"No pleural effusion. Mild cardiomegaly."`)].join('\n') + '\n');
  const out = path.join(dir, 'out-eval');
  const evalArgs = ['eval', manifest, '--output', out, '--model', modelDir, '--max-tokens', '64', '--threads', '1', '--bootstrap', '50'];
  const run = startCli(evalArgs, { env });
  const reports = path.join(out, 'reports', 'images'); // records are named by the manifest's relative paths
  await waitForFile(reports, /\.json$/, run);
  run.child.kill('SIGINT');
  const r = await run.done;
  t.equal(r.code, 130, r.stderr);
  t.match(r.stderr, /^eval: stopped before scoring; run again with --resume/m);
  t.notOk(existsSync(path.join(out, 'eval.json')), 'nothing is scored from part of the reports');
  const written = readdirSync(reports);
  t.same(written.filter((f) => !/^x\d{3}\.json$/.test(f)), [], 'only whole report files (no temp files)');
  t.ok(written.length > 0 && written.length < N, `stopped part way (${written.length} of ${N})`);

  const again = await runCli([...evalArgs, '--resume'], { env });
  t.equal(again.code, 0, again.stderr);
  const doc = JSON.parse(readFileSync(path.join(out, 'eval.json'), 'utf8')) as { studies: number; failed: string[]; missing: string[] };
  t.equal(doc.studies, N, 'every study is in eval.json');
  t.same([doc.failed.length, doc.missing.length], [0, 0], 'none failed or missing after --resume');
});
