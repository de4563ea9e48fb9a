import assert from 'node:assert/strict';
import { it } from 'node:test';
import { failsWhileAuditFails } from '../../../test/support/audit.ts';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { uniqueId } from '../../../test/support/subjects.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { isCandorError } from '../../shared/errors.ts';

describeEachDialect('keyring: key destruction audited in its own transaction', (dialect) => {
  const ctx = useKernel(dialect);

  it('destroys no data key whose audit entry cannot be written, and audits a destruction once', async () => {
    const { keyring, audit } = ctx.kernel;
    const subjectId = uniqueId('subject');
    const sealed = await keyring.encrypt(subjectId, 'a personal value', 'test.field');
    const entries = async () => (await audit.list({ action: 'crypto.data_key.destroy', limit: 1000 })).filter((e) => e.subject === keyring.pseudonym('subject', subjectId));

    await failsWhileAuditFails(audit, () => keyring.destroySubjectKey(subjectId, CLI_ACTOR, 'essential.legal_obligation'));
    assert.equal(await keyring.decrypt(sealed, 'test.field'), 'a personal value', 'the key is still there');
    assert.equal((await entries()).length, 0);

    assert.equal(await keyring.destroySubjectKey(subjectId, CLI_ACTOR, 'essential.legal_obligation'), true);
    await assert.rejects(keyring.decrypt(sealed, 'test.field'), (e) => isCandorError(e, 'CRYPTO_KEY_DESTROYED'));
    const [entry, ...more] = await entries();
    assert.equal(more.length, 0);
    assert.equal(entry?.outcome, 'success');
    assert.match(entry?.resource ?? '', /^data_key:[0-9a-f]{32}$/);
    assert.equal((await audit.verify()).ok, true);
  });
});
