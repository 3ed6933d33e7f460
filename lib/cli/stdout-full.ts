/**
 * A full disk under stdout (`report scans/ --jsonl > reports.jsonl`): the write
 * that failed, and a short write before it, may have left half a line at the
 * end of the file. Cutting the file back to its last newline leaves only whole
 * records, so the lines there can be kept and the rest run again.
 */
import { closeSync, fstatSync, ftruncateSync, openSync, readlinkSync, readSync } from 'node:fs';

/** Where stdout goes: a path for a file (Linux /proc), else undefined. */
export function stdoutFile(): string | undefined {
  try {
    if (!fstatSync(1).isFile()) return undefined;
    return readlinkSync('/proc/self/fd/1');
  } catch {
    return undefined;
  }
}

/**
 * Truncates the regular file stdout writes to after its last '\n' (to empty when
 * it has none). Returns the bytes kept, or undefined when stdout is not a file or
 * cannot be read back.
 */
export function cutStdoutToLastLine(): number | undefined {
  const file = stdoutFile();
  if (file === undefined) return undefined;
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    let end = fstatSync(1).size;
    const chunk = Buffer.alloc(64 * 1024);
    while (end > 0) {
      const start = Math.max(0, end - chunk.length);
      const n = readSync(fd, chunk, 0, end - start, start);
      const nl = chunk.subarray(0, n).lastIndexOf(0x0a);
      if (nl >= 0) {
        end = start + nl + 1;
        break;
      }
      end = start;
    }
    ftruncateSync(1, end);
    return end;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
