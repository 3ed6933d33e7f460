// sources.cjs - prints the .cpp files binding.gyp compiles under one folder of
// native/ (`node native/sources.cjs engine`), recursively, with forward slashes.
// Optional backends (engine/backend/<name>/ other than cpu/) are left out: the
// node-gyp build is the CPU build, and CMakeLists.txt adds them behind options.
'use strict';
const fs = require('fs');
const path = require('path');

const optionalBackend = /^engine\/backend\/(?!cpu\/)[^/]+\//;
const root = path.join(__dirname);
const folder = process.argv[2];
const files = fs
  .readdirSync(path.join(root, folder), { recursive: true })
  .map((f) => `${folder}/${String(f).split(path.sep).join('/')}`)
  .filter((f) => f.endsWith('.cpp') && !optionalBackend.test(f))
  .sort();
process.stdout.write(files.map((f) => `native/${f}`).join(' '));
