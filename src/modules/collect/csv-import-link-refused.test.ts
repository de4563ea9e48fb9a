import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { before, it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { knownPerson, personOf } from '../../../test/support/known-person.ts';
import { planWithConsentOnlyContact } from '../../../test/support/plans.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter } from './index.ts';

const EMAIL = 'marketing.communications.email';
const SMS = 'marketing.communications.sms';

// Over HTTP, resolution links only the identifiers of the fields the consent gate keeps for the person: a CSV row with
// basis consent links the same ones for the person it lands on, whatever purposes the import claims.
describeEachDialect('CSV import: an identifier whose field the person refused is linked as over HTTP', (dialect) => {
  const ctx = useKernel(dialect);
  const { result, profileOf } = useIngestServer(ctx);
  const at = '2026-12-01T10:00:00.000Z';

  before(async () => {
    await ctx.kernel.catalog.publish(planWithConsentOnlyContact(), CLI_ACTOR);
  });

  function importRows(text: string) {
    return new CsvImporter(ctx.kernel).run(Readable.from([text]), { kind: 'customers', basis: 'consent', source: 'crm', actor: CLI_ACTOR, purposes: [EMAIL, SMS] });
  }

  it('links no e-mail whose only purpose the person refused', async () => {
    // P refused e-mail marketing and gave text messages; rows name a new user id, a new address and P's phone.
    const overHttp = await knownPerson(ctx.kernel, [{ type: 'phone', value: '+31612345001' }], { [EMAIL]: 'refused', [SMS]: 'given' });
    const sent = await result('/v1/identify', { userId: 'lr-http-u', messageId: 'lr-http-1', timestamp: at, traits: { email: 'lr-http@candor-shop.dev', phone: '+31612345001' } });
    assert.equal(sent?.status, 'stored');
    assert.equal(await profileOf('user_id', 'lr-http-u'), overHttp);
    assert.equal(await profileOf('email', 'lr-http@candor-shop.dev'), null);

    const p = await knownPerson(ctx.kernel, [{ type: 'phone', value: '+31612345002' }], { [EMAIL]: 'refused', [SMS]: 'given' });
    const summary = await importRows('user_id,email,phone\nlr-csv-u,lr-csv@candor-shop.dev,+31612345002\n');
    assert.equal(summary.stored, 1, JSON.stringify(summary));
    assert.deepEqual(summary.refusedFields, [{ path: 'traits.email', rows: 1 }]);
    assert.equal(await profileOf('user_id', 'lr-csv-u'), p);
    assert.equal(await profileOf('email', 'lr-csv@candor-shop.dev'), null);
  });

  it('merges nobody through an e-mail the person the row lands on refused', async () => {
    // P refused e-mail marketing; Q, who holds the row's address, has no record of it. Over HTTP the row is gated for
    // Q (the address is its strongest known identifier), who keeps no e-mail: it lands on P, and both stay apart.
    const p2 = await knownPerson(ctx.kernel, [{ type: 'phone', value: '+31612345004' }], { [EMAIL]: 'refused', [SMS]: 'given' });
    const q2 = await knownPerson(ctx.kernel, [{ type: 'email', value: 'lr-q2@candor-shop.dev' }], { [SMS]: 'given' });
    const sent = await result('/v1/identify', { userId: 'lr-http-m', messageId: 'lr-http-m', timestamp: at, traits: { email: 'lr-q2@candor-shop.dev', phone: '+31612345004' } });
    assert.equal(sent?.status, 'stored');
    assert.notEqual(await personOf(ctx.kernel, p2), await personOf(ctx.kernel, q2));

    const p = await knownPerson(ctx.kernel, [{ type: 'phone', value: '+31612345003' }], { [EMAIL]: 'refused', [SMS]: 'given' });
    const q = await knownPerson(ctx.kernel, [{ type: 'email', value: 'lr-q@candor-shop.dev' }], { [SMS]: 'given' });
    const summary = await importRows('user_id,email,phone\nlr-csv-m,lr-q@candor-shop.dev,+31612345003\n');
    assert.equal(summary.stored, 1, JSON.stringify(summary));
    assert.equal(await profileOf('user_id', 'lr-csv-m'), p);
    assert.notEqual(await personOf(ctx.kernel, p), await personOf(ctx.kernel, q));
    assert.equal(await profileOf('email', 'lr-q@candor-shop.dev'), q);
  });

  it('refuses a row whose links never settle, and links nothing of it', async () => {
    // Q holds the row's address and refused e-mail marketing. Without the address the row lands on someone new, whose
    // gate (the import's consent) keeps it; with it, the row lands on Q, whose gate does not: no set of links is the
    // one the gate keeps for the person it lands on. Over HTTP the message is refused (someone new has no consent).
    const q = await knownPerson(ctx.kernel, [{ type: 'email', value: 'lr-never@candor-shop.dev' }], { [EMAIL]: 'refused', [SMS]: 'given' });
    const summary = await importRows('user_id,email,phone\nlr-never-u,lr-never@candor-shop.dev,+31612345005\n');
    assert.deepEqual([summary.stored, summary.refused, summary.consents], [0, 1, 0], JSON.stringify(summary));
    assert.equal(await profileOf('user_id', 'lr-never-u'), null);
    assert.equal(await profileOf('phone', '+31612345005'), null);
    assert.equal(await profileOf('email', 'lr-never@candor-shop.dev'), q);
  });
});
