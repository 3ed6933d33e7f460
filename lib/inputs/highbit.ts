/**
 * 16-bit PNG and TIFF radiographs -> 8-bit gray. The rule is the DICOM one for a
 * file with no VOI: a linear window over the image's own value range (center
 * (min+max+1)/2, width max-min+1, PS3.3 C.11.2.1.2), so min maps to 0 and max to
 * 255; or the caller's window. 8-bit files are not handled here (returns null).
 */

import sharp from 'sharp';
import { dataRangeWindow, toGray8 } from './dicom/render.js';
import type { Gray8Image } from './dicom/index.js';
import { CxrError, invalidParameterError } from '../errors.js';

export interface HighBitOptions {
  /** Window to use instead of the data range (optional, default min..max of the image). */
  window?: { center: number; width: number };
}

/** Decodes a 16-bit PNG or TIFF to 8-bit gray; null for any other file. */
export async function decodeHighBit(bytes: Uint8Array, name: string, opts: HighBitOptions = {}): Promise<Gray8Image | null> {
  if (opts.window !== undefined) {
    const { center, width } = opts.window ?? {};
    if (typeof center !== 'number' || !Number.isFinite(center)) throw invalidParameterError('window.center', 'finite number', center);
    if (typeof width !== 'number' || !Number.isFinite(width) || width < 1) throw invalidParameterError('window.width', 'number >= 1', width);
  }
  let meta: sharp.Metadata;
  try {
    meta = await sharp(bytes).metadata();
  } catch {
    return null; // not an image sharp knows: not ours to judge
  }
  if ((meta.format !== 'png' && meta.format !== 'tiff') || (meta.depth !== 'ushort' && meta.depth !== 'short')) return null;
  const signed = meta.depth === 'short';
  let raw: { data: Buffer; info: sharp.OutputInfo };
  try {
    // Without an explicit 16-bit colourspace sharp converts to 8-bit sRGB first.
    const space = (meta.channels ?? 1) >= 3 ? 'rgb16' : 'grey16';
    raw = await sharp(bytes).toColourspace(space).raw({ depth: meta.depth }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw new CxrError('ERR_IMAGE', `${name}: cannot decode 16-bit ${meta.format?.toUpperCase()} (${(err as Error).message})`, { cause: err });
  }
  const { width, height, channels } = raw.info;
  const pixels = width * height;
  // A typed array over a Buffer needs an even byte offset; copy when sharp's is odd.
  const buf = raw.data.byteOffset % 2 === 0 ? raw.data : Buffer.from(raw.data);
  const samples = signed
    ? new Int16Array(buf.buffer, buf.byteOffset, pixels * channels)
    : new Uint16Array(buf.buffer, buf.byteOffset, pixels * channels);
  const values = new Float64Array(pixels);
  const warnings: string[] = [];
  if (channels >= 3) {
    // Colour: the same fixed-point luma as for 8-bit images, on 16-bit samples.
    const rgb = new Float64Array(pixels * 3);
    for (let i = 0; i < pixels; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = samples[i * channels + c]!;
    for (let i = 0; i < pixels; i++) {
      values[i] = Math.floor((rgb[i * 3]! * 19595 + rgb[i * 3 + 1]! * 38470 + rgb[i * 3 + 2]! * 7471 + 0x8000) / 65536);
    }
  } else {
    for (let i = 0; i < pixels; i++) values[i] = samples[i * channels]!; // gray (alpha, if any, dropped)
  }
  const win = opts.window ?? dataRangeWindow(values);
  const gray8 = toGray8(values, { kind: 'window', center: win.center, width: win.width, fn: 'LINEAR' }, false);
  return { gray8, width, height, warnings, bitsStored: 16 };
}
