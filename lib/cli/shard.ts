/**
 * `--shard K/N`: one corpus split across N independent jobs with no
 * coordinator (Slurm job arrays, Kubernetes Indexed Jobs).
 *
 * An input belongs to shard K when SHA-256(path) read as a big-endian 64-bit
 * integer (its first 8 bytes), modulo N, is K-1. The path hashed is the one
 * the command was given and prints in its records' `file`: for `report`/`ddx`
 * the path as on the command line or as found under a folder argument; for
 * `eval` the image path as written in the manifest. It is not made absolute:
 * every task of an array runs the same command from the same job folder, so it
 * sees the same strings, while absolute paths differ between nodes whose
 * storage is mounted at different places. Separators are normalised (`\` to
 * `/`, repeated `/` and leading `./` removed), so `./a.png` and `a.png` agree.
 *
 * SHA-256 is defined byte for byte, so the split is the same on every machine,
 * Node version and run; tools/reference/shard_expectations.py computes it with
 * Python's hashlib for the committed test expectations. Shards differ in size
 * by chance (a hash split is not a round-robin), and a shard may be empty.
 */
import { createHash } from 'node:crypto';
import { InvalidArgumentError, type Command } from 'commander';

export interface Shard {
  /** 1-based shard number. */
  index: number;
  /** Number of shards. */
  count: number;
}

/** The form of a path that is hashed. */
export function shardKey(p: string): string {
  let s = p.replace(/\\/g, '/').replace(/\/{2,}/g, '/');
  while (s.startsWith('./')) s = s.slice(2);
  return s;
}

/** The 1-based shard of `p` among `count`. */
export function shardOf(p: string, count: number): number {
  if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`Expected a positive integer for the shard count but received ${count}`);
  const h = createHash('sha256').update(shardKey(p), 'utf8').digest();
  return Number(h.readBigUInt64BE(0) % BigInt(count)) + 1;
}

/** The items whose path falls in `shard`, in their original order. */
export function selectShard<T>(items: readonly T[], shard: Shard, pathOf: (item: T) => string): T[] {
  return items.filter((it) => shardOf(pathOf(it), shard.count) === shard.index);
}

/** "K/N" -> a Shard; anything else is a usage error naming the accepted form. */
export function parseShard(v: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(v);
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(index) || !Number.isSafeInteger(count) || count < 1 || index < 1 || index > count) {
    throw new InvalidArgumentError('expected K/N with 1 <= K <= N, e.g. 3/8 (Slurm: $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT).');
  }
  return { index, count };
}

/** Adds `--shard K/N` to a batch command. */
export function addShardOption(cmd: Command): Command {
  return cmd.option('--shard <K/N>', 'process only the K-th of N shards of the inputs, split by a hash of each path (for job arrays; see docs/cluster.md)', parseShard);
}

/** The inputs of `shard` (all of them without one); says on stderr when the shard is empty. */
export function applyShard<T extends { path: string }>(inputs: readonly T[], shard: Shard | undefined, quiet: boolean): T[] {
  if (!shard) return [...inputs];
  const mine = selectShard(inputs, shard, (f) => f.path);
  if (mine.length === 0 && !quiet) process.stderr.write(`shard ${shard.index}/${shard.count}: none of the ${inputs.length} inputs falls in this shard; nothing to do\n`);
  return mine;
}
