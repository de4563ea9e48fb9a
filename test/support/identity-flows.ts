// Sending identifiers the way people and client libraries write them, erasing, and verifying a rights request, over a
// kernel and its ingestion server: for the identity normalization tests.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import type { TestEnvironment } from './databases.ts';
import type { IngestServer } from './ingest-server.ts';

const ALL = { 'analytics.reporting': 'given', 'personalize.profiling': 'given', 'marketing.communications.email': 'given', 'marketing.communications.sms': 'given' };
export const tag = () => randomBytes(4).toString('hex');
/** Four digits no other test of the run uses, for a fictional London number (Ofcom's 020 7946 0xxx drama range). */
let line = 0;
export const london = () => `+44 20 7946 0${String(++line).padStart(3, '0')}`;
export const fullwidth = (s: string) => [...s].map((c) => (c >= '!' && c <= '~' ? String.fromCharCode(c.charCodeAt(0) + 0xfee0) : c)).join('');

/** Sends, erases and reads back, over one kernel and its ingestion server. */
export function identityFlows(ctx: { readonly kernel: Kernel; readonly env: TestEnvironment }, server: IngestServer) {
  const consent = async (ids: Record<string, string>) => {
    const response = await server.send('/v1/consent', { mechanism: 'banner_save', ...ids, purposes: ALL });
    assert.equal(response.statusCode, 200, response.body);
  };
  const identify = async (ids: Record<string, string>, traits: Record<string, string>) => (await server.result('/v1/identify', { ...ids, traits }))?.status;
  const erase = async (type: string, value: string) => {
    const subject = await ctx.kernel.erasure.findSubject({ identifier: { type, value } });
    assert.ok(subject);
    await ctx.kernel.erasure.erase(subject, { requestId: `req-${tag()}` }, CLI_ACTOR);
  };
  const identifierTypes = async (profileId: string | null) => (profileId === null ? [] : (await ctx.kernel.identity.identifiersOf(profileId)).map((i) => i.type).sort());
  /** The code of the newest outbox mail about a request. */
  const codeOf = (requestId: string) => {
    const dir = join(ctx.env.dataDir, 'outbox');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.eml')).sort().reverse()) {
      const text = readFileSync(join(dir, file), 'utf8');
      const match = /Your code is (\d{6})/.exec(text);
      if (text.includes(requestId) && match) return match[1] as string;
    }
    throw new Error(`no code for ${requestId}`);
  };
  /** Starts an access request by e-mail and verifies it with the phone number as written: `verified`, or the error code. */
  const accessWithPhone = async (email: string, phone: string) => {
    const { requestId } = await ctx.kernel.rights.start({ type: 'access', email, client: `10.77.${++line % 250}.1` });
    await ctx.kernel.rights.settled();
    try {
      await ctx.kernel.rights.verify(requestId, codeOf(requestId), { secondIdentifier: { type: 'phone', value: phone } });
      return 'verified';
    } catch (error) {
      return (error as { code?: string }).code;
    }
  };
  return { consent, identify, erase, identifierTypes, accessWithPhone, result: server.result, profileOf: server.profileOf };
}
