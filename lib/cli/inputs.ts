/**
 * Turns command-line image arguments into a list of files: plain paths,
 * directories (their image files; `recursive` descends), quoted globs (`*`, `?`,
 * `[...]`, `{a,b}`, `**`), and `-` for a newline-separated list on stdin.
 *
 * A path that does not exist is kept: the batch reports it as a failed input
 * instead of refusing the whole run, so one typo in a list of thousands costs
 * one error record.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** One image to process. */
export interface InputFile {
  /** The path to read, as given or as found. */
  path: string;
  /** Name for the output folder, relative and without extension clashes resolved (see output.ts). */
  rel: string;
  /** Why this input cannot be processed, decided before reading it (e.g. a glob that matched nothing). */
  error?: string;
}

export interface ExpandOptions {
  /** Descend into subdirectories of directory arguments (optional, default false). */
  recursive?: boolean;
  /** Where `-` reads its list (optional, default process.stdin). */
  stdin?: NodeJS.ReadableStream;
}

/**
 * File names a directory contributes. Radiographs come as PNG/JPEG/TIFF/WebP or
 * DICOM, and DICOM files often have no extension at all (IM000001). Anything
 * else (our own .txt/.json outputs, READMEs) is left alone; a path named
 * explicitly is always taken, whatever its name.
 */
const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.tif', '.tiff', '.webp', '.dcm', '.dicom']);

export function isImageName(name: string): boolean {
  if (name.startsWith('.')) return false;
  const ext = path.extname(name).toLowerCase();
  return ext === '' || IMAGE_EXTENSIONS.has(ext);
}

export function hasGlobMagic(s: string): boolean {
  return /[*?[{]/.test(s);
}

/** One glob path segment as a RegExp. A leading dot must be matched literally, as in the shell. */
function validClass(cls: string): boolean {
  try {
    new RegExp(cls);
    return true;
  } catch {
    return false;
  }
}

export function segmentRegExp(glob: string): RegExp {
  let re = '';
  let braces = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      if (body.startsWith('!')) body = '^' + body.slice(1);
      const cls = '[' + body.replace(/\\/g, '\\\\') + ']';
      if (!validClass(cls)) {
        re += '\\['; // a class no shell could match ('[b-a]'): the '[' is literal, as for an unclosed one
        continue;
      }
      re += cls;
      i = end;
    } else if (c === '{') {
      braces++;
      re += '(?:';
    } else if (c === '}' && braces > 0) {
      braces--;
      re += ')';
    } else if (c === ',' && braces > 0) re += '|';
    else re += c.replace(/[.+^$()|\\\]}]/g, '\\$&');
  }
  if (braces > 0) return new RegExp('^' + glob.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '$'); // unbalanced: literal
  const dotOk = glob.startsWith('.');
  return new RegExp(`^${dotOk ? '' : '(?!\\.)'}${re}$`);
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null))?.isDirectory() === true;
}

/** Sorted entries of a directory (links as what they point to); unreadable directories read as empty. */
async function entries(dir: string): Promise<{ name: string; dir: boolean; file: boolean }[]> {
  const list = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const out: { name: string; dir: boolean; file: boolean }[] = [];
  for (const e of list) {
    let d = e.isDirectory();
    let f = e.isFile();
    if (e.isSymbolicLink()) {
      const s = await stat(path.join(dir, e.name)).catch(() => null);
      d = s?.isDirectory() === true;
      // A broken link is taken as a file, so it becomes a failed input ("file not found"), not a silent gap.
      f = s === null || s.isFile();
    }
    out.push({ name: e.name, dir: d, file: f });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The image files under `dir`, as paths joined onto `dir`, and their names relative to it. */
async function walk(dir: string, recursive: boolean, relBase = ''): Promise<{ path: string; rel: string }[]> {
  const out: { path: string; rel: string }[] = [];
  for (const e of await entries(dir)) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    const rel = relBase ? `${relBase}/${e.name}` : e.name;
    if (e.file && isImageName(e.name)) out.push({ path: p, rel });
    else if (e.dir && recursive) out.push(...(await walk(p, true, rel)));
  }
  return out;
}

/** Files matching a glob; `rel` is relative to the pattern's fixed leading folders. */
export async function expandGlob(pattern: string): Promise<{ path: string; rel: string }[]> {
  const absolute = path.isAbsolute(pattern);
  const parts = pattern.split(/[\\/]+/).filter((p, i) => p !== '' || i === 0);
  let fixed = 0;
  while (fixed < parts.length - 1 && !hasGlobMagic(parts[fixed]!)) fixed++;
  const base = absolute ? (parts.slice(0, fixed).join('/') || '/') : parts.slice(0, fixed).join('/');
  const rest = parts.slice(fixed);
  const found: { path: string; rel: string }[] = [];
  const visit = async (dir: string, rel: string, i: number): Promise<void> => {
    const seg = rest[i]!;
    const last = i === rest.length - 1;
    const at = (name: string) => (dir === '' ? name : path.join(dir, name));
    const relOf = (name: string) => (rel ? `${rel}/${name}` : name);
    if (seg === '**') {
      // `**` is zero or more folders: try the rest here, then in every subfolder.
      if (last) {
        for (const f of await walk(dir || '.', true)) found.push({ path: at(f.rel), rel: relOf(f.rel) });
        return;
      }
      await visit(dir, rel, i + 1);
      for (const e of await entries(dir || '.')) if (e.dir && !e.name.startsWith('.')) await visit(at(e.name), relOf(e.name), i);
      return;
    }
    if (!hasGlobMagic(seg)) {
      const p = at(seg);
      if (last) {
        if ((await stat(p).catch(() => null))?.isFile()) found.push({ path: p, rel: relOf(seg) });
      } else if (await isDir(p)) await visit(p, relOf(seg), i + 1);
      return;
    }
    const re = segmentRegExp(seg);
    for (const e of await entries(dir || '.')) {
      if (!re.test(e.name)) continue;
      if (last && e.file) found.push({ path: at(e.name), rel: relOf(e.name) });
      else if (!last && e.dir) await visit(at(e.name), relOf(e.name), i + 1);
    }
  };
  await visit(base, '', 0);
  return found;
}

async function readList(stream: NodeJS.ReadableStream): Promise<string[]> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks)
    .toString('utf8')
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '');
}

/**
 * Expands the arguments, in order, dropping repeats of a path. Directory
 * members and glob matches are sorted by name so runs are reproducible.
 */
export async function expandInputs(args: readonly string[], options: ExpandOptions = {}): Promise<InputFile[]> {
  const out: InputFile[] = [];
  const seen = new Set<string>();
  const add = (f: InputFile): void => {
    const key = path.resolve(f.path);
    if (f.error === undefined && seen.has(key)) return;
    seen.add(key);
    out.push(f);
  };
  const one = async (arg: string, allowGlob: boolean): Promise<void> => {
    const s = await stat(arg).catch(() => null);
    if (s?.isDirectory()) {
      for (const f of await walk(arg, options.recursive === true)) add(f);
    } else if (!s && allowGlob && hasGlobMagic(arg)) {
      const matches = await expandGlob(arg);
      if (matches.length === 0) add({ path: arg, rel: path.basename(arg), error: `${arg}: no file matches this pattern` });
      for (const f of matches) add(f);
    } else {
      add({ path: arg, rel: path.basename(arg) });
    }
  };
  for (const arg of args) {
    if (arg === '-') {
      // Lines are paths as they are: file names may contain glob characters.
      for (const line of await readList(options.stdin ?? process.stdin)) await one(line, false);
    } else {
      await one(arg, true);
    }
  }
  return out;
}
