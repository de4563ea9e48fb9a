import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { identityFlows, tag } from '../../../test/support/identity-flows.ts';

// Phone numbers with `identityRules.defaultPhoneRegion`: national numbers are read in that region; configured blocked
// numbers are read like identifiers.

describeEachDialect('identifier normalization (default phone region US, a configured blocked number)', (dialect) => {
  const ctx = {} as { kernel: Kernel; env: TestEnvironment };
  before(async () => {
    ctx.env = await createEnvironment(dialect);
    const rules = { defaultPhoneRegion: 'US', blockedValues: { phone: ['+1 (555) 010-0100'] } };
    ctx.kernel = await openKernel(ctx.env.configWith({ CANDOR_IDENTITY_RULES: JSON.stringify(rules) }));
  });
  after(async () => {
    await ctx.kernel?.close();
    await ctx.env?.cleanup();
  });
  const { consent, identify, erase, identifierTypes, accessWithPhone, profileOf } = identityFlows(ctx, useIngestServer(ctx));

  it('reads a national number in the default region, apart from the Norwegian mobile of the same digits', async () => {
    const t = tag();
    await consent({ userId: `ingrid-${t}` });
    assert.equal(await identify({ userId: `ingrid-${t}` }, { email: `ingrid.${t}@shop.no`, phone: '+47 912 34 468' }), 'stored');
    await consent({ anonymousId: `bob-${t}` });
    assert.equal(await identify({ anonymousId: `bob-${t}` }, { email: `bob.${t}@shop.us`, phone: '(479) 123-4468' }), 'stored');
    const bob = await profileOf('anonymous_id', `bob-${t}`);
    assert.ok(bob);
    assert.notEqual(bob, await profileOf('user_id', `ingrid-${t}`));
    assert.equal(await profileOf('phone', '+1 479 123 4468'), bob);
    assert.equal(await profileOf('phone', '+47 912 34 468'), await profileOf('user_id', `ingrid-${t}`));
  });

  it('suppresses an erased number re-sent in national form, and verifies it as a second identifier in national form', async () => {
    const t = tag();
    await consent({ userId: `us-${t}` });
    assert.equal(await identify({ userId: `us-${t}` }, { email: `us.${t}@shop.us`, phone: '+1 415 555 0134' }), 'stored');
    assert.equal(await accessWithPhone(`us.${t}@shop.us`, '(415) 555-0134'), 'verified');
    await erase('user_id', `us-${t}`);
    for (const [i, written] of ['(415) 555-0134', '415.555.0134', '1-415-555-0134', '011 1 415 555 0134', 'Mobile: (415) 555-0134 x2'].entries()) {
      await consent({ anonymousId: `us-dev-${t}-${i}` });
      assert.equal(await identify({ anonymousId: `us-dev-${t}-${i}` }, { phone: written }), 'suppressed', written);
    }
  });

  it('links no one by a configured blocked number, in whatever form it is configured or sent', async () => {
    for (const [i, written] of ['+15550100100', '(555) 010-0100', '+1 555 010 0100'].entries()) {
      const anon = `cfg-${tag()}-${i}`;
      await consent({ anonymousId: anon });
      assert.equal(await identify({ anonymousId: anon }, { phone: written }), 'stored');
      assert.deepEqual(await identifierTypes(await profileOf('anonymous_id', anon)), ['anonymous_id'], written);
    }
  });
});
