import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CATEGORY_STATUS, ERROR_CODES } from './error-codes.ts';
import { CandorError, toProblem } from './errors.ts';

const docsPath = join(import.meta.dirname, '..', '..', 'docs', 'errors.md');

describe('error codes', () => {
  it('are all documented in docs/errors.md with their category and status, and nothing else is', () => {
    const documented = new Map<string, { category: string; status: number }>();
    for (const line of readFileSync(docsPath, 'utf8').split('\n')) {
      const match = /^\| `([A-Z0-9_]+)` \| ([a-z_]+) \| (\d{3}) \|/.exec(line);
      if (match) documented.set(match[1] as string, { category: match[2] as string, status: Number(match[3]) });
    }
    const inCode = Object.keys(ERROR_CODES).sort();
    assert.deepEqual([...documented.keys()].sort(), inCode);
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      assert.deepEqual(documented.get(code), { category: spec.category, status: CATEGORY_STATUS[spec.category] }, code);
    }
  });

  it('become problem documents without their internal cause', () => {
    const error = new CandorError('AUDIT_APPEND_FAILED', { batch: 3 }, { cause: new Error('disk full at /var/secret') });
    const problem = toProblem(error, 'req-1');
    assert.deepEqual(problem, {
      type: 'urn:candor:error:AUDIT_APPEND_FAILED',
      title: ERROR_CODES.AUDIT_APPEND_FAILED.message,
      status: 500,
      code: 'AUDIT_APPEND_FAILED',
      category: 'internal',
      details: { batch: 3 },
      instance: 'req-1',
    });
    assert.ok(!JSON.stringify(problem).includes('secret'));
  });
});
