/**
 * DICOM input: detect, parse, decode frame 1 and render it to 8-bit gray the way
 * a viewer does. The result carries warnings (multi-frame, view, body part) and
 * the SOP Instance UID, never a patient identifier.
 */

import { CxrError, invalidParameterError } from '../../errors.js';
import { decodeFirstFrame } from './codecs.js';
import { dicomError, readHeader, transferSyntaxOf, type DicomHeader } from './parse.js';
import { describeTransferSyntax, findTransferSyntax } from './syntax.js';
import { applyModality, dataRangeWindow, luma, storedValues, toGray8, ybrFullToRgb, type Voi } from './render.js';

export { isDicom } from './detect.js';

/** How to choose the VOI transform. */
export interface DicomRenderOptions {
  /** Window to use instead of the file's VOI (LINEAR); (optional, default the file's VOI). */
  window?: { center: number; width: number };
  /** 1-based choice among the file's VOI LUTs, or its windows when it has no VOI LUT (optional, default 1). */
  voi?: number;
}

/** An 8-bit gray image with what was learnt on the way. */
export interface Gray8Image {
  gray8: Uint8Array;
  width: number;
  height: number;
  warnings: string[];
  sopInstanceUid?: string;
  bitsStored?: number;
  transferSyntax?: string;
}

const LATERAL_VIEWS = new Set(['LATERAL', 'LL', 'RL', 'LAT']);

function checkOptions(opts: DicomRenderOptions): void {
  if (opts.window !== undefined) {
    const { center, width } = opts.window ?? {};
    if (typeof center !== 'number' || !Number.isFinite(center)) throw invalidParameterError('window.center', 'finite number', center);
    if (typeof width !== 'number' || !Number.isFinite(width) || width < 1) throw invalidParameterError('window.width', 'number >= 1', width);
  }
  if (opts.voi !== undefined && (!Number.isInteger(opts.voi) || opts.voi < 1)) {
    throw invalidParameterError('voi', 'positive integer', opts.voi);
  }
}

function linearFunction(h: DicomHeader): 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID' {
  return h.voiLutFunction === 'SIGMOID' || h.voiLutFunction === 'LINEAR_EXACT' ? h.voiLutFunction : 'LINEAR';
}

/** Picks the VOI transform: override, VOI LUT Sequence, window, then the data range. */
function chooseVoi(h: DicomHeader, values: Float64Array, opts: DicomRenderOptions, name: string): Voi {
  if (opts.window) return { kind: 'window', center: opts.window.center, width: opts.window.width, fn: 'LINEAR' };
  const pick = (opts.voi ?? 1) - 1;
  if (h.voiLuts.length > 0) {
    const lut = h.voiLuts[pick];
    if (!lut) throw dicomError(name, `voi ${pick + 1} asked for, but the file has ${h.voiLuts.length} VOI LUT(s)`);
    return { kind: 'lut', lut };
  }
  if (h.windows.length > 0) {
    const win = h.windows[pick];
    if (!win) throw dicomError(name, `voi ${pick + 1} asked for, but the file has ${h.windows.length} window(s)`);
    return { kind: 'window', ...win, fn: linearFunction(h) };
  }
  if (opts.voi !== undefined && opts.voi !== 1) throw dicomError(name, `voi ${opts.voi} asked for, but the file has no VOI LUT or window`);
  // 8-bit unsigned data with nothing to transform it is shown as stored: the same
  // bytes in a PNG and in a DICOM then give the same picture.
  if (h.bitsStored === 8 && h.pixelRepresentation === 0 && !h.modalityLut && h.rescaleSlope === 1 && h.rescaleIntercept === 0) {
    return { kind: 'identity8' };
  }
  return { kind: 'window', ...dataRangeWindow(values), fn: 'LINEAR' };
}

/**
 * Decodes a DICOM Part 10 file to 8-bit gray. Throws CxrError ERR_IMAGE naming
 * `name`, the reason (no pixel data, truncated, unsupported syntax, too big, a
 * decoder's failure, a frame of the wrong size) and the transfer syntax, in one line.
 */
export async function decodeDicom(bytes: Uint8Array, name: string, opts: DicomRenderOptions = {}): Promise<Gray8Image> {
  checkOptions(opts);
  try {
    return await decode(bytes, name, opts);
  } catch (err) {
    throw withSyntax(err, bytes);
  }
}

/** The error as one line that names the transfer syntax (when the file says one and the message does not yet). */
function withSyntax(err: unknown, bytes: Uint8Array): unknown {
  if (!(err instanceof CxrError) || err.code !== 'ERR_IMAGE') return err;
  const uid = transferSyntaxOf(bytes);
  let message = err.message.replace(/\s*\n\s*/g, ' ');
  if (uid && !message.includes(uid) && !message.includes(findTransferSyntax(uid)?.name ?? uid)) {
    message += `; transfer syntax ${describeTransferSyntax(uid)}`;
  }
  return message === err.message ? err : new CxrError('ERR_IMAGE', message, { cause: err.cause ?? err });
}

async function decode(bytes: Uint8Array, name: string, opts: DicomRenderOptions): Promise<Gray8Image> {
  const h = readHeader(bytes, name);
  const frame = await decodeFirstFrame(h, name);
  const width = h.columns;
  const height = h.rows;
  const pixels = width * height;
  const warnings: string[] = [];
  if (h.frames > 1) warnings.push(`multi-frame image (${h.frames} frames): only frame 1 is used`);
  if (LATERAL_VIEWS.has(h.viewPosition)) {
    warnings.push(`view position is ${h.viewPosition}; the model was trained on frontal chest radiographs`);
  }
  if (h.bodyPart && h.bodyPart !== 'CHEST') {
    warnings.push(`body part examined is ${h.bodyPart}, not CHEST; the model was trained on chest radiographs`);
  }

  let gray8: Uint8Array;
  if (frame.channels === 3) {
    if (!(h.photometric === 'RGB' || h.photometric.startsWith('YBR'))) {
      throw dicomError(name, `unsupported colour Photometric Interpretation ${h.photometric}`);
    }
    const bits = Math.max(8, h.bitsStored);
    const rgb = frame.colour === 'YBR_FULL' ? ybrFullToRgb(frame.samples, pixels, bits, h.photometric === 'YBR_FULL_422') : frame.samples;
    gray8 = luma(rgb, pixels, bits - 8);
    if (h.bitsStored > 8) warnings.push(`colour image with ${h.bitsStored}-bit samples: kept the top 8 bits`);
  } else {
    if (h.photometric !== 'MONOCHROME1' && h.photometric !== 'MONOCHROME2') {
      throw dicomError(name, `unsupported Photometric Interpretation ${h.photometric}`);
    }
    const stored = storedValues(frame.samples, pixels, 1, frame.shift, frame.bitsStored ?? h.bitsStored, h.pixelRepresentation === 1);
    const values = applyModality(stored, h.rescaleSlope, h.rescaleIntercept, h.modalityLut);
    const voi = chooseVoi(h, values, opts, name);
    const inverse = h.photometric === 'MONOCHROME1' || h.presentationLutShape === 'INVERSE';
    gray8 = toGray8(values, voi, inverse);
  }
  return {
    gray8,
    width,
    height,
    warnings,
    sopInstanceUid: h.sopInstanceUid,
    bitsStored: h.bitsStored,
    transferSyntax: h.transferSyntax.uid,
  };
}
