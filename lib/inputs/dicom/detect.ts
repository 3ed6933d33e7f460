/**
 * DICOM detection by content: a 128-byte preamble, then the four bytes "DICM"
 * (PS3.10 7.1); or, for old exports with neither, a bare data set that opens with
 * a group 0008 element. The file's name or extension plays no part.
 */

/** True when `bytes` starts like a DICOM Part 10 file. */
export function isDicom(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 132 &&
    bytes[128] === 0x44 && // D
    bytes[129] === 0x49 && // I
    bytes[130] === 0x43 && // C
    bytes[131] === 0x4d // M
  );
}

/**
 * True when `bytes` looks like a data set with no preamble and no meta header: the
 * first tag is in group 0008 (identifying attributes, which lead every image data
 * set), followed either by an explicit VR of two capital letters or by an implicit
 * 32-bit length that fits in the file.
 */
export function isBareDataSet(bytes: Uint8Array): boolean {
  if (bytes.length < 16 || bytes[0] !== 0x08 || bytes[1] !== 0x00) return false;
  const a = bytes[4]!;
  const b = bytes[5]!;
  if (a >= 0x41 && a <= 0x5a && b >= 0x41 && b <= 0x5a) return true;
  const length = bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16) | (bytes[7]! << 24);
  return length >= 0 && length < 1024 && 8 + length <= bytes.length;
}
