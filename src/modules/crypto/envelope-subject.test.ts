import assert from 'node:assert/strict';
import { it } from 'node:test';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useIngestServer } from '../../../test/support/ingest-server.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { isCandorError } from '../../shared/errors.ts';

// A field envelope is bound to its person: a reader that knows whose row it reads (an event's, a trait's profile)
// refuses a ciphertext sealed with another person's data key, so that someone who can write the database cannot show
// one person's personal data as another's by copying an envelope from row to row.
describeEachDialect('field envelopes are bound to the person whose row holds them', (dialect) => {
  const ctx = useKernel(dialect);
  const { result, consent, profileOf } = useIngestServer(ctx);
  const purposes = { 'analytics.reporting': 'given', 'personalize.profiling': 'given', 'marketing.communications.email': 'given' };

  it('refuses a ciphertext sealed for another subject, and still opens one sealed for the subject named', async () => {
    const { keyring } = ctx.kernel;
    const sealed = await keyring.encrypt('es-subject-a', 'ada@candor-shop.dev', 'profiles.traits.email');
    assert.equal(await keyring.decrypt(sealed, 'profiles.traits.email', 'es-subject-a'), 'ada@candor-shop.dev');
    assert.equal(await keyring.decrypt(sealed, 'profiles.traits.email'), 'ada@candor-shop.dev');
    await keyring.encrypt('es-subject-b', 'x', 'profiles.traits.email');
    await assert.rejects(keyring.decrypt(sealed, 'profiles.traits.email', 'es-subject-b'), (e) => isCandorError(e, 'CRYPTO_DECRYPT_FAILED'));
  });

  it("refuses another person's event envelope and trait value copied onto a person's rows", async () => {
    for (const [user, email] of [['es-ada', 'ada@candor-shop.dev'], ['es-bob', 'bob@candor-shop.dev']] as const) {
      await consent(user, purposes);
      const identify = await result('/v1/identify', { userId: user, messageId: `${user}-1`, traits: { email, first_name: user } });
      assert.equal(identify?.status, 'stored', JSON.stringify(identify));
    }
    const ada = await profileOf('user_id', 'es-ada');
    const bob = await profileOf('user_id', 'es-bob');
    assert.ok(ada !== null && bob !== null && ada !== bob);
    const { collect, profiles, storage } = ctx.kernel;
    // Bob's rows read as his own before anything is copied.
    const before = await collect.events([bob], { decrypt: true, limit: 10 });
    assert.equal(JSON.stringify(before).includes('ada@'), false);
    assert.equal((await profiles.get([bob], { decrypt: true })).traits.find((t) => t.key === 'email')?.value, 'bob@candor-shop.dev');

    // Someone with write access to the database copies Ada's ciphertexts onto Bob's rows.
    const { db } = storage;
    const [adaEvent] = (await sql<{ data_enc: string }>`SELECT data_enc FROM collect_events WHERE profile_id = ${ada} AND data_enc IS NOT NULL`.execute(db)).rows;
    assert.ok(adaEvent);
    await sql`UPDATE collect_events SET data_enc = ${adaEvent.data_enc} WHERE profile_id = ${bob}`.execute(db);
    const [adaEmail] = (await sql<{ value: string }>`SELECT value FROM profiles_traits WHERE profile_id = ${ada} AND key = 'email'`.execute(db)).rows;
    assert.ok(adaEmail);
    await sql`UPDATE profiles_traits SET value = ${adaEmail.value} WHERE profile_id = ${bob} AND key = 'email'`.execute(db);

    await assert.rejects(collect.events([bob], { decrypt: true, limit: 10 }), (e) => isCandorError(e, 'CRYPTO_DECRYPT_FAILED'));
    await assert.rejects(profiles.get([bob], { decrypt: true }), (e) => isCandorError(e, 'CRYPTO_DECRYPT_FAILED'));
    // Ada's own rows still read.
    const adas = await collect.events([ada], { decrypt: true, limit: 10 });
    assert.ok(JSON.stringify(adas).includes('ada@candor-shop.dev'));
  });
});
