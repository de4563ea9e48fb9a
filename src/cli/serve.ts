import { describeConfig, type Config } from '../config/index.ts';
import { buildServer } from '../http/server.ts';
import { openKernel } from '../kernel.ts';
import { SYSTEM_ACTOR } from '../shared/actor.ts';

/** Starts the server; on a first start outside production it also creates and prints the owner token once. */
export async function serve(config: Config, out: (line: string) => void): Promise<void> {
  const started = performance.now();
  const kernel = await openKernel(config);
  let ownerSecret: string | undefined;
  if (config.env !== 'production' && (await kernel.access.count()) === 0) {
    ownerSecret = (await kernel.access.createToken('owner', 'created on first start', SYSTEM_ACTOR)).secret;
  }
  const { app } = await buildServer(kernel);
  const address = await app.listen({ port: config.port, host: config.host });
  const base = config.publicUrl || address.replace('://[::1]', '://localhost');
  await kernel.audit.append({ actor: SYSTEM_ACTOR.id, role: SYSTEM_ACTOR.role, action: 'server.start', purpose: 'essential.service.operations', details: Object.fromEntries(describeConfig(config).map((line) => [line.key, line.value])) });

  out(`Candor is listening on ${base} (ready in ${Math.round(performance.now() - started)} ms)`);
  out(`  data:       ${kernel.storage.location}`);
  out(`  master key: ${kernel.keyring.keyFilePath}${kernel.keyFileGenerated ? ' (generated now: back it up apart from the database; without it the data cannot be read)' : ''}`);
  if (ownerSecret) {
    out(`  owner API token (shown once, store it now): ${ownerSecret}`);
    out(`    try: curl -H "Authorization: Bearer ${ownerSecret}" ${base}/v1/admin/me`);
  }
  out(`  health:     ${base}/healthz   readiness: ${base}/readyz   metrics: ${base}/metrics`);
  out(`  API:        ${base}/openapi.json`);
  if (kernel.migrationsApplied.length > 0) out(`  migrations applied: ${kernel.migrationsApplied.join(', ')}`);

  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  out('Candor is stopping');
  await app.close();
  await kernel.audit.append({ actor: SYSTEM_ACTOR.id, role: SYSTEM_ACTOR.role, action: 'server.stop', purpose: 'essential.service.operations' });
  await kernel.close();
}
