/**
 * A generated report as a DICOM Basic Text SR (SOP Class 1.2.840.10008.5.1.4.1.1.88.11)
 * that joins the source image's study, so that a PACS files it beside the image.
 * dcmjs writes the data set; this file only decides what goes in it (the mapping is
 * in docs/dicom.md, "DICOM SR output").
 *
 * This is the one place where patient identifiers are written: the Patient and
 * Study modules are copied from the source file, because the SR goes back to the
 * archive the image came from. Text and JSON outputs never carry them.
 */
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { CxrError } from '../errors.js';
import { isDicom } from '../inputs/dicom/detect.js';
import { transferSyntaxOf } from '../inputs/dicom/parse.js';

/** SOP Class UID of Basic Text SR. */
export const BASIC_TEXT_SR = '1.2.840.10008.5.1.4.1.1.88.11';
/**
 * UIDs we make are UUID-derived, under the root 2.25 (PS3.5 B.2): no registered
 * organisation root is needed, and they are unique without coordination.
 */
export const UID_ROOT = '2.25';
/** Our coding scheme for the document title (DICOM has no code for "AI-generated chest X-ray report"). */
export const CODING_SCHEME = '99CXRLLAVA';
/** Implementation Class UID written in the meta header: 2.25 + the UUID 6378722d-6c6c-6176-612d-73722d763031. */
const IMPLEMENTATION_CLASS_UID = `${UID_ROOT}.${BigInt('0x6378722d6c6c6176612d73722d763031').toString()}`;

/** What the SR says about where the report came from. */
export interface ReportSrInput {
  /** The report text. */
  text: string;
  /** cxr-llava's version, e.g. "0.1.0". */
  version: string;
  /** The text model's file name (no folder), e.g. "cxr-llava-v2.q8_0.gguf". */
  modelFile: string;
  /** sha256 of the text model file, 64 hex digits. */
  modelSha256: string;
  /** When the report was made (optional, default now). */
  date?: Date;
}

// dcmjs ships no types: the little of its API used here.
type Naturalized = Record<string, unknown>;
interface DcmjsData {
  DicomMessage: { readFile(buffer: ArrayBuffer, options?: object): { meta: object; dict: object } };
  DicomMetaDictionary: { naturalizeDataset(d: object): Naturalized; denaturalizeDataset(d: Naturalized): object };
  DicomDict: new (meta: object) => { dict: object; write(options?: object): ArrayBuffer };
}
const dcmjs = (): DcmjsData => (createRequire(import.meta.url)('dcmjs') as { data: DcmjsData }).data;

/** A new UID under UID_ROOT from a random UUID. */
export function newUid(): string {
  return `${UID_ROOT}.${BigInt('0x' + randomUUID().replace(/-/g, '')).toString()}`;
}

/** The Device Observer UID of a model file: UID_ROOT + the first 128 bits of its sha256, so one model file is one device. */
export function deviceUid(modelSha256: string): string {
  return `${UID_ROOT}.${BigInt('0x' + modelSha256.slice(0, 32)).toString()}`;
}

// Patient (C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2) attributes, by dcmjs keyword.
const PATIENT = ['PatientName', 'PatientID', 'IssuerOfPatientID', 'TypeOfPatientID', 'IssuerOfPatientIDQualifiersSequence', 'PatientBirthDate', 'PatientBirthTime', 'PatientSex', 'OtherPatientIDsSequence', 'PatientComments', 'PatientSpeciesDescription', 'PatientBreedDescription', 'ResponsiblePerson', 'PatientIdentityRemoved', 'DeidentificationMethod'];
const STUDY = ['StudyInstanceUID', 'StudyDate', 'StudyTime', 'ReferringPhysicianName', 'StudyID', 'AccessionNumber', 'IssuerOfAccessionNumberSequence', 'StudyDescription', 'PhysiciansOfRecord', 'NameOfPhysiciansReadingStudy', 'ProcedureCodeSequence', 'AdmittingDiagnosesDescription', 'PatientAge', 'PatientSize', 'PatientWeight', 'Occupation', 'AdditionalPatientHistory'];
// Type 2: present even when the source lacks them (empty).
const TYPE2 = ['PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'StudyDate', 'StudyTime', 'ReferringPhysicianName', 'StudyID', 'AccessionNumber'];

function code(value: string, scheme: string, meaning: string): Naturalized {
  return { CodeValue: value, CodingSchemeDesignator: scheme, CodeMeaning: meaning };
}

function da(d: Date): string {
  return d.toISOString().slice(0, 10).replace(/-/g, '');
}
function tm(d: Date): string {
  return d.toISOString().slice(11, 19).replace(/:/g, '');
}

/** Preamble, "DICM" and a meta header naming the syntax a bare data set is in, for dcmjs to read it. */
function metaHeaderFor(dataSet: Uint8Array): Uint8Array {
  const { DicomMetaDictionary, DicomDict } = dcmjs();
  const dict = new DicomDict(
    DicomMetaDictionary.denaturalizeDataset({
      FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
      TransferSyntaxUID: transferSyntaxOf(dataSet) ?? '1.2.840.10008.1.2',
      ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    }),
  );
  dict.dict = {};
  return new Uint8Array(dict.write());
}

function srError(name: string, why: string, cause?: unknown): CxrError {
  return new CxrError('ERR_IMAGE', `${name}: no DICOM SR written: ${why}`, cause === undefined ? undefined : { cause });
}

/**
 * The SR for a report on the DICOM file `source` (its bytes), named `name` in
 * errors. Returns the Part 10 file's bytes (explicit VR little endian, UTF-8 text).
 */
export function buildReportSr(source: Uint8Array, name: string, report: ReportSrInput): Uint8Array {
  const { DicomMessage, DicomMetaDictionary, DicomDict } = dcmjs();
  let src: Naturalized;
  try {
    // dcmjs reads the whole ArrayBuffer: give it one of exactly this file. It reads
    // Part 10 files only, so a bare data set (no preamble, no meta) gets a meta header.
    const head = isDicom(source) ? new Uint8Array(0) : metaHeaderFor(source);
    const copy = new Uint8Array(head.length + source.length);
    copy.set(head);
    copy.set(source, head.length);
    src = DicomMetaDictionary.naturalizeDataset(DicomMessage.readFile(copy.buffer, { untilTag: '7FE00010', includeUntilTagValue: false }).dict);
  } catch (err) {
    throw srError(name, `dcmjs cannot read the source (${err instanceof Error ? err.message : String(err)})`, err);
  }
  const str = (k: string) => (typeof src[k] === 'string' ? (src[k] as string) : undefined);
  const sourceClass = str('SOPClassUID');
  const sourceInstance = str('SOPInstanceUID');
  const study = str('StudyInstanceUID');
  if (!sourceClass || !sourceInstance || !study) {
    throw srError(name, 'the source has no SOP Class, SOP Instance or Study Instance UID to refer to');
  }
  const now = report.date ?? new Date();
  const seriesUid = newUid();
  const instanceUid = newUid();

  const ds: Naturalized = {};
  for (const k of [...PATIENT, ...STUDY]) if (src[k] !== undefined && src[k] !== null) ds[k] = src[k];
  for (const k of TYPE2) if (ds[k] === undefined) ds[k] = '';

  Object.assign(ds, {
    // SOP Common
    SOPClassUID: BASIC_TEXT_SR,
    SOPInstanceUID: instanceUid,
    InstanceCreationDate: da(now),
    InstanceCreationTime: tm(now),
    // SR Document Series
    Modality: 'SR',
    SeriesInstanceUID: seriesUid,
    SeriesNumber: '9901',
    SeriesDescription: 'cxr-llava AI report',
    SeriesDate: da(now),
    SeriesTime: tm(now),
    ReferencedPerformedProcedureStepSequence: [],
    // General Equipment
    Manufacturer: 'cxr-llava',
    ManufacturerModelName: report.modelFile,
    SoftwareVersions: report.version,
    // SR Document General
    InstanceNumber: '1',
    CompletionFlag: 'PARTIAL',
    VerificationFlag: 'UNVERIFIED',
    ContentDate: da(now),
    ContentTime: tm(now),
    PerformedProcedureCodeSequence: [],
    CurrentRequestedProcedureEvidenceSequence: [
      {
        StudyInstanceUID: study,
        ReferencedSeriesSequence: [
          {
            SeriesInstanceUID: str('SeriesInstanceUID') ?? '',
            ReferencedSOPSequence: [{ ReferencedSOPClassUID: sourceClass, ReferencedSOPInstanceUID: sourceInstance }],
          },
        ],
      },
    ],
    // SR Document Content: the root container and its tree
    ValueType: 'CONTAINER',
    ConceptNameCodeSequence: [code('CXR-AI-REPORT', CODING_SCHEME, 'AI-generated chest X-ray report')],
    ContinuityOfContent: 'SEPARATE',
    ContentSequence: [
      { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'CODE', ConceptNameCodeSequence: [code('121005', 'DCM', 'Observer Type')], ConceptCodeSequence: [code('121007', 'DCM', 'Device')] },
      { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'UIDREF', ConceptNameCodeSequence: [code('121012', 'DCM', 'Device Observer UID')], UID: deviceUid(report.modelSha256) },
      { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'TEXT', ConceptNameCodeSequence: [code('121013', 'DCM', 'Device Observer Name')], TextValue: `cxr-llava ${report.version}` },
      { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'TEXT', ConceptNameCodeSequence: [code('121014', 'DCM', 'Device Observer Manufacturer')], TextValue: 'cxr-llava (open source)' },
      { RelationshipType: 'HAS OBS CONTEXT', ValueType: 'TEXT', ConceptNameCodeSequence: [code('121015', 'DCM', 'Device Observer Model Name')], TextValue: `${report.modelFile} sha256:${report.modelSha256}` },
      {
        RelationshipType: 'CONTAINS',
        ValueType: 'TEXT',
        ConceptNameCodeSequence: [code('121071', 'DCM', 'Finding')],
        TextValue: report.text.trim(),
        ContentSequence: [
          {
            RelationshipType: 'INFERRED FROM',
            ValueType: 'IMAGE',
            ReferencedSOPSequence: [{ ReferencedSOPClassUID: sourceClass, ReferencedSOPInstanceUID: sourceInstance }],
          },
        ],
      },
    ],
  });

  // Plain ASCII needs no character set; anything else is written as UTF-8 (ISO_IR 192).
  if (/[^\x00-\x7f]/.test(JSON.stringify(ds))) ds.SpecificCharacterSet = 'ISO_IR 192';
  const meta: Naturalized = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: BASIC_TEXT_SR,
    MediaStorageSOPInstanceUID: instanceUid,
    TransferSyntaxUID: '1.2.840.10008.1.2.1',
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: `CXRLLAVA_${report.version}`.slice(0, 16),
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(ds);
  return new Uint8Array(dict.write());
}
