/**
 * Where a request's image bytes come from: a `data:` URL (base64 or
 * percent-encoded), or, only when the server was started with
 * `--allow-remote-images`, an http(s) URL fetched with a size cap and a
 * timeout. Filesystem paths and other schemes are refused: a request never
 * names a file on the server. The bytes are then recognised by content (the
 * media type in the URL is checked, not trusted).
 */
import { badRequest, HttpError } from './errors.js';

/** Media types accepted in `data:` URLs and as raw bodies. */
export const IMAGE_MEDIA_TYPES = ['image/png', 'image/jpeg', 'image/jpg', 'image/tiff', 'image/webp', 'application/dicom', 'application/octet-stream'] as const;

export interface RemotePolicy {
  allow: boolean;
  /** Largest image fetched, in bytes. */
  maxBytes: number;
  /** Give up on a fetch after this long. */
  timeoutMs: number;
}

const DATA_URL = /^data:([^,;]*)((?:;[^,;]*)*),/i;

/** The bytes of a `data:` URL, or a 400 saying what is wrong with it. */
export function decodeDataUrl(url: string, param: string): Buffer {
  const m = DATA_URL.exec(url);
  if (!m) throw badRequest('The image URL is not a valid data: URL (expected data:<media type>;base64,<data>)', param, 'invalid_image_url');
  const type = (m[1] || 'text/plain').trim().toLowerCase();
  if (!(IMAGE_MEDIA_TYPES as readonly string[]).includes(type)) {
    throw badRequest(`Images of type ${type} are not accepted (send PNG, JPEG, TIFF, WebP, or DICOM as application/dicom)`, param, 'invalid_image_url');
  }
  const base64 = /;base64$/i.test(m[2] ?? '');
  const payload = url.slice(m[0].length);
  if (base64) {
    if (!/^[A-Za-z0-9+/_\-\s]*={0,2}\s*$/.test(payload)) throw badRequest('The data: URL says base64 but holds other characters', param, 'invalid_image_url');
    return Buffer.from(payload, 'base64');
  }
  // Percent-encoding carries bytes, not UTF-8 text: each %XX is one byte.
  return Buffer.from(payload.replace(/%([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
}

/** The bytes an `image_url` names. */
export async function fetchImageUrl(url: unknown, param: string, remote: RemotePolicy, signal?: AbortSignal): Promise<Buffer> {
  if (typeof url !== 'string' || url === '') throw badRequest('image_url.url must be a non-empty string', param);
  if (/^data:/i.test(url)) return decodeDataUrl(url, param);
  if (!/^https?:\/\//i.test(url)) {
    throw badRequest('Only data: URLs (and http(s) URLs when the server allows them) are accepted; the server never reads files named by a request', param, 'invalid_image_url');
  }
  if (!remote.allow) {
    throw badRequest('Remote image URLs are turned off on this server; send the image as a data: URL (or start the server with --allow-remote-images)', param, 'remote_images_disabled');
  }
  const timeout = AbortSignal.timeout(remote.timeoutMs);
  const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
  let res: Response;
  try {
    res = await fetch(url, { signal: both, redirect: 'follow' });
  } catch (err) {
    throw badRequest(`Could not fetch the image URL: ${(err as Error).message}`, param, 'image_fetch_failed');
  }
  if (!res.ok) throw badRequest(`Fetching the image URL gave HTTP ${res.status}`, param, 'image_fetch_failed');
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > remote.maxBytes) throw new HttpError(413, `The remote image is ${declared} bytes, more than the limit of ${remote.maxBytes}`, 'invalid_request_error', 'image_too_large', param);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > remote.maxBytes) throw new HttpError(413, `The remote image is more than the limit of ${remote.maxBytes} bytes`, 'invalid_request_error', 'image_too_large', param);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
