/**
 * `report --sr`: a DICOM Basic Text SR beside each report on a DICOM input
 * (lib/outputs/report-sr.ts builds it). Non-DICOM inputs get none, and the CLI
 * says so once per batch. The model file's sha256 is computed once, on the first SR.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isBareDataSet, isDicom } from '../inputs/dicom/detect.js';
import { buildReportSr } from '../outputs/report-sr.js';
import { writeAtomic } from './output.js';

/** The SR's path: the report's, with `.sr.dcm` for its extension. */
export function srPath(reportFile: string): string {
  const ext = path.extname(reportFile);
  return (ext ? reportFile.slice(0, -ext.length) : reportFile) + '.sr.dcm';
}

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

export class SrWriter {
  #sha?: Promise<string>;
  #toldNonDicom = false;

  /** `log` prints one line to the user (stderr, above the progress bar). */
  constructor(
    private readonly modelPath: string,
    private readonly version: string,
    private readonly log: (line: string) => void,
    /** What a disk-full error tells the user to do. */
    private readonly diskFull?: string,
  ) {}

  /**
   * Writes the SR for `input`'s report beside `reportFile` (temp file, then rename);
   * returns its path, or undefined when the input is not DICOM. Throws a CxrError
   * naming the input when the SR cannot be made.
   */
  async write(input: string, reportFile: string, text: string): Promise<string | undefined> {
    const bytes = await readFile(input);
    if (!isDicom(bytes) && !isBareDataSet(bytes)) {
      if (!this.#toldNonDicom) {
        this.#toldNonDicom = true;
        this.log(`note: --sr: ${input} is not DICOM, so it gets no DICOM SR (an SR joins the source image's study); the same holds for every non-DICOM input in this batch`);
      }
      return undefined;
    }
    this.#sha ??= sha256File(this.modelPath);
    const sr = buildReportSr(bytes, input, { text, version: this.version, modelFile: path.basename(this.modelPath), modelSha256: await this.#sha });
    const out = srPath(reportFile);
    await writeAtomic(out, sr, this.diskFull !== undefined ? { diskFull: this.diskFull } : {});
    return out;
  }
}
