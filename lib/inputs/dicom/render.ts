/**
 * Stored pixel values -> 8-bit gray, following the grayscale pipeline of DICOM
 * PS3.3 C.11: Bits Stored masking and sign, Modality LUT, VOI LUT, Presentation
 * LUT (MONOCHROME1 / INVERSE). The arithmetic and the truncation to an integer
 * follow dcmtk's dcm2pnm, which the tests use as the oracle, so that a file
 * renders here as it does there (see docs/dicom.md for each formula).
 */

import type { Lut } from './parse.js';

/** One VOI choice, already resolved. */
export type Voi =
  | { kind: 'window'; center: number; width: number; fn: 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID' }
  | { kind: 'lut'; lut: Lut }
  | { kind: 'identity8' };

/** Stored sample -> value, for `bitsStored` bits at bit `shift`, two's complement when signed. */
export function storedValues(raw: ArrayLike<number>, count: number, stride: number, shift: number, bitsStored: number, signed: boolean): Float64Array {
  const out = new Float64Array(count);
  const mask = bitsStored >= 32 ? 0xffffffff : 2 ** bitsStored - 1;
  const signBit = 2 ** (bitsStored - 1);
  for (let i = 0; i < count; i++) {
    // >>> and a modulo keep this right for 32-bit samples too
    let v = Math.floor(raw[i * stride]! / 2 ** shift) % (mask + 1);
    if (signed && v >= signBit) v -= 2 * signBit;
    out[i] = v;
  }
  return out;
}

/**
 * Modality LUT: the LUT when present, else Rescale Slope/Intercept (C.11.1). A
 * rescaled value is truncated toward zero to an integer, as dcmtk's integer
 * intermediate image does; it moves a rendered pixel by at most one level.
 */
export function applyModality(v: Float64Array, slope: number, intercept: number, lut?: Lut): Float64Array {
  if (lut) {
    const last = lut.count - 1;
    for (let i = 0; i < v.length; i++) {
      const k = v[i]! - lut.firstMapped;
      v[i] = lut.data[k <= 0 ? 0 : k >= last ? last : k]!;
    }
  } else if (slope !== 1 || intercept !== 0) {
    for (let i = 0; i < v.length; i++) v[i] = Math.trunc(v[i]! * slope + intercept);
  }
  return v;
}

/** The data-range window: the one that maps min..max onto the whole output (dcm2pnm +Wm). */
export function dataRangeWindow(v: ArrayLike<number>): { center: number; width: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  // PS3.3 C.11.2.1.2: center 2^n-1 and width 2^n select 0..2^n-1, hence the +1s.
  return { center: (min + max + 1) / 2, width: max - min + 1 };
}

/** Applies `voi` and the presentation inversion, giving 0..255. */
export function toGray8(v: ArrayLike<number>, voi: Voi, inverse: boolean): Uint8Array {
  const n = v.length;
  const out = new Uint8Array(n);
  // dcmtk inverts by swapping the ends of the output range.
  const low = inverse ? 255 : 0;
  const high = inverse ? 0 : 255;
  const clamp = (y: number) => (y <= 0 ? 0 : y >= 255 ? 255 : Math.trunc(y));

  if (voi.kind === 'identity8') {
    for (let i = 0; i < n; i++) out[i] = inverse ? 255 - clamp(v[i]!) : clamp(v[i]!);
    return out;
  }
  if (voi.kind === 'lut') {
    // y = LUT[x] scaled from the LUT's bit depth to 256 levels, truncated (C.11.2.1.1).
    const { lut } = voi;
    const last = lut.count - 1;
    const bits = lut.bits >= 8 && lut.bits <= 16 ? lut.bits : 16;
    const gradient = 256 / 2 ** bits;
    for (let i = 0; i < n; i++) {
      const k = v[i]! - lut.firstMapped;
      const y = clamp(lut.data[k <= 0 ? 0 : k >= last ? last : Math.trunc(k)]! * gradient);
      out[i] = inverse ? 255 - y : y;
    }
    return out;
  }

  const { center: c, width: w, fn } = voi;
  if (fn === 'SIGMOID') {
    // C.11.2.1.3.1: y = (ymax - ymin) / (1 + exp(-4 (x - c) / w)) + ymin
    for (let i = 0; i < n; i++) {
      const y = clamp(255 / (1 + Math.exp((-4 * (v[i]! - c)) / w)));
      out[i] = inverse ? 255 - y : y;
    }
    return out;
  }
  if (fn === 'LINEAR_EXACT') {
    // C.11.2.1.3.2: no half-pixel offset, width used as is.
    const left = c - w / 2;
    const right = c + w / 2;
    for (let i = 0; i < n; i++) {
      const x = v[i]!;
      const y = x <= left ? 0 : x > right ? 255 : clamp(((x - c) / w + 0.5) * 255);
      out[i] = inverse ? 255 - y : y;
    }
    return out;
  }
  // LINEAR, C.11.2.1.2.1, written as offset + x * gradient in the order dcmtk
  // evaluates it, so that values landing exactly on a level truncate the same way.
  const w1 = w - 1;
  const left = c - 0.5 - w1 / 2;
  const right = c - 0.5 + w1 / 2;
  const outrange = high - low;
  const offset = w1 === 0 ? 0 : high - ((c - 0.5) / w1 + 0.5) * outrange;
  const gradient = w1 === 0 ? 0 : outrange / w1;
  for (let i = 0; i < n; i++) {
    const x = v[i]!;
    out[i] = x <= left ? low : x > right ? high : clamp(offset + x * gradient);
  }
  return out;
}

/** PIL's ITU-R 601-2 luma, in its fixed-point form: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16. */
export function luma(rgb: ArrayLike<number>, pixels: number, shift = 0): Uint8Array {
  const out = new Uint8Array(pixels);
  for (let i = 0; i < pixels; i++) {
    const r = rgb[i * 3]! >> shift;
    const g = rgb[i * 3 + 1]! >> shift;
    const b = rgb[i * 3 + 2]! >> shift;
    out[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16;
  }
  return out;
}

/**
 * YBR_FULL -> RGB (PS3.3 C.7.6.3.1.2) the two ways dcmtk converts uncompressed YBR.
 * YBR_FULL goes through tables of truncated products:
 *   R = Y + trunc(1.402 Cr - 0.701 max), G = Y - trunc(0.3441 Cb) - trunc(0.7141 Cr - 0.5291 max),
 *   B = Y + trunc(1.772 Cb - 0.8859 max);
 * YBR_FULL_422 is computed in one expression per channel and then truncated. Both
 * clamp to 0..max; each was checked against dcm2pnm on every pixel of its fixture.
 */
export function ybrFullToRgb(ybr: ArrayLike<number>, pixels: number, bits: number, from422 = false): Uint32Array {
  const max = 2 ** bits - 1;
  const out = new Uint32Array(pixels * 3);
  const clamp = (v: number) => (v <= 0 ? 0 : v >= max ? max : Math.trunc(v));
  for (let i = 0; i < pixels; i++) {
    const y = ybr[i * 3]!;
    const cb = ybr[i * 3 + 1]!;
    const cr = ybr[i * 3 + 2]!;
    if (from422) {
      out[i * 3] = clamp(y + 1.402 * cr - 0.701 * max);
      out[i * 3 + 1] = clamp(y - 0.3441 * cb - 0.7141 * cr + 0.5291 * max);
      out[i * 3 + 2] = clamp(y + 1.772 * cb - 0.8859 * max);
    } else {
      out[i * 3] = clamp(y + Math.trunc(1.402 * cr - 0.701 * max));
      out[i * 3 + 1] = clamp(y - Math.trunc(0.3441 * cb) - Math.trunc(0.7141 * cr - 0.5291 * max));
      out[i * 3 + 2] = clamp(y + Math.trunc(1.772 * cb - 0.8859 * max));
    }
  }
  return out;
}
