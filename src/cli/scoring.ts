import { Option, type Command } from 'commander';
import { loadShop } from '../demo/load.ts';
import { buildServer } from '../http/server.ts';
import type { Kernel } from '../kernel.ts';
import { MODEL_KINDS, type ModelKind, type RunSummary } from '../modules/scoring/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { CandorError } from '../shared/errors.ts';

const DEMO_WEEKS = 52;

export interface ScoringCommandHelpers {
  out: (line: string) => void;
  withKernel: <T>(run: (kernel: Kernel) => Promise<T>) => Promise<T>;
  /** Where progress is drawn; only on a terminal (default: stderr). */
  progress?: NodeJS.WriteStream;
}

/** A one-line progress bar, redrawn at most ten times a second, only on a terminal. */
function progressBar(stream: NodeJS.WriteStream) {
  let last = 0;
  return {
    update(done: number, total: number, label: string) {
      if (!stream.isTTY) return;
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const width = 30;
      const share = total > 0 ? Math.min(1, done / total) : 1;
      const filled = Math.round(share * width);
      stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(share * 100)}% ${label} ${done}/${total}   `);
    },
    end() {
      if (stream.isTTY) stream.write('\n');
    },
  };
}

function printRun(out: (line: string) => void, run: RunSummary): void {
  out(`scoring run ${run.runId}: ${run.people} people, ${run.profiled} profiled, ${run.buyers} with orders (${run.seconds.toFixed(1)} s)`);
  const reasons = Object.entries(run.notProfiled);
  if (reasons.length > 0) out(`not profiled: ${reasons.map(([reason, n]) => `${n} ${reason}`).join(', ')}`);
  for (const m of run.models) out(m.skipped ? `  ${m.kind}: skipped — ${m.skipped}` : `  ${m.kind}: ${m.id} fitted on ${m.customers} customers`);
  const segments = Object.entries(run.segments);
  if (segments.length > 0) out(`segments: ${segments.map(([name, n]) => `${name} ${n}`).join(', ')}`);
  for (const p of run.personas) out(`persona ${p.name} (${p.size}): ${p.description}`);
}

export function registerScoringCommands(program: Command, { out, withKernel, progress = process.stderr }: ScoringCommandHelpers): void {
  program
    .command('score')
    .description('fit the models and score everyone whose lawful basis covers profiling (RFM, personas, BG/NBD, Gamma–Gamma)')
    .addOption(new Option('--model <model...>', 'only these models').choices([...MODEL_KINDS]))
    .action(async (options: { model?: ModelKind[] }) => {
      await withKernel(async (kernel) => {
        const bar = progressBar(progress);
        const run = await kernel.scoring.run(CLI_ACTOR, { models: options.model, onProgress: (done, total, stage) => bar.update(done, total, stage) });
        bar.end();
        printRun(out, run);
      });
    });

  const demo = program.command('demo').description('demonstration data');
  demo
    .command('generate')
    .description('generate a synthetic shop (customers, sessions, orders, consents — some refused, some with GPC) and send it through the ingestion pipeline')
    .option('--customers <n>', 'number of customers', '1000')
    .option('--seed <n>', 'random seed (the same seed gives the same shop)', '1')
    .option('--score', 'run the scoring job afterwards')
    .action(async (options: { customers: string; seed: string; score?: boolean }) => {
      const customers = Number(options.customers);
      const seed = Number(options.seed);
      if (!Number.isSafeInteger(customers) || customers < 1 || customers > 10_000_000) throw new CandorError('CONFIG_INVALID', { option: '--customers', allowed: '1 to 10,000,000' });
      if (!Number.isSafeInteger(seed)) throw new CandorError('CONFIG_INVALID', { option: '--seed', allowed: 'a whole number' });
      await withKernel(async (kernel) => {
        const key = await kernel.access.createWriteKey('demo', null, CLI_ACTOR);
        const server = await buildServer(kernel);
        const authorization = `Basic ${Buffer.from(`${key.secret}:`).toString('base64')}`;
        try {
          const bar = progressBar(progress);
          const summary = await loadShop(
            async (url, body, headers = {}) => {
              const response = await server.app.inject({ method: 'POST', url, headers: { authorization, 'content-type': 'application/json', ...headers }, payload: JSON.stringify(body) });
              return { statusCode: response.statusCode, body: response.body };
            },
            // A year of history: within the default 13-month retention of raw events, so the sweeper keeps it all.
            { customers, seed, weeks: DEMO_WEEKS },
            { onProgress: (done, total) => bar.update(done, total, 'customers') },
          );
          bar.end();
          out(`demo shop (seed ${seed}, ${DEMO_WEEKS} weeks ending today): ${summary.customers} customers, ${summary.orders} orders, ${summary.events} events — ${summary.stored} stored, ${summary.refused} not stored (no lawful basis or invalid)`);
          out(`consent: ${summary.refusedProfiling} refused profiling, ${summary.gpc} sent Global Privacy Control`);
          await kernel.access.revoke(key.id, CLI_ACTOR);
        } finally {
          await server.app.close();
        }
        if (options.score) printRun(out, await kernel.scoring.run(CLI_ACTOR));
      });
    });
}
