import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { knownPerson, personOf } from '../../../test/support/known-person.ts';
import { planWithConsentOnlyContact } from '../../../test/support/plans.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter, type RowReport } from './index.ts';

const EMAIL = 'marketing.communications.email';
const SMS = 'marketing.communications.sms';

// C refused e-mail marketing and gave text messages; B is known by an anonymous id only. Row 1 (a new e-mail beside B's
// anonymous id) serves e-mail marketing only; row 2 (B's anonymous id beside C's phone) is about someone known by its
// strongest identifier, and merges B into C. Over HTTP, in one batch, the first message is then refused; the import
// judges row 1 for the person row 2 makes of B in the same way, although the pipeline, not the import, would make that
// merge.
describeEachDialect('CSV import: a row is judged for the person a later row about someone known merges it into', (dialect) => {
  const ctx = useKernel(dialect);
  const { send, profileOf } = useIngestServer(ctx);
  const at = '2026-12-01T10:00:00.000Z';

  before(async () => {
    await ctx.kernel.catalog.publish(planWithConsentOnlyContact(), CLI_ACTOR);
  });

  /** Events of these profiles kept for e-mail marketing. */
  async function eventsForEmail(profileIds: string[]): Promise<number> {
    const events = await ctx.kernel.collect.events(profileIds, { decrypt: true, limit: 100 });
    return events.filter((e) => e.purposes.includes(EMAIL)).length;
  }

  it('over HTTP: the first message of the batch is refused', async () => {
    const c = await knownPerson(ctx.kernel, [{ type: 'phone', value: '+31612347002' }], { [EMAIL]: 'refused', [SMS]: 'given' });
    const b = await knownPerson(ctx.kernel, [{ type: 'anonymous_id', value: 'lm-anon-b-http' }]);
    const response = await send('/v1/batch', {
      batch: [
        { type: 'identify', messageId: 'lm-h1', anonymousId: 'lm-anon-b-http', timestamp: at, traits: { email: 'lm-b-http@candor-shop.dev' } },
        { type: 'identify', messageId: 'lm-h2', anonymousId: 'lm-anon-b-http', timestamp: at, traits: { phone: '+31612347002' } },
      ],
    });
    assert.deepEqual((response.json() as { results: { status: string }[] }).results.map((r) => r.status), ['refused', 'stored']);
    assert.equal(await personOf(ctx.kernel, b), c);
    assert.equal(await profileOf('email', 'lm-b-http@candor-shop.dev'), null);
    assert.equal(await eventsForEmail(await ctx.kernel.identity.members(c)), 0);
  });

  it('through the import: row 1 links nothing, and B gets no consent from it', async () => {
    const c = await knownPerson(ctx.kernel, [{ type: 'phone', value: '+31612347001' }], { [EMAIL]: 'refused', [SMS]: 'given' });
    const b = await knownPerson(ctx.kernel, [{ type: 'anonymous_id', value: 'lm-anon-b' }]);
    const reports: RowReport[] = [];
    const summary = await new CsvImporter(ctx.kernel).run(
      Readable.from(['anonymous_id,email,phone\nlm-anon-b,lm-b@candor-shop.dev,\nlm-anon-b,,+31612347001\n']),
      { kind: 'customers', basis: 'consent', source: 'crm', actor: CLI_ACTOR, purposes: [EMAIL, SMS] },
      { onRows: (rows) => void reports.push(...rows) },
    );
    assert.deepEqual([summary.stored, summary.refused, summary.consents], [1, 1, 0], JSON.stringify(summary));
    assert.deepEqual(reports.map((r) => [r.row, r.code]), [[2, 'COLLECT_NO_LAWFUL_BASIS']]);
    assert.equal(await personOf(ctx.kernel, b), c);
    assert.equal(await profileOf('email', 'lm-b@candor-shop.dev'), null);
    assert.equal(await eventsForEmail(await ctx.kernel.identity.members(c)), 0);
    // Nobody got the import's consent: not B (merged away), and C's refusal stands.
    assert.deepEqual((await ctx.kernel.consent.history(b)).filter((e) => e.mechanism === 'import'), []);
    await ctx.kernel.consent.load([c]);
    assert.equal(ctx.kernel.consent.decide(c, EMAIL).reason, 'refused');
  });
});
