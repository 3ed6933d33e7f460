// --shard K/N and `merge`: the split (disjoint, complete, the same on every
// machine: committed expectations from Python's hashlib), usage errors before
// any work, `report --shard` through the CLI on the tiny model, and `merge`
// catching a missing shard, duplicates and failures.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseShard, selectShard, shardKey, shardOf } from '../lib/cli/shard.js';
import { ROOT, cleanEnv, imageBytes, runCli, writeTinyCxrModel } from './helpers/cli.js';

const expectations = JSON.parse(readFileSync(fileURLToPath(new URL('./fixtures/eval/shards.json', import.meta.url)), 'utf8')) as {
  cases: { path: string; count: number; shard: number }[];
};

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-shard-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
const imgDir = path.join(dir, 'images');
mkdirSync(imgDir);
const names: string[] = [];
for (let i = 0; i < 9; i++) {
  const name = `img${i}.png`;
  writeFileSync(path.join(imgDir, name), await imageBytes(48 + i * 4, 48, i + 1));
  names.push(name);
}
writeFileSync(path.join(imgDir, 'broken.png'), 'not an image\n');
const env = cleanEnv(dir);
const fast = ['--model', modelDir, '--temperature', '0', '--max-tokens', '4', '--threads', '1', '--seed', '1'];
// Relative paths, as a job would list them from its folder.
const list = [...names, 'broken.png'].map((n) => `images/${n}`);
writeFileSync(path.join(dir, 'list.txt'), list.join('\n') + '\n');

t.test('assignments equal the committed ones (computed with hashlib): stable across machines', async (t) => {
  t.ok(expectations.cases.length >= 50);
  for (const c of expectations.cases) t.equal(shardOf(c.path, c.count), c.shard, `${c.path} in ${c.count}`);
  t.equal(shardKey('./a//b\\c.png'), 'a/b/c.png');
});

t.test('shards 1..N of 100 inputs are disjoint and cover everything, and another process agrees', async (t) => {
  const inputs = Array.from({ length: 100 }, (_, i) => ({ path: `corpus/p${i % 7}/img${String(i).padStart(3, '0')}.png` }));
  for (const n of [1, 2, 3, 7, 10, 16]) {
    const shards = Array.from({ length: n }, (_, k) => selectShard(inputs, { index: k + 1, count: n }, (x) => x.path));
    const all = shards.flat().map((x) => x.path);
    t.equal(all.length, 100, `N=${n}: every input is in some shard`);
    t.equal(new Set(all).size, 100, `N=${n}: no input is in two shards`);
    if (n > 1) t.ok(shards.filter((s) => s.length > 0).length > 1, `N=${n}: the inputs are spread, not all in one shard`);
  }
  // A fresh Node process (another run) computes the same assignments.
  const script = `import { shardOf } from ${JSON.stringify(path.join(ROOT, 'dist/lib/cli/shard.js'))};
    console.log(JSON.stringify(${JSON.stringify(inputs.map((x) => x.path))}.map((p) => shardOf(p, 7))));`;
  const other = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as number[];
  t.same(other, inputs.map((x) => shardOf(x.path, 7)));
});

t.test('parseShard accepts K/N and names the form otherwise', async (t) => {
  t.same(parseShard('3/8'), { index: 3, count: 8 });
  t.same(parseShard(' 1 / 1 '), { index: 1, count: 1 });
  for (const bad of ['0/3', '4/3', '3', 'a/b', '1/0', '-1/2', '1.5/2', '']) {
    t.throws(() => parseShard(bad), /expected K\/N with 1 <= K <= N/, bad);
  }
});

function files(jsonl: string): string[] {
  return jsonl
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { file: string }).file);
}

t.test('a bad --shard is a usage error before any work (no model is looked for)', async (t) => {
  for (const bad of ['4/3', '0/2', 'two/3']) {
    const r = await runCli(['report', 'images/img0.png', '--shard', bad, '--model', path.join(dir, 'no-such-model.gguf')], { env, cwd: dir });
    t.equal(r.code, 2, bad);
    t.match(r.stderr, /option '--shard <K\/N>' argument '.*' is invalid\. expected K\/N with 1 <= K <= N/);
    t.notMatch(r.stderr, /no-such-model/);
    t.equal(r.stdout, '');
  }
});

const parts: string[] = [];
t.test('report --shard k/3 through the CLI: the parts are disjoint and cover the list', async (t) => {
  const seen: string[] = [];
  for (let k = 1; k <= 3; k++) {
    const r = await runCli(['report', '-', '--shard', `${k}/3`, '--jsonl', ...fast], { env, cwd: dir, stdin: list.join('\n') + '\n' });
    const got = files(r.stdout);
    t.same(got, list.filter((p) => shardOf(p, 3) === k), `shard ${k}/3 holds exactly its inputs, in list order`);
    t.equal(r.code, got.includes('images/broken.png') ? 1 : 0, `shard ${k}: exit 1 only where the broken file fell`);
    writeFileSync(path.join(dir, `out-${k}.jsonl`), r.stdout);
    parts.push(path.join(dir, `out-${k}.jsonl`));
    seen.push(...got);
  }
  t.same([...seen].sort(), [...list].sort());
  // A shard with no inputs is not an error.
  const one = 'images/img0.png';
  const other = shardOf(one, 2) === 1 ? 2 : 1;
  const r = await runCli(['report', one, '--shard', `${other}/2`, '--jsonl', ...fast], { env, cwd: dir });
  t.equal(r.code, 0);
  t.equal(r.stdout, '');
  t.match(r.stderr, new RegExp(`shard ${other}/2: none of the 1 inputs falls in this shard`));
});

t.test('merge joins the parts; reports the failure; catches a missing shard and duplicates', async (t) => {
  const all = await runCli(['merge', ...parts, '--manifest', 'list.txt'], { env, cwd: dir });
  t.same(files(all.stdout), list, 'manifest order, every input once');
  t.equal(all.code, 1, 'the broken image failed: exit 1');
  t.match(all.stderr, /^failed: images\/broken\.png: /m);
  t.match(all.stderr, /merged 10 records from 3 files, 0 duplicates, 1 failed, 0 missing of 10/);

  const good = parts.filter((p) => !readFileSync(p, 'utf8').includes('broken.png'));
  const withBroken = parts.find((p) => readFileSync(p, 'utf8').includes('broken.png'))!;
  const lost = files(readFileSync(withBroken, 'utf8'));
  const r = await runCli(['merge', ...good, '--manifest', path.join(dir, 'list.txt')], { env, cwd: dir });
  t.equal(r.code, 1, 'a shard is missing: exit 1');
  for (const f of lost) t.match(r.stderr, new RegExp(`^missing: ${f.replace(/[.]/g, '\\.')}$`, 'm'));
  t.match(r.stderr, new RegExp(`${lost.length} missing of 10`));

  const dup = await runCli(['merge', good[0]!, good[0]!, ...good.slice(1)], { env, cwd: dir });
  t.equal(dup.code, 0, 'duplicates alone do not fail the merge');
  const n = files(readFileSync(good[0]!, 'utf8')).length;
  t.equal(dup.stderr.match(/^duplicate: /gm)?.length, n);
  t.equal(files(dup.stdout).length, 10 - lost.length, 'one record per input');

  const out = path.join(dir, 'all.jsonl');
  writeFileSync(path.join(dir, 'torn.jsonl'), '{"file": "images/img0.png", "text"');
  const torn = await runCli(['merge', ...parts, path.join(dir, 'torn.jsonl'), '-o', out, '-q'], { env, cwd: dir });
  t.equal(torn.code, 1);
  t.match(torn.stderr, /torn\.jsonl:1: not JSON/);
  t.equal(files(readFileSync(out, 'utf8')).length, 10, '--output gets the merged records');
});

/** A `cxr-llava` on PATH that runs this checkout's build, as an installed package would. */
function shim(): string {
  const bin = path.join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, 'cxr-llava'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(ROOT, 'dist/bin/cxr-llava.js'))} "$@"\n`, { mode: 0o755 });
  return bin;
}

function sh(script: string, args: string[], env: Record<string, string | undefined>, cwd: string): number {
  try {
    execFileSync(script.endsWith('.sbatch') ? 'bash' : 'sh', args, { env: env as NodeJS.ProcessEnv, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    return 0;
  } catch (err) {
    return (err as { status: number }).status;
  }
}

t.test('docs/cluster: the Slurm array and the Indexed Job split the corpus the same way, locally', async (t) => {
  const bin = shim();
  const base = { ...cleanEnv(dir), PATH: `${bin}:${process.env.PATH}`, CXR_LLAVA_MODEL: path.join(modelDir, 'cxr-llava-v2.f32.gguf'), CXR_FLAGS: fast.slice(2).join(' ') };
  const sbatch = path.join(ROOT, 'docs/cluster/report-array.sbatch');
  const merge = path.join(ROOT, 'docs/cluster/merge.sbatch');
  const slurm = path.join(dir, 'slurm');
  mkdirSync(slurm);
  // The environment Slurm gives task i of an array of 4.
  for (let i = 0; i < 4; i++) {
    const code = sh(sbatch, [sbatch], { ...base, SLURM_ARRAY_TASK_ID: String(i), SLURM_ARRAY_TASK_COUNT: '4', SLURM_CPUS_PER_TASK: '1', RESULTS: slurm }, dir);
    const part = path.join(slurm, `part-${i}.jsonl`);
    const got = files(readFileSync(part, 'utf8'));
    t.same(got, list.filter((p) => shardOf(p, 4) === i + 1), `task ${i}: shard ${i + 1}/4`);
    t.equal(code, got.includes('images/broken.png') ? 1 : 0);
  }
  const m = sh(merge, [merge], { ...base, RESULTS: slurm }, dir);
  t.equal(m, 1, 'merge fails on the broken image');
  t.same(files(readFileSync(path.join(slurm, 'all.jsonl'), 'utf8')), list);

  // The Indexed Job: its own shard count, its container command, JOB_COMPLETION_INDEX per pod.
  const { parse } = await import('yaml');
  const job = parse(readFileSync(path.join(ROOT, 'docs/cluster/report-indexed-job.yaml'), 'utf8')) as {
    spec: { completions: number; completionMode: string; template: { spec: { containers: { command: string[]; args: string[]; env: { name: string; value: string }[] }[] } } };
  };
  t.equal(job.spec.completionMode, 'Indexed');
  const c = job.spec.template.spec.containers[0]!;
  const script = c.args[0]!;
  t.match(script, new RegExp(`--shard "\\$\\(\\(JOB_COMPLETION_INDEX \\+ 1\\)\\)/${job.spec.completions}"`), 'the shard count in the command is spec.completions');
  t.same(c.command, ['sh', '-c']);
  const k8s = path.join(dir, 'k8s');
  mkdirSync(k8s);
  const podEnv = { ...base, ...Object.fromEntries(c.env.map((e) => [e.name, e.value])), LIST: path.join(dir, 'list.txt'), RESULTS: k8s, CXR_LLAVA_MODEL: base.CXR_LLAVA_MODEL, CXR_FLAGS: base.CXR_FLAGS };
  const seen: string[] = [];
  for (let i = 0; i < job.spec.completions; i++) {
    sh('sh', ['-c', script], { ...podEnv, JOB_COMPLETION_INDEX: String(i) }, dir);
    const got = files(readFileSync(path.join(k8s, `part-${i}.jsonl`), 'utf8'));
    t.same(got, list.filter((p) => shardOf(p, job.spec.completions) === i + 1), `pod ${i}`);
    seen.push(...got);
  }
  t.same(seen.sort(), [...list].sort(), 'the pods cover the list once');
});
