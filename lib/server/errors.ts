/**
 * Errors the server answers with, in OpenAI's shape
 * (`{ error: { message, type, param, code } }`), so the official clients raise
 * them as their own typed errors. Every failure, ours or the framework's,
 * becomes one of these with the right status; none takes the process down.
 */
import { CxrError } from '../errors.js';

export type ErrorType = 'invalid_request_error' | 'authentication_error' | 'rate_limit_error' | 'server_error' | 'timeout_error' | 'not_found_error';

/** A failure with its HTTP status; `retryAfter` (seconds) goes into the Retry-After header. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ErrorType = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

export function badRequest(message: string, param: string | null = null, code: string | null = 'invalid_value'): HttpError {
  return new HttpError(400, message, 'invalid_request_error', code, param);
}

export interface ErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: string | null };
}

/** Fastify's own errors (bad JSON, body too large, bad content type) by their codes. */
const FASTIFY_ERRORS: Record<string, [number, string]> = {
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'invalid_json'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'invalid_json'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'body_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'invalid_content_length'],
  FST_REQ_FILE_TOO_LARGE: [413, 'body_too_large'],
  FST_FILES_LIMIT: [413, 'body_too_large'],
  FST_PARTS_LIMIT: [413, 'body_too_large'],
  FST_INVALID_MULTIPART_CONTENT_TYPE: [415, 'unsupported_media_type'],
};

/** Any thrown value as an HttpError: ours as is, the engine's and the framework's by their codes, the rest as 500. */
export function toHttpError(err: unknown, bodyLimit?: number): HttpError {
  if (err instanceof HttpError) return err;
  const e = err as { code?: unknown; message?: unknown; statusCode?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const known = FASTIFY_ERRORS[code];
  if (known) {
    const [status, ours] = known;
    if (status === 413) {
      const limit = bodyLimit ? ` of ${Math.round(bodyLimit / (1024 * 1024))} MiB` : '';
      return new HttpError(413, `The request body is larger than the server's limit${limit} (start it with a larger --body-limit)`, 'invalid_request_error', ours);
    }
    if (ours === 'invalid_json') return new HttpError(400, `The body is not valid JSON: ${message}`, 'invalid_request_error', ours);
    return new HttpError(status, message, 'invalid_request_error', ours);
  }
  if (err instanceof CxrError) {
    switch (err.code) {
      case 'ERR_IMAGE':
        return new HttpError(400, message, 'invalid_request_error', 'invalid_image', 'image');
      case 'ERR_INVALID_ARG':
        return new HttpError(400, message, 'invalid_request_error', 'invalid_value');
      case 'ERR_CONTEXT_FULL':
        return new HttpError(400, message, 'invalid_request_error', 'context_length_exceeded', 'messages');
      default:
        return new HttpError(500, message, 'server_error', err.code.toLowerCase());
    }
  }
  if (err instanceof TypeError && /^messages? /.test(message)) return badRequest(message, 'messages');
  const status = typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 ? e.statusCode : 500;
  return new HttpError(status, status === 500 ? `Internal error: ${message}` : message);
}

export function errorBody(e: HttpError): ErrorBody {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}
