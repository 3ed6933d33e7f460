/**
 * Errors thrown by cxr-llava. Every error the package raises on purpose is a
 * `CxrError` with a stable `code` (the engine's codes pass through unchanged),
 * so callers can branch on `err.code` instead of parsing messages.
 */

/** Error codes raised by the engine and the JS layer. */
export type CxrErrorCode =
  | 'ERR_GGUF'
  | 'ERR_IO'
  | 'ERR_MODEL'
  | 'ERR_CONTEXT_FULL'
  | 'ERR_INVALID_ARG'
  | 'ERR_ABORTED'
  | 'ERR_MODEL_CLOSED'
  | 'ERR_BUSY'
  | 'ERR_NO_MEMORY'
  | 'ERR_INTERNAL'
  | 'ERR_NATIVE_LOAD'
  | 'ERR_IMAGE'
  | 'ERR_IMAGE_DISPOSED'
  | 'ERR_BACKEND';

export class CxrError extends Error {
  /** Stable machine-readable code, e.g. `ERR_GGUF`. */
  readonly code: CxrErrorCode;
  constructor(code: CxrErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CxrError';
    this.code = code;
  }
}

/** Wraps an error from the native addon (a plain Error with `.code`) as a CxrError. */
export function fromNative(err: unknown): CxrError {
  if (err instanceof CxrError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? (e.code as CxrErrorCode) : 'ERR_INTERNAL';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return new CxrError(code, message, { cause: err });
}

function describe(actual: unknown): string {
  if (actual === null) return 'null';
  if (Array.isArray(actual)) return `an array of length ${actual.length}`;
  if (typeof actual === 'string') return `"${actual.length > 40 ? actual.slice(0, 40) + '…' : actual}" of type string`;
  if (typeof actual === 'object') return `an object`;
  if (typeof actual === 'number' || typeof actual === 'bigint') return String(actual);
  return `${String(actual)} of type ${typeof actual}`;
}

/** "Expected a number in (0, 1] for topP but received 0"; non-numbers also name their type. */
export function invalidParameterError(name: string, expected: string, actual: unknown): CxrError {
  return new CxrError('ERR_INVALID_ARG', `Expected ${expected} for ${name} but received ${describe(actual)}`);
}

/** Write errors that mean "the disk is full": ENOSPC, and EDQUOT (a quota); also diskFullError's own. */
export function isDiskFull(err: unknown): boolean {
  const e = err as { code?: unknown; cause?: unknown } | null;
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') return true;
  return err instanceof CxrError && e?.cause !== err && isDiskFull(e?.cause);
}

/**
 * `out/x.json: disk full (ENOSPC): <what to do>`, for a write of `file` that
 * failed with `err`; other errors pass through unchanged.
 */
export function diskFullError(file: string, err: unknown, whatToDo: string): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err;
  const what = code === 'EDQUOT' ? 'disk quota exceeded' : 'disk full';
  return new CxrError('ERR_IO', `${file}: ${what} (${code}): ${whatToDo}`, { cause: err });
}
