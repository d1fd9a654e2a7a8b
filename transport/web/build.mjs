// Builds editor.js, the bundle app.js uses: CodeMirror 6 and the modules
// in src/, minified by esbuild, headed by the licences of every package
// bundled and a hash of the sources it was built from (web_test.go checks
// that hash, so a change to src/ without a rebuild fails make test, which
// needs no Node). Run by make web: node build.mjs [--check].
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'editor.js');

// sourceHash: sha256 over src/*.js, sorted by name, each as name NUL
// content NUL (web_test.go computes the same).
function sourceHash() {
  const h = createHash('sha256');
  for (const name of readdirSync(join(here, 'src')).filter((n) => n.endsWith('.js')).sort()) {
    h.update(name + '\0');
    h.update(readFileSync(join(here, 'src', name)));
    h.update('\0');
  }
  return h.digest('hex');
}

const result = await build({
  entryPoints: [join(here, 'src/main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  legalComments: 'none', // the licences are written once, below
  metafile: true,
  write: false,
  outfile: out,
  logLevel: 'warning',
});

// The licence of every npm package with code in the bundle, once per
// distinct text.
const packages = new Map(); // dir → name@version
const [output] = Object.values(result.metafile.outputs);
for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
  const m = /^(.*node_modules\/((?:@[^/]+\/)?[^/]+))\//.exec(input);
  if (!m || bytesInOutput === 0) continue;
  const pkg = JSON.parse(readFileSync(join(m[1], 'package.json'), 'utf8'));
  packages.set(m[1], pkg.name + '@' + pkg.version + ' (' + pkg.license + ')');
}
const licences = new Map(); // text → [package]
for (const [dir, label] of [...packages].sort((a, b) => a[1].localeCompare(b[1]))) {
  const file = readdirSync(dir).find((n) => /^licen[cs]e/i.test(n));
  if (!file) throw new Error('no licence file in ' + dir);
  const text = readFileSync(join(dir, file), 'utf8').trim();
  if (!licences.has(text)) licences.set(text, []);
  licences.get(text).push(label);
}
let banner = '/*! troupe editor bundle, built by transport/web/build.mjs from src/ (source-sha256: ' + sourceHash() + ').\n';
banner += ' * It contains these packages, under these licences:\n';
for (const [text, labels] of licences) {
  banner += ' *\n * ' + labels.join(', ') + ':\n *\n';
  banner += text.split('\n').map((l) => (' * ' + l.replaceAll('*/', '* /')).trimEnd()).join('\n') + '\n';
}
banner += ' */\n';
const code = banner + result.outputFiles[0].text;

if (process.argv.includes('--check')) {
  const now = readFileSync(out, 'utf8');
  if (now !== code) {
    console.error('editor.js is not what build.mjs builds from src/: run make web');
    process.exit(1);
  }
  console.log('editor.js is up to date');
} else {
  writeFileSync(out, code);
  console.log('editor.js: ' + code.length + ' bytes (' + packages.size + ' packages)');
}
