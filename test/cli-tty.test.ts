// Terminal behaviour through a real pseudo-terminal (util-linux `script`): on a
// TTY the report streams and a progress bar is drawn on stderr; through a pipe
// there is neither, and --jsonl output is clean. Also the chat prompt's keys.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, imageBytes, runCli, runInPty, withoutBar, writeTinyCxrModel } from './helpers/cli.js';
import { writeFile } from 'node:fs/promises';

let haveScript = true;
try {
  execFileSync('script', ['--version'], { stdio: 'ignore' });
} catch {
  haveScript = false;
}

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-tty-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);
const a = path.join(dir, 'a.png');
const b = path.join(dir, 'b.png');
await writeFile(a, await imageBytes(64, 64, 1));
await writeFile(b, await imageBytes(90, 70, 2));
const env = cleanEnv(dir);
const fast = ['--model', modelDir, '--temperature', '0', '--max-tokens', '8', '--threads', '1'];
/** A drawn bar: "[###---...] 1/2  <stage>". */
/** readline's prompt at the start of a line: "> ", with its cursor-positioning codes. */
const PROMPT = '\\r\\n(?:\\x1b\\[[0-9;]*[A-Za-z])*> ';
const BAR = /\r\[[#-]{10,}\] (\d)\/2 {2}(read|encode|prefill|generate|done)/g;

t.test('on a terminal: the bar is drawn and each report streams under its header', { skip: !haveScript && 'no script(1)' }, async (t) => {
  const piped = await runCli(['report', a, b, ...fast], { env });
  t.equal(piped.code, 0, piped.stderr);

  const tty = await runInPty(['report', a, b, ...fast], { env });
  t.equal(tty.code, 0, tty.stdout);
  const bars = [...tty.stdout.matchAll(BAR)];
  t.ok(bars.length >= 2, `progress bar drawn (${bars.length} frames)`);
  t.ok(bars.some((m) => m[1] === '1'), 'the count moves on');
  // Streaming: the bar is drawn after image 1's header and before its first
  // word, which only happens when the header is written before generation.
  const header = tty.stdout.indexOf(`==> ${a} <==`);
  const firstWords = piped.stdout.split('\n')[1]!.slice(0, 4);
  const firstBarAfter = tty.stdout.slice(header).search(/\r\[[#-]+\] 0\/2 {2}(read|encode|prefill)/);
  t.ok(header >= 0 && firstBarAfter > 0, 'a bar frame follows the header');
  t.ok(tty.stdout.indexOf(firstWords, header) > header + firstBarAfter, 'the text comes after that frame');
  // Without the bar's frames, the terminal shows what the pipe carried, plus the summary.
  t.equal(withoutBar(tty.stdout), piped.stdout + piped.stderr);
});

t.test('through a pipe: no bar, no escape codes, one clean JSON object per line', async (t) => {
  const r = await runCli(['report', a, b, '--jsonl', ...fast], { env });
  t.equal(r.code, 0);
  t.notMatch(r.stdout + r.stderr, /[\r\x1b]/);
  const lines = r.stdout.trimEnd().split('\n');
  t.equal(lines.length, 2);
  for (const l of lines) t.doesNotThrow(() => JSON.parse(l));
  t.match(r.stderr, /^2 done, 0 failed in \d+:\d\d\n$/);
  const quiet = await runCli(['report', a, b, '--jsonl', '--quiet', ...fast], { env });
  t.equal(quiet.stderr, '', '--quiet: nothing on stderr');
});

t.test('on a terminal with --jsonl: the bar still shows on stderr, records stay whole', { skip: !haveScript && 'no script(1)' }, async (t) => {
  const r = await runInPty(['report', a, b, '--jsonl', ...fast], { env });
  t.equal(r.code, 0);
  t.ok([...r.stdout.matchAll(BAR)].length >= 1);
  const lines = withoutBar(r.stdout).trimEnd().split('\n');
  t.equal(lines.length, 3, 'two records and the summary');
  for (const l of lines.slice(0, 2)) t.equal((JSON.parse(l) as { error: unknown }).error, null);
});

t.test('chat on a terminal: Ctrl-C at the prompt does not exit, Ctrl-D does', { skip: !haveScript && 'no script(1)' }, async (t) => {
  const r = await runInPty(['chat', a, ...fast], {
    env,
    steps: [
      { expect: new RegExp(`Ctrl-D exits\\.${PROMPT}`), send: 'Is the heart enlarged?\r' },
      { expect: new RegExp(PROMPT), send: '\x03' },
      { expect: new RegExp(`\\^C {2}\\(Ctrl-D exits\\)${PROMPT}`), send: 'Any effusion?\r' },
      { expect: new RegExp(PROMPT), send: '\x04' },
    ],
    timeoutMs: 30_000,
  });
  t.equal(r.code, 0, r.stdout);
  const answers = [...r.stdout.matchAll(/(?:Is the heart enlarged\?|Any effusion\?)\r\r?\n([^\r\n]+)\r\n/g)].map((m) => m[1]);
  t.equal(answers.length, 2, 'both questions answered');
  const piped = await runCli(['chat', a, ...fast], { env, stdin: 'Is the heart enlarged?\nAny effusion?\n' });
  t.same(answers, piped.stdout.trimEnd().split('\n'), 'the same answers as through a pipe: Ctrl-C at the prompt changed nothing');
});
