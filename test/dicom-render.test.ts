// DICOM rendering against dcmtk's dcm2pnm: the conformance matrix. Every fixture in
// test/fixtures/dicom/manifest.json (made by tools/fixtures/make_dicom_fixtures.sh
// with dcmtk and GDCM) is decoded through the public API, from its path and from a
// Buffer that views the middle of a larger block, with the options recorded there,
// and compared with the 8-bit PNG that dcm2pnm rendered with the same VOI choice:
// at least 99.9% of pixels exact and none off by more than one level. Lossy
// syntaxes are compared with the lossy decoder's own output (dcmtk or GDCM on the
// same file), not with the original, and are held to the same bar.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadGray8 } from '../lib/index.js';
import { decodeDicom, type DicomRenderOptions } from '../lib/inputs/dicom/index.js';

const dir = join(import.meta.dirname, 'fixtures', 'dicom');

interface Fixture {
  name: string;
  file: string;
  golden: string;
  oracle: string;
  options: DicomRenderOptions;
  transferSyntax: string;
  class: string;
  lossless?: boolean;
}
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { fixtures: Fixture[] };

async function golden(file: string): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(readFileSync(join(dir, file))).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

const rendered = manifest.fixtures;

/** The file's bytes as Node often hands them over: a Buffer in the middle of a larger block. */
function sliceOfLarger(file: string): Buffer {
  const bytes = readFileSync(join(dir, file));
  const block = Buffer.alloc(bytes.length + 1001, 0x5a);
  bytes.copy(block, 517);
  return block.subarray(517, 517 + bytes.length);
}

t.test('the manifest covers every transfer syntax we claim', async (t) => {
  const syntaxes = new Set(manifest.fixtures.map((f) => f.transferSyntax));
  for (const uid of [
    '1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99',
    '1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.4.80',
    '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.5',
  ]) {
    t.ok(syntaxes.has(uid), uid);
  }
  t.ok(rendered.length >= 130, `${rendered.length} rendered fixtures`);
  t.ok(syntaxes.has('1.2.840.10008.1.2.4.57'), 'JPEG lossless with selection values other than 1');
  const names = new Set(rendered.map((f) => f.name));
  // The layouts and sample formats of the matrix in docs/dicom.md.
  for (const name of [
    'm-frag-jpegll-nobot', 'm-frag-jpegll-split', 'm-frag-jpegll-mf', 'm-frag-jpegll-mf-nobot', 'm-frag-jpegll-mf-split-nobot',
    'm-frag-jpegls-mf-split-nobot', 'm-frag-rle-mf', 'm-frag-j2k-mf', 'm-frag-jpegll-mf-eot', 'm-frag-jpegls-mf-eot', 'm-frag-jpegll-odd',
    'm-c8-evrle', 'm-c8s-evrbe', 'm-c12-evrbe', 'm-c16s-evrbe', 'm-c32-evrbe', 'm-c32s-evrbe', 'm-c24in32-evrbe', 'm-c12hi-evrle', 'm-c12m1-jpegls',
    'm-crgbp-evrle', 'm-cybr-evrle', 'm-cybrp-evrle', 'm-cybr422-evrle', 'm-crgb-jpeg-baseline', 'm-crgb-jpeg-gdcm', 'm-crgb-jpeg-app14-rgb',
    'm-cybr-jpeg-app14-notransform', 'm-crgb16-rle', 'm-c32-rle', 'm-c12-nometa-ivrle', 'm-c16-nometa-evrle', 'm-c12pad-evrle', 'm-c12-j2k-lossy',
  ]) {
    t.ok(names.has(name), name);
  }
  for (let sv = 1; sv <= 7; sv++) t.ok(names.has(`m-c12-jpeg-p14-sv${sv}`), `selection value ${sv}`);
});

// Pixels exact per fixture class, for the report and docs/dicom.md.
const figures = new Map<string, { files: number; exact: number; pixels: number; maxDiff: number }>();
t.teardown(() => {
  for (const [klass, f] of figures) {
    console.error(`# dicom class ${klass}: ${f.files} files, ${((100 * f.exact) / f.pixels).toFixed(3)}% of pixels exact, max diff ${f.maxDiff}`);
  }
});

for (const f of rendered) {
  t.test(`${f.name} matches ${f.oracle}`, async (t) => {
    const img = await loadGray8(join(dir, f.file), f.options);
    const fromSlice = await loadGray8(sliceOfLarger(f.file), f.options);
    t.ok(Buffer.from(fromSlice.data).equals(Buffer.from(img.data)), 'a Buffer slice of a larger block gives the same pixels as the path');
    const ref = await golden(f.golden);
    t.equal(img.width, ref.width, 'width');
    t.equal(img.height, ref.height, 'height');
    t.equal(img.data.length, ref.data.length, 'pixel count');
    const inner = await decodeDicom(new Uint8Array(readFileSync(join(dir, f.file))), f.file, f.options);
    t.equal(inner.transferSyntax, f.transferSyntax, 'transfer syntax');
    let exact = 0;
    let maxDiff = 0;
    for (let i = 0; i < ref.data.length; i++) {
      const d = Math.abs(img.data[i]! - ref.data[i]!);
      if (d === 0) exact++;
      if (d > maxDiff) maxDiff = d;
    }
    const fig = figures.get(f.class) ?? { files: 0, exact: 0, pixels: 0, maxDiff: 0 };
    figures.set(f.class, { files: fig.files + 1, exact: fig.exact + exact, pixels: fig.pixels + ref.data.length, maxDiff: Math.max(fig.maxDiff, maxDiff) });
    const pct = (100 * exact) / ref.data.length;
    t.comment(`${f.name}: ${pct.toFixed(3)}% exact, max diff ${maxDiff}`);
    t.ok(pct >= 99.9, `${pct.toFixed(3)}% of pixels exact (>= 99.9%)`);
    t.ok(maxDiff <= 1, `max difference ${maxDiff} (<= 1)`);
    // The renderer must not be a constant picture that could match by luck.
    t.ok(new Set(img.data).size > 32, 'uses more than 32 gray levels');
  });
}

t.test('warnings: multi-frame, lateral view, body part not CHEST', async (t) => {
  const warn = async (file: string) => (await loadGray8(join(dir, file))).warnings;
  t.same(await warn('multiframe.dcm'), ['multi-frame image (3 frames): only frame 1 is used']);
  t.same(await warn('lateral.dcm'), ['view position is LL; the model was trained on frontal chest radiographs']);
  t.same(await warn('notchest.dcm'), ['body part examined is SKULL, not CHEST; the model was trained on chest radiographs']);
  t.same(await warn('evrle.dcm'), [], 'a frontal chest radiograph gives no warning');
});

t.test('multi-frame: frame 1 is rendered, not a later one', async (t) => {
  // Frame 2 of the fixture is the inverse of frame 1, so frame 1 must match
  // the single-frame rendering of the same data.
  const multi = await loadGray8(join(dir, 'multiframe.dcm'));
  const single = await loadGray8(sliceOfLarger('evrle.dcm'));
  t.same(Buffer.from(multi.data), Buffer.from(single.data));
  for (const [m, s1] of [['m-frag-jpegll-mf-split-nobot', 'm-frag-jpegll-split'], ['m-frag-jpegls-mf-eot', 'm-c12-jpegls']]) {
    const a = await loadGray8(join(dir, `${m}.dcm`));
    const b = await loadGray8(join(dir, `${s1}.dcm`));
    t.ok(Buffer.from(a.data).equals(Buffer.from(b.data)), `${m}: frame 1 found among the fragments`);
  }
});

t.test('privacy: no patient identifiers in the result, SOP Instance UID kept', async (t) => {
  for (const file of ['ivrle.dcm', 'jpegls-lossless.dcm', 'rgb.dcm', 'multiframe.dcm']) {
    const img = await loadGray8(sliceOfLarger(file), { name: file });
    const { data: _pixels, ...rest } = img;
    const text = JSON.stringify(rest);
    for (const id of ['DOE', 'JANE', 'PID-8675309', '19700101', 'ACC-424242']) t.notOk(text.includes(id), `${file} has no ${id}`);
    t.match(img.sopInstanceUid ?? '', /^[0-9.]+$/, `${file} SOP Instance UID`);
  }
  const img = await decodeDicom(new Uint8Array(readFileSync(join(dir, 'ivrle.dcm'))), 'ivrle.dcm');
  t.equal(img.sopInstanceUid, '1.2.826.0.1.3680043.8.498.100.1');
  t.equal(img.bitsStored, 12);
});
