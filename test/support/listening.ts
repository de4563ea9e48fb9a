// Candor listening on a real loopback socket (127.0.0.1, an ephemeral port) over a fresh database, for tests that
// drive it with third-party clients: a write key, consent recorded over HTTP, and read-backs through the kernel.
import { after, before } from 'node:test';
import { buildServer, type CandorServer } from '../../src/http/server.ts';
import { openKernel, type Kernel } from '../../src/kernel.ts';
import type { ProfileView } from '../../src/modules/profiles/index.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';
import type { DialectName } from '../../src/storage/index.ts';
import { createEnvironment, type TestEnvironment } from './databases.ts';

export type StoredEvent = Awaited<ReturnType<Kernel['collect']['events']>>[number];

export interface ListeningCandor {
  readonly kernel: Kernel;
  /** Base URL, `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** A write key of the source `source` (secret). */
  readonly writeKey: string;
  readonly source: string;
  /** POST /v1/consent with the write key; answers the status and the parsed body. */
  consent(body: Record<string, unknown>, headers?: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }>;
  /** The profile an identifier resolves to now, or null. */
  profileOf(type: string, value: string): Promise<string | null>;
  /** Every event stored about the profile (and profiles merged into it), personal fields decrypted. */
  eventsOf(profileId: string): Promise<StoredEvent[]>;
  /** The profile view (traits decrypted) over the profile and its merge members. */
  viewOf(profileId: string): Promise<ProfileView>;
}

/** Starts Candor over a fresh database of the dialect before the suite, stops it and cleans up after. */
export function useListeningCandor(dialect: DialectName, source = 'compat'): ListeningCandor {
  const ctx = {} as { kernel: Kernel; env: TestEnvironment };
  const state = { server: undefined as CandorServer | undefined, url: '', port: 0, writeKey: '' };
  before(async () => {
    ctx.env = await createEnvironment(dialect);
    ctx.kernel = await openKernel(ctx.env.config);
    state.server = await buildServer(ctx.kernel);
    const address = await state.server.app.listen({ host: '127.0.0.1', port: 0 });
    state.url = address;
    state.port = Number(new URL(address).port);
    state.writeKey = (await ctx.kernel.access.createWriteKey(source, null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await state.server?.app.close();
    await ctx.kernel?.close();
    await ctx.env?.cleanup();
  });
  const at = () => new Date().toISOString();
  return {
    get kernel() {
      return ctx.kernel;
    },
    get url() {
      return state.url;
    },
    get port() {
      return state.port;
    },
    get writeKey() {
      return state.writeKey;
    },
    source,
    async consent(body, headers = {}) {
      const response = await fetch(`${state.url}/v1/consent`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${state.writeKey}:`).toString('base64')}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ mechanism: 'banner_save', ...body }),
        signal: AbortSignal.timeout(10_000),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    },
    async profileOf(type, value) {
      const [profileId] = await ctx.kernel.identity.lookupBatch(ctx.kernel.storage.raw, [{ identifiers: [{ type, value }], source, at: at() }]);
      return profileId ?? null;
    },
    async eventsOf(profileId) {
      return ctx.kernel.collect.events(await ctx.kernel.identity.members(profileId), { decrypt: true, limit: 1000 });
    },
    async viewOf(profileId) {
      return ctx.kernel.profiles.get(await ctx.kernel.identity.members(profileId), { decrypt: true });
    },
  };
}
