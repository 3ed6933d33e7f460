// DICOM rendering against dcmtk's dcm2pnm. Every fixture in
// test/fixtures/dicom/manifest.json (made by tools/fixtures/make_dicom_fixtures.sh)
// is decoded with the options recorded there and compared with the 8-bit PNG that
// dcm2pnm rendered with the same VOI choice: at least 99.9% of pixels exact and
// none off by more than one level. Lossy syntaxes are compared with the lossy
// decoder's own output (dcmtk or GDCM on the same file), not with the original.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeDicom, type DicomRenderOptions } from '../lib/inputs/dicom/index.js';

const dir = join(import.meta.dirname, 'fixtures', 'dicom');

interface Fixture {
  name: string;
  file: string;
  golden: string;
  oracle: string;
  options: DicomRenderOptions;
  transferSyntax: string;
}
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { fixtures: Fixture[] };

async function golden(file: string): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(readFileSync(join(dir, file))).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

// 12-bit JPEG has its own decoder and its own test (dicom-jpeg12.test.ts), golden included.
const rendered = manifest.fixtures.filter((f) => f.name !== 'jpeg-extended12');

t.test('the manifest covers every transfer syntax we claim', async (t) => {
  const syntaxes = new Set(manifest.fixtures.map((f) => f.transferSyntax));
  for (const uid of [
    '1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99',
    '1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.4.80',
    '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.5',
  ]) {
    t.ok(syntaxes.has(uid), uid);
  }
  t.ok(rendered.length === 28, `${rendered.length} rendered fixtures`);
});

for (const f of rendered) {
  t.test(`${f.name} matches ${f.oracle}`, async (t) => {
    const img = await decodeDicom(new Uint8Array(readFileSync(join(dir, f.file))), f.file, f.options);
    const ref = await golden(f.golden);
    t.equal(img.width, ref.width, 'width');
    t.equal(img.height, ref.height, 'height');
    t.equal(img.gray8.length, ref.data.length, 'pixel count');
    t.equal(img.transferSyntax, f.transferSyntax, 'transfer syntax');
    let exact = 0;
    let maxDiff = 0;
    for (let i = 0; i < ref.data.length; i++) {
      const d = Math.abs(img.gray8[i]! - ref.data[i]!);
      if (d === 0) exact++;
      if (d > maxDiff) maxDiff = d;
    }
    const pct = (100 * exact) / ref.data.length;
    t.comment(`${f.name}: ${pct.toFixed(3)}% exact, max diff ${maxDiff}`);
    t.ok(pct >= 99.9, `${pct.toFixed(3)}% of pixels exact (>= 99.9%)`);
    t.ok(maxDiff <= 1, `max difference ${maxDiff} (<= 1)`);
    // The renderer must not be a constant picture that could match by luck.
    t.ok(new Set(img.gray8).size > 32, 'uses more than 32 gray levels');
  });
}

t.test('warnings: multi-frame, lateral view, body part not CHEST', async (t) => {
  const warn = async (file: string) => (await decodeDicom(new Uint8Array(readFileSync(join(dir, file))), file)).warnings;
  t.same(await warn('multiframe.dcm'), ['multi-frame image (3 frames): only frame 1 is used']);
  t.same(await warn('lateral.dcm'), ['view position is LL; the model was trained on frontal chest radiographs']);
  t.same(await warn('notchest.dcm'), ['body part examined is SKULL, not CHEST; the model was trained on chest radiographs']);
  t.same(await warn('evrle.dcm'), [], 'a frontal chest radiograph gives no warning');
});

t.test('multi-frame: frame 1 is rendered, not a later one', async (t) => {
  // Frame 2 of the fixture is the inverse of frame 1, so frame 1 must match
  // the single-frame rendering of the same data.
  const multi = await decodeDicom(new Uint8Array(readFileSync(join(dir, 'multiframe.dcm'))), 'multiframe.dcm');
  const single = await decodeDicom(new Uint8Array(readFileSync(join(dir, 'evrle.dcm'))), 'evrle.dcm');
  t.same(Buffer.from(multi.gray8), Buffer.from(single.gray8));
});

t.test('privacy: no patient identifiers in the result, SOP Instance UID kept', async (t) => {
  for (const file of ['ivrle.dcm', 'jpegls-lossless.dcm', 'rgb.dcm', 'multiframe.dcm']) {
    const img = await decodeDicom(new Uint8Array(readFileSync(join(dir, file))), file);
    const { gray8: _pixels, ...rest } = img;
    const text = JSON.stringify(rest);
    for (const id of ['DOE', 'JANE', 'PID-8675309', '19700101', 'ACC-424242']) t.notOk(text.includes(id), `${file} has no ${id}`);
    t.match(img.sopInstanceUid ?? '', /^[0-9.]+$/, `${file} SOP Instance UID`);
  }
  const img = await decodeDicom(new Uint8Array(readFileSync(join(dir, 'ivrle.dcm'))), 'ivrle.dcm');
  t.equal(img.sopInstanceUid, '1.2.826.0.1.3680043.8.498.100.1');
  t.equal(img.bitsStored, 12);
});
