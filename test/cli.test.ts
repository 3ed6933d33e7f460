// The CLI's surface without a model: --version, --help for every command,
// usage errors (exit 2), one-line errors (exit 1), and `info`.
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, ROOT, runCli } from './helpers/cli.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-cli0-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const env = cleanEnv(dir);
const COMMANDS = ['report', 'ddx', 'ask', 'chat', 'bench', 'pull', 'convert', 'info', 'serve'];

t.test('--version prints the package version', async (t) => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = await runCli([flag], { env });
    t.equal(r.code, 0);
    t.equal(r.stdout, pkg.version + '\n');
  }
});

t.test('the top-level help lists every command', async (t) => {
  const r = await runCli(['--help'], { env });
  t.equal(r.code, 0);
  for (const c of COMMANDS) t.match(r.stdout, new RegExp(`^  ${c} `, 'm'), c);
  t.match(r.stdout, /not for clinical use/);
});

for (const c of COMMANDS) {
  t.test(`${c} --help has a usage line and an example`, async (t) => {
    for (const args of [[c, '--help'], ['help', c]]) {
      const r = await runCli(args, { env });
      t.equal(r.code, 0, args.join(' '));
      t.match(r.stdout, new RegExp(`^Usage: cxr-llava ${c} `));
      t.match(r.stdout, new RegExp(`\\nExamples:\\n  \\$ cxr-llava ${c}`));
      t.equal(r.stderr, '');
    }
  });
}

t.test('usage errors exit 2 with one line naming the problem', async (t) => {
  const cases: [string[], string][] = [
    [['frobnicate'], "error: unknown command 'frobnicate'\n"],
    [['report', '--bogus', 'x.png'], "error: unknown option '--bogus'\n"],
    [['report'], "error: missing required argument 'images'\n"],
    [['ask', 'x.png'], "error: missing required argument 'question'\n"],
    [['report', 'x.png', '--temperature', 'hot'], "error: option '--temperature <t>' argument 'hot' is invalid. Expected a number in [0, 100] for temperature but received \"hot\" of type string\n"],
    [['report', 'x.png', '--top-p', '1.5'], "error: option '--top-p <p>' argument '1.5' is invalid. Expected a number in (0, 1] for topP but received 1.5\n"],
    [['report', 'x.png', '--max-tokens', '0'], "error: option '-n, --max-tokens <n>' argument '0' is invalid. Expected an integer in [1, 1048576] for maxTokens but received 0\n"],
    [['report', 'x.png', '--seed', '18446744073709551616'], "error: option '--seed <n>' argument '18446744073709551616' is invalid. Expected an integer in [0, 18446744073709551615] for seed but received 18446744073709551616\n"],
    [['report', 'x.png', '--threads', '-2'], "error: option '-t, --threads <n>' argument '-2' is invalid. Expected an integer in [1, 1024] for threads but received -2\n"],
    [['report', 'x.png', '--json', '--jsonl'], "error: option '--jsonl' cannot be used with option '--json'\n"],
    [['report', 'x.png', '--resume'], 'error: --resume needs --output <dir> (it skips inputs whose output file exists)\n'],
    [['report', '-', '-'], "error: '-' (read paths from stdin) may be given once\n"],
    [['ask', 'x.png', '  '], 'error: the question is empty\n'],
    [['info'], "error: missing required argument 'file'\n"],
  ];
  for (const [args, stderr] of cases) {
    const r = await runCli(args, { env });
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stderr, stderr, args.join(' '));
    t.equal(r.stdout, '');
  }
});

t.test('a failure is one line on stderr, exit 1; --verbose adds the stack', async (t) => {
  const missing = path.join(dir, 'missing.gguf');
  const r = await runCli(['info', missing], { env });
  t.equal(r.code, 1);
  t.match(r.stderr, new RegExp(`^error: ${missing.replace(/[.]/g, '\\.')}: [^\\n]+\\n$`));
  const v = await runCli(['--verbose', 'info', missing], { env });
  t.equal(v.code, 1);
  t.match(v.stderr, /^error: \w*Error: .*\n\s+at /);
  const emptyDir = path.join(dir, 'empty');
  mkdirSync(emptyDir);
  writeFileSync(path.join(emptyDir, 'notes.txt'), 'not a radiograph');
  const empty = await runCli(['report', emptyDir, '--model', missing], { env });
  t.equal(empty.code, 1);
  t.equal(empty.stderr, `error: no image files found in ${emptyDir} (folders contribute .png .jpg .jpeg .tif .tiff .webp .dcm and extension-less files; add --recursive to search subfolders)\n`);
});

t.test('info prints the tensor table of a GGUF', async (t) => {
  const file = path.join(dir, 'tiny.gguf');
  const hp = await writeTinyLlama(file, 'f32');
  const r = await runCli(['info', file], { env });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, new RegExp(`^${file.replace(/[.]/g, '\\.')}: GGUF v3, `));
  t.match(r.stdout, /^ {2}general\.architecture = "llama"$/m);
  t.match(r.stdout, new RegExp(`^ {2}llama\\.block_count = ${hp.numLayers}$`, 'm'));
  t.match(r.stdout, new RegExp(`^ {2}token_embd\\.weight +f32 +\\[${hp.hiddenSize}, ${hp.vocabSize}\\]`, 'm'));
  const j = await runCli(['info', file, '--json'], { env });
  const info = JSON.parse(j.stdout) as { tensors: { name: string }[] };
  t.ok(info.tensors.some((x) => x.name === 'output_norm.weight'));
});
