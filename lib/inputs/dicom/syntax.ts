/**
 * The transfer syntaxes we read, with their names for messages. A syntax not in
 * this table is refused by name (or by UID when we do not know its name).
 */

export type PixelCodec =
  | 'native' // uncompressed, little endian (implicit/explicit VR, and deflated once inflated)
  | 'native-be' // uncompressed, big endian
  | 'jpeg' // JPEG baseline / extended (8-bit through libjpeg-turbo)
  | 'jpeg-lossless' // JPEG lossless, process 14 (any predictor, SV1 included)
  | 'jpeg-ls' // JPEG-LS lossless and near-lossless
  | 'j2k' // JPEG 2000 lossless and lossy
  | 'rle'; // RLE lossless

export interface TransferSyntax {
  uid: string;
  name: string;
  codec: PixelCodec;
}

const TABLE: TransferSyntax[] = [
  { uid: '1.2.840.10008.1.2', name: 'Implicit VR Little Endian', codec: 'native' },
  { uid: '1.2.840.10008.1.2.1', name: 'Explicit VR Little Endian', codec: 'native' },
  { uid: '1.2.840.10008.1.2.1.99', name: 'Deflated Explicit VR Little Endian', codec: 'native' },
  { uid: '1.2.840.10008.1.2.2', name: 'Explicit VR Big Endian', codec: 'native-be' },
  { uid: '1.2.840.10008.1.2.4.50', name: 'JPEG Baseline (Process 1)', codec: 'jpeg' },
  { uid: '1.2.840.10008.1.2.4.51', name: 'JPEG Extended (Process 2 & 4)', codec: 'jpeg' },
  { uid: '1.2.840.10008.1.2.4.57', name: 'JPEG Lossless, Non-Hierarchical (Process 14)', codec: 'jpeg-lossless' },
  { uid: '1.2.840.10008.1.2.4.70', name: 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])', codec: 'jpeg-lossless' },
  { uid: '1.2.840.10008.1.2.4.80', name: 'JPEG-LS Lossless', codec: 'jpeg-ls' },
  { uid: '1.2.840.10008.1.2.4.81', name: 'JPEG-LS Lossy (Near-Lossless)', codec: 'jpeg-ls' },
  { uid: '1.2.840.10008.1.2.4.90', name: 'JPEG 2000 (Lossless Only)', codec: 'j2k' },
  { uid: '1.2.840.10008.1.2.4.91', name: 'JPEG 2000', codec: 'j2k' },
  { uid: '1.2.840.10008.1.2.5', name: 'RLE Lossless', codec: 'rle' },
];

/** Names of syntaxes we know but do not decode, so the refusal can say what the file is. */
const KNOWN_UNSUPPORTED: Record<string, string> = {
  '1.2.840.10008.1.2.4.92': 'JPEG 2000 Part 2 Multi-component (Lossless Only)',
  '1.2.840.10008.1.2.4.93': 'JPEG 2000 Part 2 Multi-component',
  '1.2.840.10008.1.2.4.94': 'JPIP Referenced',
  '1.2.840.10008.1.2.4.95': 'JPIP Referenced Deflate',
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile / Main Level',
  '1.2.840.10008.1.2.4.101': 'MPEG2 Main Profile / High Level',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264 High Profile',
  '1.2.840.10008.1.2.4.103': 'MPEG-4 AVC/H.264 BD-compatible High Profile',
  '1.2.840.10008.1.2.4.110': 'JPEG XL Lossless',
  '1.2.840.10008.1.2.4.111': 'JPEG XL JPEG Recompression',
  '1.2.840.10008.1.2.4.112': 'JPEG XL',
  '1.2.840.10008.1.2.4.201': 'High-Throughput JPEG 2000 (Lossless Only)',
  '1.2.840.10008.1.2.4.202': 'High-Throughput JPEG 2000 with RPCL Options (Lossless Only)',
  '1.2.840.10008.1.2.4.203': 'High-Throughput JPEG 2000',
};

/** The syntax for `uid`, or undefined when we cannot decode it. */
export function findTransferSyntax(uid: string): TransferSyntax | undefined {
  return TABLE.find((t) => t.uid === uid);
}

/** "JPEG XL Lossless (1.2.840.10008.1.2.4.110)", or just the UID when unknown. */
export function describeTransferSyntax(uid: string): string {
  const name = findTransferSyntax(uid)?.name ?? KNOWN_UNSUPPORTED[uid];
  return name ? `${name} (${uid})` : uid;
}
