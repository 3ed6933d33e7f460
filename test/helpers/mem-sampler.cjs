// Loaded with `node --expose-gc --require test/helpers/mem-sampler.cjs` into a CLI
// child process: every CXR_MEM_EVERY_MS (default 250) it runs a full garbage
// collection and appends `{"rss":…,"heapUsed":…,"external":…}` (bytes) as one line to
// CXR_MEM_LOG, so what the process holds can be followed without V8's lazy
// collection reading as growth.
'use strict';
const fs = require('node:fs');
const { isMainThread } = require('node:worker_threads');

// Worker threads load the preload too (they inherit execArgv); only the main thread samples.
if (isMainThread) start();

function start() {
  const log = process.env.CXR_MEM_LOG;
  if (!log) throw new Error('mem-sampler.cjs: set CXR_MEM_LOG to the file to append samples to');
  if (typeof global.gc !== 'function') throw new Error('mem-sampler.cjs: run node with --expose-gc');
  setInterval(() => {
    global.gc();
    const m = process.memoryUsage();
    fs.appendFileSync(log, JSON.stringify({ rss: m.rss, heapUsed: m.heapUsed, external: m.external }) + '\n');
  }, Number(process.env.CXR_MEM_EVERY_MS ?? 250)).unref();
}
