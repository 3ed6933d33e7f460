/**
 * DICOM Part 10 detection by content: a 128-byte preamble, then the four bytes
 * "DICM" (PS3.10 7.1). The file's name or extension plays no part.
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
