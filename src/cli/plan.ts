import { readFileSync } from 'node:fs';
import { CommanderError, Option, type Command } from 'commander';
import { planWarningOptions, type Kernel } from '../kernel.ts';
import { planWarningSummary } from '../plan-warning-watch.ts';
import { DEFAULT_PLAN, type OutlineSection, type PlanProblem, type PlanWarning } from '../modules/catalog/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { isCandorError } from '../shared/errors.ts';

/** What the plan commands need from the program that hosts them. */
export interface PlanCommandHelpers {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Opens the kernel for one command and closes it afterwards. */
  withKernel: <T>(run: (kernel: Kernel) => Promise<T>) => Promise<T>;
}

function readPlan(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new CommanderError(2, 'candor.usage', `error: cannot read ${file}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CommanderError(2, 'candor.usage', `error: ${file} is not valid JSON`);
  }
}

/** A version number option's parser (`--version`, `--base`). */
const versionOption = (option: string) => (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new CommanderError(2, 'candor.usage', `error: ${option} takes a version number (1, 2, …)`);
  return n;
};

function reportProblems(problems: readonly PlanProblem[], err: (line: string) => void): never {
  // Coded as every CLI error is (`error CODE: …`), then one line per problem.
  err(`error CATALOG_PLAN_INVALID: the tracking plan has ${problems.length} problem${problems.length === 1 ? '' : 's'}:`);
  for (const p of problems) err(`  ${p.path}: ${p.problem}`);
  throw new CommanderError(1, 'candor.plan_invalid', '');
}

/** Fields and events the consent gate can never keep, or not for some of their purposes: a line each, after the outcome. */
function reportWarnings(warnings: readonly PlanWarning[] | undefined, err: (line: string) => void): void {
  for (const w of warnings ?? []) err(`warning: ${w.section === 'track' ? `track "${w.event}"` : w.section}${w.path === undefined ? '' : ` ${w.path}`}: ${w.warning}`);
}

function describeSection(section: OutlineSection): string {
  const title =
    section.section === 'track' ? `track "${section.event}"` : section.section === 'context' ? 'context (kept on every call)' : `${section.section}${section.section === 'identify' || section.section === 'group' ? ' traits' : ''}`;
  const occurrence = section.occurrence ? ` (occurrence: ${section.occurrence.category}${section.occurrence.declared ? '' : ', no category declared'})` : '';
  return section.purposes.length > 0 ? `${title}: ${section.purposes.join(', ')}${occurrence}` : title;
}

/** Registers `candor plan show|warnings|default|versions|validate|publish`. */
export function registerPlanCommands(program: Command, { out, err, withKernel }: PlanCommandHelpers): void {
  const plan = program.command('plan').description('the tracking plan: which events and fields are kept, for which purposes');

  plan
    .command('show')
    .description('print the tracking plan in force (or an earlier version): every field with its category, retention and purposes')
    .addOption(new Option('--version <n>', 'a published version number').argParser(versionOption('--version')))
    .option('--json', 'the plan document as JSON (to edit and publish again)')
    .action(async (options: { version?: number; json?: boolean }) => {
      await withKernel(async (kernel) => {
        const published = await kernel.catalog.plan(options.version);
        if (options.json) {
          out(JSON.stringify(published.plan, null, 2));
          return;
        }
        out(`tracking plan "${published.plan.name}" version ${published.version} (sha256 ${published.hash}), published ${published.publishedAt} by ${published.publishedBy}`);
        for (const section of await kernel.catalog.outline(published.version)) {
          out('');
          out(describeSection(section));
          const width = Math.max(0, ...section.fields.map((f) => f.path.length));
          for (const f of section.fields) {
            const flags = [f.personal && 'personal', f.special && 'special category', f.preciseLocation && 'precise location'].filter(Boolean).join(', ');
            out(`  ${f.path.padEnd(width)}  ${f.type.padEnd(8)}  ${f.category.padEnd(32)}  ${f.retention.padEnd(5)}  ${f.purposes.join(', ')}${flags ? `  [${flags}]` : ''}`);
          }
        }
      });
    });

  plan
    .command('warnings')
    .description('list the fields and events of the plan in force that the consent gate cannot keep, or not for all of their purposes, under the notice in force')
    .action(async () => {
      await withKernel(async (kernel) => {
        const summary = await planWarningSummary(kernel);
        out(`tracking plan version ${summary.planVersion}, notice version ${summary.noticeVersion}: ${summary.warnings.length === 0 ? 'no warnings' : `${summary.fields} field${summary.fields === 1 ? '' : 's'} and ${summary.events} event${summary.events === 1 ? '' : 's'} with warnings`}`);
        reportWarnings(summary.warnings, out);
      });
    });

  plan
    .command('default')
    .description('print the default tracking plan this release ships, as JSON (to compare with the plan in force, edit and publish)')
    .action(() => {
      out(JSON.stringify(DEFAULT_PLAN, null, 2));
    });

  plan
    .command('versions')
    .description('list the published versions of the tracking plan')
    .action(async () => {
      await withKernel(async (kernel) => {
        const current = kernel.catalog.version();
        for (const v of await kernel.catalog.versions()) {
          out(`${String(v.version).padStart(4)}  ${v.publishedAt}  ${v.publishedBy.padEnd(16)}  sha256 ${v.hash}${v.version === current ? '  (in force)' : ''}`);
        }
      });
    });

  plan
    .command('validate <file>')
    .description('check a tracking plan (JSON) without publishing it; lists every problem')
    .action(async (file: string) => {
      const document = readPlan(file);
      await withKernel(async (kernel) => {
        const result = await kernel.catalog.validatePlan(document, planWarningOptions(kernel));
        if (!result.ok) reportProblems(result.problems, err);
        out(`the tracking plan in ${file} is valid`);
        reportWarnings(result.warnings, err);
      });
    });

  plan
    .command('publish <file>')
    .description('publish a tracking plan (JSON) as a new version; it is in force for the next event')
    .addOption(new Option('--base <n>', 'the version the file was edited from: publish only if it is still the latest (else CATALOG_PLAN_CONFLICT)').argParser(versionOption('--base')))
    .action(async (file: string, options: { base?: number }) => {
      const document = readPlan(file);
      await withKernel(async (kernel) => {
        try {
          const result = await kernel.catalog.publish(document, CLI_ACTOR, { baseVersion: options.base, ...planWarningOptions(kernel) });
          out(result.unchanged ? `tracking plan unchanged: version ${result.version} (sha256 ${result.hash}) is already this document` : `published tracking plan version ${result.version} (sha256 ${result.hash})`);
          reportWarnings(result.warnings, err);
        } catch (error) {
          if (isCandorError(error, 'CATALOG_PLAN_INVALID')) reportProblems((error.details?.problems ?? []) as PlanProblem[], err);
          throw error;
        }
      });
    });
}
