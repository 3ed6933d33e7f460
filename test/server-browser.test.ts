// The page in a real browser: headless Debian chromium driven by
// playwright-core. Opens a radiograph with the keyboard shortcut, watches the
// report stream in, checks the model's view and the timings, downloads the
// record, asks a follow-up with the keyboard, and takes a screenshot.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { chromium } from 'playwright-core';
import { cleanEnv, writeTinyCxrModel } from './helpers/cli.js';
import { startServer } from './helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) {
  if (process.env.CXR_REQUIRE_BROWSER) throw new Error(`${CHROMIUM} is missing (apt-get install -y chromium); .ci/run installs it`);
  t.comment(`${CHROMIUM} not found: the browser test is skipped (apt-get install -y chromium)`);
  process.exit(0);
}

const dir = mkdtempSync(path.join(tmpdir(), 'cxr-serve-web-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const modelDir = path.join(dir, 'model');
await writeTinyCxrModel(modelDir);

/** A radiograph-like test image: dark lungs in a bright chest, 600x500 JPEG. */
async function chestImage(): Promise<Buffer> {
  const w = 500;
  const h = 600;
  const px = Buffer.alloc(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const lung = (cx: number): number => ((x - cx) / 95) ** 2 + ((y - 300) / 200) ** 2;
      const inLung = lung(160) < 1 || lung(340) < 1;
      const rib = Math.sin(y / 14) > 0.85 ? 40 : 0;
      px[y * w + x] = Math.min(255, (inLung ? 50 : 190) + rib + ((x * 7 + y * 3) % 11));
    }
  }
  return sharp(px, { raw: { width: w, height: h, channels: 1 } }).jpeg().toBuffer();
}
const imagePath = path.join(dir, 'chest-pa.jpg');
writeFileSync(imagePath, await chestImage());

const server = await startServer(['--model', modelDir, '--threads', '1', '-q', '--ctx', '2048'], { env: cleanEnv(dir) });
t.teardown(() => server.stop());

t.test('upload, streamed report, model view, record download, follow-up, screenshot', async (t) => {
  // A fresh profile (--user-data-dir) per run: playwright passes it for a persistent context.
  const context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
    acceptDownloads: true,
  });
  t.teardown(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  const offsite: string[] = [];
  page.on('request', (r) => !r.url().startsWith(server.url) && !r.url().startsWith('data:') && !r.url().startsWith('blob:') && offsite.push(r.url()));

  await page.goto(`${server.url}/`);
  await page.waitForSelector('#status.ok');
  t.equal(await page.textContent('#model-id'), 'cxr-llava-v2.f32', 'the model is shown');
  t.match(await page.textContent('.notice'), /Not for clinical use/);
  t.ok(await page.isVisible('.notice'), 'the notice is visible');

  // Count the report's updates while it is being written: it must arrive in pieces.
  await page.evaluate(() => {
    const w = window as unknown as { updates: number };
    w.updates = 0;
    new MutationObserver(() => {
      if (document.getElementById('report')!.classList.contains('writing')) w.updates++;
    }).observe(document.getElementById('report')!, { childList: true, characterData: true, subtree: true });
  });
  // The page is ready (its key handlers attached, the model's info shown) before the first key.
  await page.waitForFunction(() => document.querySelector('.status.ok') !== null, null, { timeout: 60_000 });
  // Keyboard: "o" opens the file picker.
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.keyboard.press('o')]);
  await chooser.setFiles(imagePath);
  await page.waitForFunction(() => !(document.getElementById('download') as HTMLButtonElement).disabled, null, { timeout: 60_000 });

  const report = (await page.textContent('#report'))!;
  t.ok(report.length > 10, 'a report was written');
  const updates = await page.evaluate(() => (window as unknown as { updates: number }).updates);
  t.ok(updates > 3, `the report streamed in (${updates} updates while writing)`);
  t.match(await page.textContent('#file-name'), /chest-pa\.jpg/);
  t.ok(await page.isVisible('#img-model'), "the model's view is shown");
  t.equal(await page.evaluate(() => (document.getElementById('img-model') as HTMLImageElement).naturalWidth), 64, "it is the tiny model's 64x64 input");
  const timings = (await page.textContent('#timings'))!;
  for (const k of ['first token', 'encode', 'prefill', 'decode', 'seed']) t.match(timings, k, `timings show ${k}`);

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  t.equal(download.suggestedFilename(), 'chest-pa.cxr-llava.json');
  const record = JSON.parse(readFileSync((await download.path())!, 'utf8')) as { file: string; task: string; text: string; model: string; error: null };
  t.match(record, { file: 'chest-pa.jpg', task: 'report', model: 'cxr-llava-v2.f32.gguf', error: null });
  t.equal(record.text, report, 'the record holds the text shown');

  // Keyboard: "/" focuses the question box, Enter asks.
  await page.keyboard.press('/');
  t.equal(await page.evaluate(() => document.activeElement?.id), 'question');
  await page.keyboard.type('Is there a pleural effusion?');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /first token/.test(document.querySelector('#chat .meta')?.textContent ?? ''), null, { timeout: 60_000 });
  t.equal(await page.textContent('#chat .q'), 'Is there a pleural effusion?');
  t.ok(((await page.textContent('#chat .answer')) ?? '').length > 0, 'the follow-up was answered');
  const meta = (await page.textContent('#chat .meta'))!;
  const reused = Number(/(\d+) reused/.exec(meta)?.[1] ?? 0);
  t.ok(reused > 16, `the follow-up reused the report's KV cache (${meta})`);

  const shot = process.env.CXR_SCREENSHOT ?? path.join(dir, 'page.png');
  await page.screenshot({ path: shot });
  const meta2 = await sharp(shot).metadata();
  t.same([meta2.width, meta2.height], [1400, 900], `screenshot at ${shot}`);
  t.same(problems, [], 'no errors in the page');
  t.same(offsite, [], 'nothing loaded from outside the server');
});
