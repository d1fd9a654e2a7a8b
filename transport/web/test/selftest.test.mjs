// The browser self-test (selftest.js: the diff, transform and undo cases
// the browser test runs in the page), run here on the modules themselves.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import test from 'node:test';
import * as OT from '../src/ot.js';
import { UndoHistory } from '../src/undo.js';

test('selftest.js passes on src/', () => {
  globalThis.window = { troupeOT: OT, troupeEditor: { UndoHistory } };
  new Function(readFileSync(new URL('../selftest.js', import.meta.url), 'utf8'))();
  assert.deepEqual(globalThis.window.troupeSelfTest(), []);
});
