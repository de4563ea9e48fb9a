import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDialect } from '../../../test/support/databases.ts';
import { useKernel } from '../../../test/support/kernel.ts';
import { CLI_ACTOR } from '../../shared/actor.ts';
import { CryptoRepo } from './crypto.repo.ts';

describeEachDialect('re-wrapping a page of data keys while one of them is destroyed and made again', (dialect) => {
  const ctx = useKernel(dialect);

  it('leaves the subject new key alone: the page read before the erasure does not overwrite it', async () => {
    const { keyring, storage } = ctx.kernel;
    await keyring.prepare(['race-subject']);
    const repo = new CryptoRepo(storage);
    const [read] = await repo.wrappedBelow(1000, '', 10).then((rows) => rows.filter((r) => r.subject_id === 'race-subject'));
    assert.ok(read, 'the key is read as part of a rotation page');

    // Between the read and the write: the key is destroyed (an erasure) and a new one made for the same subject.
    assert.equal(await keyring.destroySubjectKey('race-subject', CLI_ACTOR, 'test'), true);
    await keyring.prepare(['race-subject']);
    const fresh = await repo.bySubject('race-subject');
    assert.ok(fresh);
    assert.notEqual(fresh.key_id, read.key_id);

    await repo.rewrap([{ ...read, master_version: read.master_version + 1, wrapped_key: 'stale' }]);
    const after = await repo.bySubject('race-subject');
    assert.deepEqual(after, fresh, 'the new key row is unchanged');
  });
});
