// Type-checks the .d.ts files against test-support/types-check.ts (needs `npm ci` in client/ for typescript).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const tsc = path.join(root, 'node_modules', '.bin', 'tsc');
const missing = !existsSync(tsc);
if (missing && process.env.CI) throw new Error('typescript is not installed: run `npm ci` in client/');

test('the TypeScript declarations compile against typical usage', { skip: missing && 'typescript is not installed: run `npm ci` in client/' }, () => {
  const r = spawnSync(tsc, ['-p', path.join(root, 'tsconfig.json')], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
});
