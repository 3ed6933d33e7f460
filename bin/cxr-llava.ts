#!/usr/bin/env node
/**
 * The cxr-llava command line. Errors are one line on stderr (the stack only
 * with --verbose); exit status 0 on success, 1 on failure, 2 on a usage error.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { readGgufInfo } from '../lib/tensors.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function formatMeta(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? v.slice(0, 77) + '...' : v);
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return `[${v.map(formatMeta).join(', ')}]`;
  if (v && typeof v === 'object') {
    const o = v as { type: string; length: number };
    return `${o.type} of ${o.length}`;
  }
  return String(v);
}

const program = new Command();
program
  .name('cxr-llava')
  .description('Run CXR-LLaVA, a chest X-ray report model, locally on a native GGUF engine.')
  .version(pkg.version, '-V, --version', 'print the version')
  .option('--verbose', 'print stack traces and timings')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str) });

program
  .command('info')
  .description('Print a GGUF file\'s metadata and tensor table (no weights are loaded).')
  .argument('<file>', 'a .gguf file')
  .option('--json', 'print the whole header as JSON')
  .option('--full', 'include long arrays (the vocabulary) in full')
  .addHelpText('after', '\nExamples:\n  $ cxr-llava info cxr-llava-v2.q8_0.gguf\n  $ cxr-llava info model.gguf --json | jq .metadata')
  .action((file: string, opts: { json?: boolean; full?: boolean }) => {
    const info = readGgufInfo(file, { full: opts.full === true });
    if (opts.json) {
      process.stdout.write(JSON.stringify(info, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
      return;
    }
    const out: string[] = [];
    out.push(`${info.path}: GGUF v${info.version}, ${humanBytes(info.fileSize)}, ${info.tensors.length} tensors, alignment ${info.alignment}`);
    out.push('', 'metadata:');
    for (const [k, v] of Object.entries(info.metadata)) out.push(`  ${k} = ${formatMeta(v)}`);
    const byType = new Map<string, { count: number; bytes: number }>();
    for (const t of info.tensors) {
      const e = byType.get(t.type) ?? { count: 0, bytes: 0 };
      e.count++;
      e.bytes += t.bytes;
      byType.set(t.type, e);
    }
    out.push('', 'tensor types:');
    for (const [type, e] of byType) out.push(`  ${type.padEnd(6)} ${String(e.count).padStart(5)} tensors  ${humanBytes(e.bytes)}`);
    out.push('', 'tensors:');
    const w = Math.max(...info.tensors.map((t) => t.name.length), 4);
    for (const t of info.tensors) {
      out.push(`  ${t.name.padEnd(w)}  ${t.type.padEnd(5)}  ${('[' + t.ne.join(', ') + ']').padEnd(16)}  ${humanBytes(t.bytes)}`);
    }
    process.stdout.write(out.join('\n') + '\n');
  });

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors with 2.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    const verbose = program.opts<{ verbose?: boolean }>().verbose === true;
    process.stderr.write(`error: ${verbose ? ((err as Error).stack ?? String(err)) : (err as Error).message}\n`);
    process.exitCode = 1;
  }
}

await main();
