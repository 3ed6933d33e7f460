/**
 * An image sent as the request body: raw bytes (`Content-Type: image/png`,
 * `application/dicom`, `application/octet-stream`, …) or the first file of a
 * `multipart/form-data` form (field name free, e.g. `-F image=@chest.png`).
 * The name is a label for records and error messages only: nothing is ever
 * read from or written to a path a request names.
 */
import path from 'node:path';
import type { FastifyRequest } from 'fastify';
import { badRequest, HttpError } from './errors.js';

export interface Upload {
  bytes: Buffer;
  /** The form's file name (its last path component), `?name=`, or "upload". */
  name: string;
}

function label(raw: unknown): string | undefined {
  if (typeof raw !== 'string' || raw.trim() === '') return undefined;
  // Only the last component, and nothing that could pass for a control sequence in a log.
  const base = path.basename(raw.replace(/\\/g, '/')).replace(/[\x00-\x1f\x7f]/g, '');
  return base.slice(0, 200) || undefined;
}

export async function readUpload(request: FastifyRequest): Promise<Upload> {
  const query = request.query as Record<string, unknown>;
  if (request.isMultipart()) {
    const file = await request.file();
    if (!file) throw badRequest('The form has no file: send the radiograph as a file field, e.g. -F image=@chest.png', 'image', 'image_required');
    const bytes = await file.toBuffer();
    return { bytes, name: label(file.filename) ?? label(query.name) ?? 'upload' };
  }
  const body = request.body;
  if (body !== undefined && body !== null && !Buffer.isBuffer(body)) {
    const type = String(request.headers['content-type'] ?? 'none').split(';')[0];
    throw new HttpError(415, `Content-Type ${type} is not an image type: send image/png, image/jpeg, image/tiff, image/webp, application/dicom or a multipart form`, 'invalid_request_error', 'unsupported_media_type');
  }
  if (!Buffer.isBuffer(body) || body.length === 0) {
    throw badRequest('No image in the body: send the file itself (Content-Type image/png, image/jpeg, image/tiff, image/webp or application/dicom) or a multipart form', 'image', 'image_required');
  }
  return { bytes: body, name: label(query.name) ?? 'upload' };
}
