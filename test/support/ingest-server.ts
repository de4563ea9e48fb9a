// An HTTP server over a kernel with a write key of the `web` source, for tests that send messages and consent the way a
// client library does and read back what the identity graph linked.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { buildServer, type CandorServer } from '../../src/http/server.ts';
import type { Kernel } from '../../src/kernel.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';

export interface MessageResult {
  status: string;
  code?: string;
  purposes?: string[];
  refusedFields?: string[];
}

export interface IngestServer {
  /** POST a JSON body with the write key. */
  send(url: string, payload: unknown): Promise<{ statusCode: number; body: string; json(): unknown }>;
  /** The first per-message result of a 200 answer. */
  result(url: string, payload: unknown): Promise<MessageResult | undefined>;
  /** POST /v1/consent for a user id (mechanism banner_save); fails the test unless 200. */
  consent(userId: string, purposes: Record<string, string>): Promise<void>;
  /** The profile an identifier resolves to now, or null. */
  profileOf(type: string, value: string): Promise<string | null>;
}

/** Builds the server before the suite (over `ctx.kernel`, opened by useKernel) and closes it after. */
export function useIngestServer(ctx: { readonly kernel: Kernel }): IngestServer {
  let server: CandorServer;
  let writeKey = '';
  before(async () => {
    server = await buildServer(ctx.kernel);
    writeKey = (await ctx.kernel.access.createWriteKey('web', null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await server.app.close();
  });
  const send = async (url: string, payload: unknown) =>
    await server.app.inject({ method: 'POST', url, headers: { authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`, 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
  return {
    send,
    async result(url, payload) {
      const response = await send(url, payload);
      assert.equal(response.statusCode, 200, response.body);
      return (response.json() as { results: MessageResult[] }).results[0];
    },
    async consent(userId, purposes) {
      const response = await send('/v1/consent', { mechanism: 'banner_save', userId, purposes });
      assert.equal(response.statusCode, 200, response.body);
    },
    async profileOf(type, value) {
      return (await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source: 'web', at: new Date().toISOString() }]))[0] ?? null;
    },
  };
}
