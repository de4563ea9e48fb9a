import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, it } from 'node:test';
import { createEnvironment, describeEachDialect, type TestEnvironment } from '../../../test/support/databases.ts';
import { openKernel, type Kernel } from '../../kernel.ts';
import { isCandorError } from '../../shared/errors.ts';
import { DEFAULT_IDENTITY_RULES, type ResolveItem } from './index.ts';
import { CompiledRules } from './identity.rules.ts';

const uid = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;
const item = (identifiers: { type: string; value: string }[]): ResolveItem => ({ identifiers, source: 'web', at: new Date().toISOString() });

describeEachDialect('identity with configured rules', (dialect) => {
  let env: TestEnvironment;
  let kernel: Kernel;
  before(async () => {
    env = await createEnvironment(dialect);
    const rules = { limits: { email: 1 }, blockedValues: { email: ['info@shop.io'], 'custom:*': ['placeholder'] } };
    kernel = await openKernel(env.configWith({ CANDOR_IDENTITY_RULES: JSON.stringify(rules) }));
  });
  after(async () => {
    await kernel?.close();
    await env?.cleanup();
  });
  const resolveOne = async (i: ResolveItem) => (await kernel.storage.raw.transaction((tx) => kernel.identity.resolveBatch(tx, [i])))[0];

  it('opens Identity with the configured rules applied over the defaults', () => {
    assert.equal(kernel.identity.rules.limits.email, 1);
    assert.equal(kernel.identity.rules.limits.user_id, 1);
    assert.ok(kernel.identity.rules.blockedValues.email?.includes('test@example.com'), 'the built-in values stay');
    assert.ok(kernel.identity.rules.blockedValues.email?.includes('info@shop.io'));
  });

  it('refuses a second e-mail address on a profile when the limit is 1', async () => {
    const [user, first, second] = [uid('user'), `${uid('a')}@shop.io`, `${uid('b')}@shop.io`];
    const one = await resolveOne(item([{ type: 'user_id', value: user }, { type: 'email', value: first }]));
    const two = await resolveOne(item([{ type: 'user_id', value: user }, { type: 'email', value: second }]));
    assert.equal(two?.profileId, one?.profileId);
    assert.deepEqual(two?.ignored, [{ type: 'email', reason: 'limit' }]);
    const emails = (await kernel.identity.identifiersOf(one?.profileId as string)).filter((i) => i.type === 'email');
    assert.equal(emails.length, 1);
  });

  it('links no one by a configured blocked value, nor by a built-in one', async () => {
    const [a, b] = [uid('anon'), uid('anon')];
    const first = await resolveOne(item([{ type: 'anonymous_id', value: a }, { type: 'email', value: ' INFO@shop.io' }, { type: 'custom:crm', value: 'Placeholder' }]));
    const second = await resolveOne(item([{ type: 'anonymous_id', value: b }, { type: 'email', value: 'info@shop.io' }, { type: 'email', value: 'test@example.com' }]));
    assert.notEqual(first?.profileId, second?.profileId);
    assert.deepEqual(first?.ignored, [{ type: 'email', reason: 'blocked' }, { type: 'custom:crm', reason: 'blocked' }]);
    assert.deepEqual(second?.ignored, [{ type: 'email', reason: 'blocked' }, { type: 'email', reason: 'blocked' }]);
    assert.equal(kernel.identity.normalize({ type: 'email', value: 'info@shop.io' }), undefined);
  });
});

it('refuses rules with an invalid pattern, a limit below 1 or an unknown priority type (CONFIG_INVALID, by path)', () => {
  assert.throws(
    () => new CompiledRules({ ...DEFAULT_IDENTITY_RULES, blockedPatterns: { email: ['(unclosed'] }, limits: { user_id: 0 }, priority: ['user_id', 'device'] }),
    (error) => {
      assert.ok(isCandorError(error, 'CONFIG_INVALID'));
      assert.deepEqual((error.details?.problems as { key: string; path: string }[]).map((p) => `${p.key}:${p.path}`), [
        'identityRules:blockedPatterns.email[0]',
        'identityRules:limits.user_id',
        'identityRules:priority[1]',
      ]);
      return true;
    },
  );
});
