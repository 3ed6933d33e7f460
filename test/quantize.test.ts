// The quantizers as the converter sees them from JS: byte sizes, round-trip
// error within each format's bound, and clear errors for impossible shapes.
// (Kernel-level checks, including fast-vs-reference dot products, are in
// native/tests/types/test_quants.cpp.)
import t from 'tap';
import { GGML_TYPES, dequantize, quantize, quantizeAsync, tensorBytes, type GgmlTypeName } from '../lib/index.js';

// Relative RMS error bounds (error RMS / data RMS) for Gaussian data, a little
// above what each format achieves (measured in native/tests/types/test_quants.cpp).

function gaussian(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  const uni = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(uni())) * Math.cos(2 * Math.PI * uni());
  return out;
}

const bounds: [GgmlTypeName, number][] = [['f32', 0], ['f16', 1e-3], ['bf16', 5e-3], ['q8_0', 0.01], ['q6_k', 0.025], ['q4_k', 0.085], ['q4_0', 0.1]];

for (const [type, bound] of bounds) {
  t.test(`${type}: size and round trip`, async (t) => {
    const rows = 3;
    const cols = 512;
    const x = gaussian(rows * cols, 7);
    const q = quantize(type, x, rows, cols);
    t.equal(q.length, tensorBytes(type, [cols, rows]), 'bytes match the ggml layout size');
    t.equal(q.length, rows * (cols / GGML_TYPES[type].blockSize) * GGML_TYPES[type].blockBytes);
    const y = dequantize(type, q, rows * cols);
    let err = 0;
    let ref = 0;
    for (let i = 0; i < x.length; i++) {
      err += (x[i]! - y[i]!) ** 2;
      ref += x[i]! ** 2;
    }
    const rel = Math.sqrt(err / ref);
    t.ok(rel <= bound, `relative RMSE ${rel.toExponential(3)} <= ${bound}`);
    if (type !== 'f32') t.ok(rel > 0, 'lossy types lose something (the check is not vacuous)');
  });
}

t.test('quantizeAsync gives the same bytes as quantize, for many rows over several threads', async (t) => {
  for (const type of ['q8_0', 'q4_k', 'f16'] as GgmlTypeName[]) {
    const rows = 37;
    const x = gaussian(rows * 256, 11);
    t.same(await quantizeAsync(type, x, rows, 256), quantize(type, x, rows, 256), type);
  }
  await t.rejects(quantizeAsync('q4_k', new Float32Array(64), 1, 64), { code: 'ERR_INVALID_ARG', message: /block size 256/ });
});

t.test('impossible shapes are clear errors', async (t) => {
  t.throws(() => quantize('q4_k', new Float32Array(64), 1, 64), { code: 'ERR_INVALID_ARG', message: /block size 256/ });
  t.throws(() => quantize('q8_0', new Float32Array(64), 2, 64), { message: /expected rows\*cols = 128/ });
  t.throws(() => quantize('q5_1' as never, new Float32Array(32), 1, 32), { message: /for type/ });
  t.throws(() => dequantize('q8_0', new Uint8Array(10), 32), { message: /byte length/ });
});
