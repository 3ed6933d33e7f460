// DICOM and 16-bit inputs through the public preprocessing and model API:
// detected by content, rendered like a viewer, then the same official
// preprocessing as any PNG. Rendering itself is checked against dcmtk in
// test/dicom-render.test.ts; this checks the routing.
import t from 'tap';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, preprocessImage } from '../lib/index.js';
import { quantize } from '../lib/runtime/tensors.js';
import { writeTinyLlama } from './helpers/tiny-llama.js';
import { writeTinyMmproj } from './helpers/tiny-vision.js';

const fixtures = fileURLToPath(new URL('./fixtures/dicom/', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'cxr-dcm-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('the same radiograph as lossless DICOM and as PNG gives identical tensors', async (t) => {
  const a = await preprocessImage(path.join(fixtures, 'same8.dcm'));
  const b = await preprocessImage(path.join(fixtures, 'same8.png'));
  t.equal(a.length, 512 * 512);
  t.same(a, b);
});

t.test('DICOM is recognised by content, not by extension', async (t) => {
  const renamed = path.join(dir, 'scan.png');
  copyFileSync(path.join(fixtures, 'evrle.dcm'), renamed);
  t.same(await preprocessImage(renamed), await preprocessImage(path.join(fixtures, 'evrle.dcm')));
  t.same(await preprocessImage(readFileSync(path.join(fixtures, 'evrle.dcm'))), await preprocessImage(renamed), 'a Buffer too');
});

t.test('a window override changes the rendering', async (t) => {
  const file = path.join(fixtures, 'evrle.dcm');
  const a = await preprocessImage(file);
  const b = await preprocessImage(file, { window: { center: 300, width: 200 } } as never);
  t.not(a.join(), b.join());
});

t.test('16-bit PNG and TIFF are accepted', async (t) => {
  for (const f of ['hb16.png', 'hb16.tif', 'hb12.png']) {
    const x = await preprocessImage(path.join(fixtures, f));
    t.equal(x.length, 512 * 512, f);
  }
});

t.test('reports on DICOM carry warnings and the SOP Instance UID, never patient identifiers', async (t) => {
  const text = path.join(dir, 'tiny.gguf');
  const mmproj = path.join(dir, 'mmproj.gguf');
  await writeTinyLlama(text, 'f32');
  await writeTinyMmproj(mmproj, 'f32', { quantize });
  const model = await loadModel({ model: text, mmproj, threads: 2 });
  t.teardown(() => model.close());
  const r = await model.report(path.join(fixtures, 'lateral.dcm'), { temperature: 0, maxTokens: 3 });
  t.match(r.warnings?.join('\n'), /view position is LL/, 'a lateral view is reported, and the report still produced');
  t.equal(r.tokens.length, 3);
  t.match(r.sopInstanceUid, /^[0-9.]+$/);
  const png = await model.report(path.join(fixtures, 'same8.png'), { temperature: 0, maxTokens: 3 });
  t.same(png.warnings, [], 'no warnings for a plain PNG');
  t.equal(png.sopInstanceUid, undefined);
  const json = JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
  t.notMatch(json, /PatientName|PatientID|BirthDate|Accession/i);
  await t.rejects(model.report(path.join(fixtures, 'bad-sr-no-pixels.dcm')), { code: 'ERR_IMAGE', message: /bad-sr-no-pixels\.dcm/ });
});
