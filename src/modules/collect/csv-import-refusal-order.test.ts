import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { knownPerson, personOf } from '../../../test/support/known-person.ts';
import { planWithConsentOnlyContact } from '../../../test/support/plans.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter, type RowReport } from './index.ts';

const EMAIL = 'marketing.communications.email';
const SMS = 'marketing.communications.sms';

// B (known by a phone number) has no record; C (known by an anonymous id) refused everything the rows serve. Row 1 lands
// on B alone; row 2 gives C's anonymous id beside B's phone, so it would merge B into C, and is refused. Row 1 is stored
// whether the two rows are imported in one batch or in two: a merge that a refused row would make binds nobody.
describeEachDialect('CSV import: a row refused only because of a merge that a refused row would make is stored', (dialect) => {
  const ctx = useKernel(dialect);

  before(async () => {
    await ctx.kernel.catalog.publish(planWithConsentOnlyContact(), CLI_ACTOR);
  });

  async function importBoth(tag: string, batchSize: number) {
    const b = await knownPerson(ctx.kernel, [{ type: 'phone', value: `+3161239${tag}01` }]);
    const c = await knownPerson(ctx.kernel, [{ type: 'anonymous_id', value: `ro-anon-c-${tag}` }], { [EMAIL]: 'refused', [SMS]: 'refused' });
    const csv = `anonymous_id,email,phone\nro-anon-1-${tag},ro-b-${tag}@candor-shop.dev,+3161239${tag}01\nro-anon-c-${tag},ro-c-${tag}@candor-shop.dev,+3161239${tag}01\n`;
    const reports: RowReport[] = [];
    const summary = await new CsvImporter(ctx.kernel).run(Readable.from([csv]), { kind: 'customers', basis: 'consent', source: 'crm', actor: CLI_ACTOR, purposes: [EMAIL, SMS], batchSize }, { onRows: (rows) => void reports.push(...rows) });
    assert.deepEqual([summary.stored, summary.refused, summary.consents], [1, 1, 1], JSON.stringify(summary));
    assert.deepEqual(reports.map((r) => [r.row, r.code]), [[3, 'COLLECT_NO_LAWFUL_BASIS']]);
    // B and C stay apart; B got the import's consent for row 1, C's refusals stand.
    assert.equal(await personOf(ctx.kernel, b), b);
    assert.equal(await personOf(ctx.kernel, c), c);
    await ctx.kernel.consent.load([b, c]);
    assert.equal(ctx.kernel.consent.decide(b, EMAIL).reason, 'given');
    assert.equal(ctx.kernel.consent.decide(c, EMAIL).reason, 'refused');
  }

  it('stores row 1 with one row per batch', async () => {
    await importBoth('11', 1);
  });

  it('stores row 1 with both rows in one batch', async () => {
    await importBoth('22', 500);
  });
});
