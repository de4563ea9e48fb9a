import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { useServer } from '../../../test/support/server.ts';
import { Taxonomy } from './index.ts';

// Custom entries come after the built-in ones in code point order (architecture.md, "Order of text"), the same in
// the process that added them, after a restart, on SQLite and on a PostgreSQL database with a linguistic collation
// (ICU en-US orders `b_x` before `b1x` before `ba`, and `custom_x` before `custom.x`).
describeEachDialect('taxonomy: custom entries in code point order', (dialect) => {
  const ctx = useKernel(dialect, { icuLocale: 'en-US' });
  const h = useServer(ctx);
  const added = ['ba', 'custom_x', 'b_x', 'custom.x', 'b1x'];
  const codePointOrder = ['b1x', 'b_x', 'ba', 'custom.x', 'custom_x'];
  const customKeys = (list: readonly object[]) => (list as { key: string; custom?: boolean }[]).filter((e) => e.custom).map((e) => e.key);

  it('lists custom data subjects by key in code point order, as added and after a restart', async () => {
    for (const key of added) {
      const response = await h.server.app.inject({ method: 'POST', url: '/v1/admin/taxonomy/data-subjects', headers: h.auth('owner'), payload: { key, name: key, description: key } });
      assert.equal(response.statusCode, 201, response.body);
    }
    const listed = await h.server.app.inject({ method: 'GET', url: '/v1/admin/taxonomy/data-subjects', headers: h.auth('owner') });
    assert.deepEqual(customKeys(listed.json() as object[]), codePointOrder, 'in the process that added them');
    const reopened = await Taxonomy.open(ctx.kernel.storage, ctx.kernel.audit);
    assert.deepEqual(customKeys(reopened.list('data-subjects')), codePointOrder, 'read from the database');
  });
});
