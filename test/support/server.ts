import { after, before } from 'node:test';
import { buildServer, type CandorServer } from '../../src/http/server.ts';
import type { Kernel } from '../../src/kernel.ts';
import { STAFF_ROLES } from '../../src/modules/access/index.ts';
import { CLI_ACTOR } from '../../src/shared/actor.ts';

export interface ServerHarness {
  readonly server: CandorServer;
  /** One API token per staff role. */
  readonly tokens: Readonly<Record<string, string>>;
  /** The Authorization header of a role's token. */
  auth(role: string): { authorization: string };
}

/** An in-process server over the suite's kernel, with an API token for every staff role; closed after the suite. */
export function useServer(ctx: { readonly kernel: Kernel }): ServerHarness {
  const tokens: Record<string, string> = {};
  const harness = {
    tokens,
    auth: (role: string) => ({ authorization: `Bearer ${tokens[role]}` }),
  } as { server: CandorServer; tokens: Record<string, string>; auth(role: string): { authorization: string } };
  before(async () => {
    harness.server = await buildServer(ctx.kernel);
    for (const role of STAFF_ROLES) tokens[role] = (await ctx.kernel.access.createToken(role, null, CLI_ACTOR)).secret;
  });
  after(async () => {
    await harness.server?.app.close();
  });
  return harness;
}
