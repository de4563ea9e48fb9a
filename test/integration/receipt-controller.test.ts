import assert from 'node:assert/strict';
import { it } from 'node:test';
import { openKernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import { createEnvironment } from '../support/databases.ts';

it('names the configured controller and privacy notice in consent receipts', async () => {
  const env = await createEnvironment('sqlite');
  const kernel = await openKernel(env.configWith({ CANDOR_CONTROLLER_NAME: 'Acme Shoes B.V.', CANDOR_PRIVACY_POLICY_URL: 'https://shoes.example/privacy', CANDOR_CONTROLLER_CONTACT: 'privacy@shoes.example' }));
  try {
    const { receipt } = await kernel.consent.record('prf_receipt_test', [{ purpose: 'analytics.reporting', state: 'given' }], { mechanism: 'banner_accept' }, CLI_ACTOR);
    const payload = (await kernel.consent.verifyReceipt(receipt)) as { piiControllers: { name: string; contact: string; email: string }[]; policyUrl: string };
    assert.equal(payload.piiControllers[0]?.name, 'Acme Shoes B.V.');
    assert.equal(payload.piiControllers[0]?.contact, 'privacy@shoes.example');
    assert.equal(payload.piiControllers[0]?.email, 'privacy@shoes.example');
    assert.equal(payload.policyUrl, 'https://shoes.example/privacy');
  } finally {
    await kernel.close();
    await env.cleanup();
  }
});
