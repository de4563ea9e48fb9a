import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { fullwidth, identityFlows, london, tag } from '../../../test/support/identity-flows.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CsvImporter } from '../collect/index.ts';

// Identifiers written the way people and client libraries write them, sent through ingestion, erasure and rights
// verification: one number in any written form is one identifier, and placeholders link no one.

describeEachDialect('identifier normalization (built-in rules)', (dialect) => {
  const ctx = useKernel(dialect);
  const { consent, identify, erase, identifierTypes, accessWithPhone, result, profileOf } = identityFlows(ctx, useIngestServer(ctx));

  it('keeps a US number in national form apart from the Norwegian mobile its digits spell after a +', async () => {
    const t = tag();
    await consent({ userId: `ingrid-${t}` });
    assert.equal(await identify({ userId: `ingrid-${t}` }, { email: `ingrid.${t}@shop.no`, phone: '+47 912 34 467' }), 'stored');
    await consent({ anonymousId: `bob-${t}` });
    assert.equal(await identify({ anonymousId: `bob-${t}` }, { email: `bob.${t}@shop.us`, phone: '(479) 123-4467' }), 'stored');
    const [ingrid, bob] = [await profileOf('user_id', `ingrid-${t}`), await profileOf('anonymous_id', `bob-${t}`)];
    assert.ok(ingrid && bob);
    assert.notEqual(bob, ingrid, 'two people, two profiles');
    // Without a default region a number without + or 00 names no country: it links no one.
    assert.deepEqual(await identifierTypes(bob), ['anonymous_id', 'email']);
    assert.equal(await profileOf('phone', '(479) 123-4467'), null);
  });

  it('reads a number written with its trunk prefix after the country code as the number itself', async () => {
    const t = tag();
    const phone = london();
    const trunk = phone.replace('+44 20', '+44 (0)20');
    const zero = phone.replace('+44 20', '+44 020');
    for (const [anon, written] of [[`a-${t}`, phone], [`b-${t}`, trunk], [`c-${t}`, zero]] as const) {
      await consent({ anonymousId: anon });
      assert.equal(await identify({ anonymousId: anon }, { phone: written }), 'stored');
    }
    const one = await profileOf('anonymous_id', `a-${t}`);
    assert.ok(one);
    assert.equal(await profileOf('anonymous_id', `b-${t}`), one, 'the (0) form is the same person');
    assert.equal(await profileOf('anonymous_id', `c-${t}`), one, 'the +44 0 form is the same person');
    assert.equal(await profileOf('phone', zero), one);
  });

  it("suppresses an erased person's phone number re-sent in any written form", async () => {
    const t = tag();
    const phone = london();
    const digits = phone.slice(-4);
    await consent({ userId: `tr-${t}` });
    assert.equal(await identify({ userId: `tr-${t}` }, { email: `trunk.${t}@shop.io`, phone }), 'stored');
    await erase('email', `trunk.${t}@shop.io`);
    const forms = [
      phone,
      `+44 (0)20 7946 ${digits}`,
      `+44 020 7946 ${digits}`,
      `0044 20 7946 ${digits}`,
      `+44 20 7946\u2013${digits}`,
      `+44 20 7946\u2011${digits}`,
      fullwidth(phone),
      `tel:+44-20-7946-${digits}`,
      `+44 20 7946\u200b${digits}`,
    ];
    for (const [i, written] of forms.entries()) {
      const anon = `tr-dev-${t}-${i}`;
      await consent({ anonymousId: anon });
      assert.equal(await identify({ anonymousId: anon }, { phone: written }), 'suppressed', JSON.stringify(written));
      assert.deepEqual(await identifierTypes(await profileOf('anonymous_id', anon)), ['anonymous_id'], JSON.stringify(written));
    }
  });

  it("suppresses an erased person's number written with an extension or a label, over HTTP, in a CSV import and in the group's own check", async () => {
    const t = tag();
    const phone = london();
    const compact = phone.replace(/ /g, '');
    await consent({ userId: `ext-${t}` });
    assert.equal(await identify({ userId: `ext-${t}` }, { email: `ext.${t}@shop.io`, phone }), 'stored');
    await erase('user_id', `ext-${t}`);
    const forms = [
      `${phone} x12`,
      `${compact};ext=12`,
      `tel:${compact};ext=12`,
      `${phone} ext. 12`,
      `${phone.replace('+44 20', '+44 (0)20')} x7`,
      `${fullwidth(phone)} x12`,
      `${phone} (mobile)`,
      `Tel. ${phone}`,
      `Kim: ${compact}`,
      `+${compact}`,
      `${london()} (home), ${phone} (work)`,
    ];
    for (const [i, written] of forms.entries()) {
      const anon = `ext-dev-${t}-${i}`;
      await consent({ anonymousId: anon });
      assert.equal(await identify({ anonymousId: anon }, { phone: written }), 'suppressed', JSON.stringify(written));
      assert.deepEqual(await identifierTypes(await profileOf('anonymous_id', anon)), ['anonymous_id'], JSON.stringify(written));
      // The check an ingestion group makes in its transaction (PostgreSQL: against the database itself).
      const item = { identifiers: [{ type: 'anonymous_id', value: `g-${tag()}` }, { type: 'phone', value: written }], source: 'web', at: new Date().toISOString() };
      assert.deepEqual(await ctx.kernel.storage.raw.transaction((tx) => ctx.kernel.identity.suppressedInGroup(tx, [item])), [true], JSON.stringify(written));
    }
    const userId = `ext-csv-${t}`;
    const reports: { row: number; status: string; code: string }[] = [];
    const summary = await new CsvImporter(ctx.kernel).run(
      Readable.from([`user_id,phone\n${userId},"${phone} x12"\n`]),
      { source: 'files', actor: CLI_ACTOR, kind: 'customers', basis: 'consent', purposes: ['analytics.reporting'] },
      { onRows: (rows) => void reports.push(...rows), onWarning: () => {} },
    );
    assert.deepEqual([summary.stored, summary.suppressed], [0, 1]);
    assert.deepEqual(reports.map((r) => [r.row, r.status, r.code]), [[2, 'suppressed', 'COLLECT_SUBJECT_SUPPRESSED']]);
    assert.equal(await profileOf('user_id', userId), null);
  });

  it('links no one by a number written with an extension or a label', async () => {
    const t = tag();
    const phone = london();
    await consent({ userId: `known-${t}` });
    assert.equal(await identify({ userId: `known-${t}` }, { phone }), 'stored');
    const known = await profileOf('user_id', `known-${t}`);
    for (const [i, written] of [`${phone} x12`, `Tel. ${phone}`].entries()) {
      const anon = `known-dev-${t}-${i}`;
      await consent({ anonymousId: anon });
      assert.equal(await identify({ anonymousId: anon }, { phone: written }), 'stored', written);
      const device = await profileOf('anonymous_id', anon);
      assert.notEqual(device, known, written);
      assert.deepEqual(await identifierTypes(device), ['anonymous_id'], written);
      assert.equal(await profileOf('phone', written), null, written);
    }
  });

  it("suppresses an alias whose previousId is an erased person's user id", async () => {
    const t = tag();
    await consent({ userId: `cust-${t}` });
    assert.equal(await identify({ userId: `cust-${t}` }, { email: `alias.${t}@shop.io` }), 'stored');
    await erase('user_id', `cust-${t}`);
    await consent({ userId: `cust-${t}-v2` });
    const alias = await result('/v1/alias', { userId: `cust-${t}-v2`, previousId: `cust-${t}` });
    assert.equal(alias?.status, 'suppressed', JSON.stringify(alias));
    assert.equal(alias?.code, 'COLLECT_SUBJECT_SUPPRESSED');
    assert.equal(await profileOf('anonymous_id', `cust-${t}`), null, "the erased user id is nobody's anonymous id");
    // An alias from an anonymous id still links it.
    const linked = await result('/v1/alias', { userId: `cust-${t}-v2`, previousId: `dev-${t}` });
    assert.equal(linked?.status, 'stored', JSON.stringify(linked));
    assert.equal(await profileOf('anonymous_id', `dev-${t}`), await profileOf('user_id', `cust-${t}-v2`));
  });

  it('keeps devices apart that send a placeholder user id: (null), <nil>, quoted, zero-width and fullwidth null, N.A.', async () => {
    for (const [i, junk] of ['(null)', '<nil>', '"null"', "'null'", 'null\u200b', 'ｎｕｌｌ', 'N.A.', '{00000000-0000-0000-0000-000000000000}'].entries()) {
      const t = tag();
      for (const who of ['anna', 'ben']) {
        await consent({ anonymousId: `${who}-${t}-${i}` });
        assert.equal(await identify({ userId: junk, anonymousId: `${who}-${t}-${i}` }, { email: `${who}.${t}.${i}@shop.io` }), 'stored');
      }
      const [anna, ben] = [await profileOf('anonymous_id', `anna-${t}-${i}`), await profileOf('anonymous_id', `ben-${t}-${i}`)];
      assert.ok(anna && ben);
      assert.notEqual(anna, ben, `${JSON.stringify(junk)} merged two people`);
      assert.deepEqual(await identifierTypes(anna), ['anonymous_id', 'email'], JSON.stringify(junk));
    }
  });

  it('links no one by placeholder phone numbers, addresses at example.com subdomains or no_reply mailboxes', async () => {
    const placeholders: Record<string, string>[] = [{ phone: '+1 555-555-5555' }, { phone: '+1 (000) 000-0000' }, { phone: '+44 0000 000000' }, { email: 'someone@mail.example.com' }, { email: 'no_reply@shop.io' }];
    for (const [i, traits] of placeholders.entries()) {
      const anon = `ph-${tag()}-${i}`;
      await consent({ anonymousId: anon });
      assert.equal(await identify({ anonymousId: anon }, traits), 'stored');
      assert.deepEqual(await identifierTypes(await profileOf('anonymous_id', anon)), ['anonymous_id'], JSON.stringify(traits));
    }
  });

  it('accepts a phone number in another written form as the second identifier of an access request', async () => {
    const t = tag();
    const phone = london();
    await consent({ userId: `rq-${t}` });
    assert.equal(await identify({ userId: `rq-${t}` }, { email: `rq.${t}@shop.io`, phone }), 'stored');
    assert.equal(await accessWithPhone(`rq.${t}@shop.io`, phone.replace('+44 20', '+44 (0)20').replace(/ (\d{4})$/, '\u2013$1')), 'verified');
    assert.equal(await accessWithPhone(`rq.${t}@shop.io`, london()), 'RIGHTS_SECOND_FACTOR_INVALID');
  });
});
