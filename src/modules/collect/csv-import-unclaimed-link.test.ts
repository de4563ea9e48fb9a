import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { knownPerson } from '../../../test/support/known-person.ts';
import { planWithConsentOnlyContact } from '../../../test/support/plans.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter } from './index.ts';

const EMAIL = 'marketing.communications.email';
const SMS = 'marketing.communications.sms';

// P gave e-mail marketing and refused text messages. A row names a new user id, P's e-mail and a new phone number, and
// the import claims text messages only. Over HTTP the row is P's: the gate keeps the e-mail (P's consent), so the new
// user id joins P; the row is stored for e-mail marketing and the phone left out. The import does the same: an
// identifier of a purpose it does not claim is linked where the person's own consent keeps it.
describeEachDialect('CSV import: an identifier kept for a purpose the import does not claim is linked as over HTTP', (dialect) => {
  const ctx = useKernel(dialect);
  const { result, profileOf } = useIngestServer(ctx);
  const at = '2026-12-01T10:00:00.000Z';

  before(async () => {
    await ctx.kernel.catalog.publish(planWithConsentOnlyContact(), CLI_ACTOR);
  });

  it('lands the row on the person its e-mail names, who refused what the import claims', async () => {
    const overHttp = await knownPerson(ctx.kernel, [{ type: 'email', value: 'uc-http@candor-shop.dev' }], { [EMAIL]: 'given', [SMS]: 'refused' });
    const sent = await result('/v1/identify', { userId: 'uc-http-u', messageId: 'uc-http-1', timestamp: at, traits: { email: 'uc-http@candor-shop.dev', phone: '+31612346001' } });
    assert.deepEqual([sent?.status, sent?.purposes, sent?.refusedFields], ['stored', [EMAIL], ['traits.phone']]);
    assert.equal(await profileOf('user_id', 'uc-http-u'), overHttp);
    assert.equal(await profileOf('phone', '+31612346001'), null);

    const p = await knownPerson(ctx.kernel, [{ type: 'email', value: 'uc-csv@candor-shop.dev' }], { [EMAIL]: 'given', [SMS]: 'refused' });
    const summary = await new CsvImporter(ctx.kernel).run(Readable.from(['user_id,email,phone\nuc-csv-u,uc-csv@candor-shop.dev,+31612346002\n']), {
      kind: 'customers',
      basis: 'consent',
      source: 'crm',
      actor: CLI_ACTOR,
      purposes: [SMS],
    });
    assert.deepEqual([summary.stored, summary.consents], [1, 0], JSON.stringify(summary));
    assert.deepEqual(summary.refusedFields, [{ path: 'traits.phone', rows: 1 }]);
    assert.equal(await profileOf('user_id', 'uc-csv-u'), p);
    assert.equal(await profileOf('phone', '+31612346002'), null);
    // P's refusal stands: the import recorded nothing for anyone.
    await ctx.kernel.consent.load([p]);
    assert.equal(ctx.kernel.consent.decide(p, SMS).reason, 'refused');
    const traits = await ctx.kernel.profiles.get([p], { decrypt: true });
    assert.deepEqual(traits.traits.map((t) => t.key).sort(), ['email']);
  });
});
