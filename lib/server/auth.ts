/**
 * The API key check. Keys are compared as SHA-256 digests with
 * `timingSafeEqual`, so neither the key's length nor its first differing byte
 * shows in the response time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { HttpError } from './errors.js';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The key a request presents: `Authorization: Bearer <key>` (what the OpenAI clients send) or `x-api-key`. */
export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
    if (m) return m[1]!;
  }
  const x = headers['x-api-key'];
  return typeof x === 'string' ? x : undefined;
}

/** A checker for one key: throws 401 unless the request presents it. */
export function apiKeyChecker(key: string): (headers: IncomingHttpHeaders) => void {
  const want = digest(key);
  return (headers) => {
    const got = presentedKey(headers);
    // Always hash and compare, present or not, so a missing key takes as long as a wrong one.
    const ok = timingSafeEqual(digest(got ?? ''), want) && got !== undefined;
    if (!ok) {
      throw new HttpError(
        401,
        got === undefined ? 'This server needs an API key: send "Authorization: Bearer <key>"' : 'The API key is not valid for this server',
        'authentication_error',
        'invalid_api_key',
      );
    }
  };
}
