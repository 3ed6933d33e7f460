/**
 * What the benchmark measures outside the engines' own runs: this machine's ceilings
 * (native/tools/cxr-roofline.cpp, compiled here on demand), the PyTorch anchor
 * (bench/anchors/vision_torch.py) and peak memory of a child process.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest parent holding binding.gyp (from bench/ or dist/bench/). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'binding.gyp'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the repository root (binding.gyp)');
    dir = parent;
  }
}

export interface Roofline {
  threads: number;
  simd: string;
  /** Streaming read bandwidth over a buffer far past the caches, GB/s, on huge pages (as the engine's weights and KV cache are). */
  read_gb_s: number;
  /** The same on 4 KiB pages, GB/s. */
  read_small_pages_gb_s: number;
  /** Register-only FMA rate, GFLOP/s. */
  peak_gflop_s: number;
  /** One empty parallel_for of the engine's thread pool, microseconds. */
  parallel_for_us: number;
}

// The roofline tool needs only these engine files (no model code).
const ROOFLINE_SOURCES = ['native/tools/cxr-roofline.cpp', 'native/engine/backend/cpu/threadpool.cpp',
  'native/engine/backend/cpu/cpu_features.cpp', 'native/engine/types/quants.cpp', 'native/engine/types/dtype.cpp',
  'native/engine/backend/cpu/host_memory.cpp'];

/** Builds cxr-roofline into `dir` (if older than its sources) and runs it. */
export function measureRoofline(dir: string, threads: number): Roofline {
  const root = repoRoot();
  mkdirSync(dir, { recursive: true });
  const exe = path.join(dir, 'cxr-roofline');
  const srcs = ROOFLINE_SOURCES.map((s) => path.join(root, s));
  const stale = !existsSync(exe) || srcs.some((s) => statSync(s).mtimeMs > statSync(exe).mtimeMs);
  if (stale) {
    const cxx = process.env.CXX ?? 'c++';
    const r = spawnSync(cxx, ['-std=c++17', '-O2', '-I', path.join(root, 'native/engine'), ...srcs, '-o', exe, '-lpthread'], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`building cxr-roofline with ${cxx} failed: ${r.stderr || r.error?.message}`);
  }
  const r = spawnSync(exe, ['--threads', String(threads), '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cxr-roofline failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as Roofline;
}

export interface TorchResult {
  threads: number;
  torch: string;
  blas: string;
  blas_loaded: string[];
  openblas: { corename: string; config: string } | null;
  ms: number[];
  max_abs_diff?: number;
  max_abs_ref?: number;
  sgemm_gflop_s?: number;
}

const PYTHON = '/usr/bin/python3';

/** Why the PyTorch anchor cannot run, or null. */
export function torchMissingReason(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
  if (r.status !== 0) return `${PYTHON} cannot import torch and numpy (run: sh bench/anchors/install-torch.sh)`;
  const blas = spawnSync('dpkg', ['-s', 'libopenblas0-pthread'], { encoding: 'utf8' });
  if (blas.status !== 0) return 'libopenblas0-pthread is not installed (run: sh bench/anchors/install-torch.sh)';
  return null;
}

/** Runs an anchor's install script (the anchors live outside our dependency tree). */
export function installAnchor(script: 'install.sh' | 'install-torch.sh'): void {
  const r = spawnSync('sh', [path.join(repoRoot(), 'bench', 'anchors', script)], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`bench/anchors/${script} failed`);
}

/**
 * The ViT of `mmproj` on PyTorch. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed
 * for this command alone: some machines set them to keep old OpenBLAS builds correct,
 * and they pin a slow generic kernel; the result reports the kernel OpenBLAS chose.
 * With isa 'avx2' the Haswell kernel is chosen on purpose instead.
 */
export function runTorchVision(
  mmproj: string,
  opts: { threads: number; runs: number; pixels?: string; ours?: string; sgemm?: boolean; isa?: 'native' | 'avx2' },
): TorchResult {
  const args = [path.join(repoRoot(), 'bench', 'anchors', 'vision_torch.py'), mmproj, '--threads', String(opts.threads),
    '--runs', String(opts.runs)];
  if (opts.pixels) args.push('--pixels', opts.pixels);
  if (opts.ours) args.push('--ours', opts.ours);
  if (opts.sgemm) args.push('--sgemm');
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (opts.isa === 'avx2') {
    // The AVX2 kernels on a CPU that has more: OpenBLAS's Haswell GEMM and ATen's AVX2 paths.
    env.OPENBLAS_CORETYPE = 'Haswell';
    env.ATEN_CPU_CAPABILITY = 'avx2';
  }
  const r = spawnSync(PYTHON, args, { encoding: 'utf8', env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`vision_torch.py failed: ${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop()!;
  return JSON.parse(line) as TorchResult;
}

/** This process's peak resident set (VmHWM), in bytes; 0 where /proc is absent. */
export function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
