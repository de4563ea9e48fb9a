import { accessSync, constants, createReadStream, createWriteStream, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { createInterface } from 'node:readline';
import { Command, CommanderError, Option } from 'commander';
import { describeConfig, loadConfig, type Config, type ConfigKey } from '../config/index.ts';
import { openKernel, type Kernel } from '../kernel.ts';
import { GENESIS_HASH, verifyChain, type AuditEntry } from '../modules/audit/index.ts';
import { TOKEN_ROLES } from '../modules/access/index.ts';
import { createKeyFile } from '../modules/crypto/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { CandorError, isCandorError } from '../shared/errors.ts';
import { registerCompactCommand } from './compact.ts';
import { registerImportCommands } from './import.ts';
import { registerPlanCommands } from './plan.ts';
import { registerRetentionCommands } from './retention.ts';
import { registerScoringCommands } from './scoring.ts';
import { serve } from './serve.ts';

interface GlobalOptions {
  dataDir?: string;
  config?: string;
  databaseUrl?: string;
}

function configFrom(program: Command, extra: Partial<Record<ConfigKey, string | number | undefined>> = {}): Config {
  const options = program.opts<GlobalOptions>();
  return loadConfig({ configFile: options.config, flags: { dataDir: options.dataDir, databaseUrl: options.databaseUrl, ...extra } });
}

async function withKernel<T>(program: Command, run: (kernel: Kernel) => Promise<T>): Promise<T> {
  // Commands run without PostgreSQL's statement timeouts, which bound the server's requests: an operator runs them and
  // can stop them, and some run long statements on purpose (compact's VACUUM FULL, a sweep's deletes, a large import).
  const kernel = await openKernel({ ...configFrom(program, { logLevel: 'warn' }), postgresTimeoutMs: 0 });
  try {
    return await run(kernel);
  } finally {
    await kernel.close();
  }
}

function parseHead(value: string): { seq: number; hash: string } {
  const match = /^(\d+):([0-9a-f]{64})$/.exec(value);
  if (!match) throw new CommanderError(2, 'candor.usage', 'error: --expect-head takes SEQ:HASH (as printed by a previous verify)');
  return { seq: Number(match[1]), hash: match[2] as string };
}

/** Where an export file stops being readable: its first damaged line and how. */
interface ExportDamage {
  line: number;
  problem: 'not JSON' | 'cut off' | 'not an audit entry';
  /** The entry before the last one read: the damaged line cannot confirm the last one (a break's last good entry). */
  lastGood: { seq: number; hash: string };
}

const ENTRY_TEXT_FIELDS = ['at', 'actor', 'role', 'action', 'purpose', 'outcome', 'prevHash', 'hash'] as const;
const ENTRY_NULLABLE_FIELDS = ['subject', 'resource', 'details'] as const;

/** What is wrong with one line of an export, or the entry it holds. */
function parseExportLine(line: string): AuditEntry | ExportDamage['problem'] {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    // JSON that breaks off where the line ends (V8 names the position, or the end of the input) was cut off.
    const message = error instanceof Error ? error.message : '';
    const position = /at position (\d+)/.exec(message)?.[1];
    const atEnd = /end of JSON input/.test(message) || (position !== undefined && Number(position) >= line.trimEnd().length);
    return atEnd && line.trimStart().startsWith('{') ? 'cut off' : 'not JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an audit entry';
  const entry = value as Record<string, unknown>;
  const ok =
    Number.isSafeInteger(entry.seq) &&
    ENTRY_TEXT_FIELDS.every((f) => typeof entry[f] === 'string') &&
    ENTRY_NULLABLE_FIELDS.every((f) => entry[f] === null || typeof entry[f] === 'string');
  return ok ? (entry as unknown as AuditEntry) : 'not an audit entry';
}

/** An export to verify must be a file this process can read (AUDIT_EXPORT_UNREADABLE otherwise, not an internal error). */
function assertReadableFile(path: string): void {
  try {
    accessSync(path, constants.R_OK);
    if (!statSync(path).isFile()) throw new Error('not a file');
  } catch (error) {
    throw new CandorError('AUDIT_EXPORT_UNREADABLE', undefined, { cause: error });
  }
}

/** The entries of an export file in file order; stops at the first damaged line and records it in `damage`. */
async function* readExport(path: string, damage: { found?: ExportDamage }): AsyncGenerator<AuditEntry> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  let n = 0;
  let previous = { seq: 0, hash: GENESIS_HASH };
  let latest = previous;
  for await (const line of lines) {
    n++;
    if (!line.trim()) continue;
    const parsed = parseExportLine(line);
    if (typeof parsed === 'string') {
      damage.found = { line: n, problem: parsed, lastGood: previous };
      return;
    }
    previous = latest;
    latest = { seq: parsed.seq, hash: parsed.hash };
    yield parsed;
  }
}

/** Builds the `candor` command line. */
export function buildProgram(out: (line: string) => void, err: (line: string) => void = (line) => console.error(line)): Command {
  const program = new Command('candor')
    .description('Candor: a customer data platform that customers can trust.')
    .option('--data-dir <dir>', 'data directory (CANDOR_DATA_DIR, default ./.candor)')
    .option('--config <file>', 'JSON configuration file (CANDOR_CONFIG_FILE)')
    .option('--database-url <url>', 'postgres://… to use PostgreSQL (CANDOR_DATABASE_URL)')
    .configureOutput({ writeOut: (s) => out(s.trimEnd()), writeErr: (s) => err(s.trimEnd()) })
    .showHelpAfterError()
    .exitOverride();

  program
    .command('serve')
    .description('start the HTTP server (migrations are applied first)')
    .option('--port <port>', 'TCP port (CANDOR_PORT, default 8080)')
    .option('--host <host>', 'interface to listen on (CANDOR_HOST, default 127.0.0.1)')
    .action(async (options: { port?: string; host?: string }) => {
      await serve(configFrom(program, { port: options.port, host: options.host }), out);
    });

  program
    .command('migrate')
    .description('apply pending database migrations (all or nothing)')
    .action(async () => {
      const config = configFrom(program, { logLevel: 'warn' });
      const kernel = await openKernel(config);
      try {
        out(kernel.migrationsApplied.length ? `applied ${kernel.migrationsApplied.join(', ')}` : 'database is up to date');
      } finally {
        await kernel.close();
      }
    });

  const keys = program.command('keys').description('API tokens, write keys and master keys');
  keys
    .command('create')
    .description('create an API token for a role, or a write key for a source; the secret is printed once')
    .addOption(new Option('--role <role>', 'staff role, or session_issuer for a backend that issues privacy-center sessions').choices([...TOKEN_ROLES]))
    .option('--write-key', 'create a write key for ingestion instead of an API token')
    .option('--source <name>', 'the source a write key belongs to')
    .option('--label <text>', 'a note to recognise the credential by')
    .action(async (options: { role?: string; writeKey?: boolean; source?: string; label?: string }) => {
      if (options.writeKey ? !options.source || options.role : !options.role || options.source) {
        throw new CommanderError(2, 'candor.usage', 'error: use either --role ROLE or --write-key --source NAME');
      }
      await withKernel(program, async (kernel) => {
        const created = options.writeKey
          ? await kernel.access.createWriteKey(options.source as string, options.label ?? null, CLI_ACTOR)
          : await kernel.access.createToken(options.role as string, options.label ?? null, CLI_ACTOR);
        out(`created ${created.kind === 'api' ? `API token for role ${created.role}` : `write key for source ${created.source}`} (id ${created.id})`);
        out(`secret (shown once, store it now): ${created.secret}`);
      });
    });
  keys
    .command('list')
    .description('list API tokens and write keys (never their secrets)')
    .action(async () => {
      await withKernel(program, async (kernel) => {
        for (const c of await kernel.access.list()) {
          out(`${c.id}  ${c.kind.padEnd(9)}  ${(c.kind === 'api' ? c.role : `source=${c.source}`).padEnd(22)}  ${c.revokedAt ? `revoked ${c.revokedAt}` : 'active'}${c.label ? `  ${c.label}` : ''}`);
        }
      });
    });
  keys
    .command('revoke <id>')
    .description('revoke an API token or write key')
    .action(async (id: string) => {
      await withKernel(program, async (kernel) => {
        await kernel.access.revoke(id, CLI_ACTOR);
        out(`revoked ${id}`);
      });
    });
  keys
    .command('init')
    .description('create a new master key file (for production, where Candor never generates one itself)')
    .requiredOption('--key-file <path>', 'where to write it (then set CANDOR_KEY_FILE to this path)')
    .action((options: { keyFile: string }) => {
      createKeyFile(options.keyFile);
      out(`created ${options.keyFile} (mode 0600): back it up apart from the database; without it the data cannot be read`);
    });
  keys
    .command('rotate')
    .description('add a master key version and re-wrap every data key with it')
    .action(async () => {
      await withKernel(program, async (kernel) => {
        const { version, rewrapped, skipped } = await kernel.keyring.rotateMasterKey(CLI_ACTOR);
        out(`master key version ${version} is active; ${rewrapped} data keys re-wrapped; older versions kept in the key file (copies made before now stay readable until \`keys prune\` removes them)`);
        if (skipped.length > 0) {
          out(`  ${skipped.length} data key${skipped.length > 1 ? 's' : ''} could not be unwrapped (damaged) and stay${skipped.length > 1 ? '' : 's'} on ${skipped.length > 1 ? 'their' : 'its'} version, which cannot be pruned while they do:`);
          for (const k of skipped) out(`    data key ${k.keyId} (master key version ${k.masterVersion})`);
        }
      });
    });
  keys
    .command('prune')
    .description('remove retired master key versions from the key file: copies of the database made before the rotation that retired them can no longer be read or restored')
    .option('--version <n>', 'remove this version only', (value: string) => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new CommanderError(2, 'candor.usage', 'error: --version takes a whole number above 0');
      return n;
    })
    .action(async (options: { version?: number }) => {
      await withKernel(program, async (kernel) => {
        const { removed, active } = await kernel.keyring.pruneMasterKeys(CLI_ACTOR, options.version === undefined ? {} : { version: options.version });
        if (removed.length === 0) {
          out(`nothing to prune: the key file holds master key version ${active} only`);
          return;
        }
        out(`removed master key version${removed.length > 1 ? 's' : ''} ${removed.join(', ')} from the key file; version ${active} is active (recorded in the audit log as crypto.master_key.prune)`);
        out('  copies of the database made before the rotation that retired it (backups, dumps, WAL archives) can no longer be read, and restore refuses those backups');
      });
    });

  keys
    .command('rotate-receipt-key')
    .description('retire the consent receipt signing key and make a new one active; retired keys stay in /.well-known/jwks.json, so receipts signed with them keep verifying')
    .action(async () => {
      await withKernel(program, async (kernel) => {
        const { kid, retired } = await kernel.consent.rotateReceiptKey(CLI_ACTOR);
        out(`consent receipt signing key ${kid} is active (recorded in the audit log as crypto.signing_key.rotate); a running server signs with it within about a second`);
        if (retired.length > 0) out(`  retired ${retired.join(', ')}: still published in /.well-known/jwks.json, so receipts signed with ${retired.length > 1 ? 'them' : 'it'} keep verifying`);
      });
    });

  const audit = program.command('audit').description('the hash-chained audit log');
  audit
    .command('verify')
    .description('re-compute the hash chain and name the first entry altered, removed or reordered')
    .option('--file <export>', 'verify an export (JSON lines) offline instead of the database')
    .option('--expect-head <seq:hash>', 'also check that the log still reaches a head recorded earlier')
    .action(async (options: { file?: string; expectHead?: string }) => {
      const expected = options.expectHead ? parseHead(options.expectHead) : undefined;
      const damage: { found?: ExportDamage } = {};
      if (options.file) assertReadableFile(options.file);
      const result = options.file
        ? await verifyChain(readExport(options.file, damage), expected)
        : await withKernel(program, (kernel) => kernel.audit.verify(expected));
      if (damage.found) {
        // The entries before the damaged line were checked alone: a break among them comes first.
        if (result.ok || result.firstBad?.problem === 'truncated') {
          const { line, problem, lastGood } = damage.found;
          out(`audit log BROKEN at line ${line} of ${options.file}: ${problem} (last good entry ${lastGood.seq}:${lastGood.hash})`);
          throw new CommanderError(3, 'candor.audit_broken', '');
        }
      }
      if (result.ok) {
        out(`audit log intact: ${result.entries} entries, head ${result.head.seq}:${result.head.hash}`);
        return;
      }
      out(`audit log BROKEN at entry ${result.firstBad?.seq}: ${result.firstBad?.problem} (last good entry ${result.head.seq}:${result.head.hash})`);
      throw new CommanderError(3, 'candor.audit_broken', '');
    });
  audit
    .command('export')
    .description('write the audit log as JSON lines, for offline verification and archiving')
    .requiredOption('--out <file>', 'where to write')
    .action(async (options: { out: string }) => {
      await withKernel(program, async (kernel) => {
        const stream = createWriteStream(options.out, { mode: 0o600 });
        let n = 0;
        for await (const entry of kernel.audit.scan()) {
          if (!stream.write(JSON.stringify(entry) + '\n')) await new Promise<void>((resolve) => stream.once('drain', () => resolve()));
          n++;
        }
        await new Promise<void>((resolve, reject) => stream.end((error?: Error | null) => (error ? reject(error) : resolve())));
        await kernel.audit.append({ actor: CLI_ACTOR.id, role: CLI_ACTOR.role, action: 'audit.export', purpose: 'essential.legal_obligation', details: { entries: n } });
        out(`exported ${n} audit entries to ${options.out}`);
      });
    });

  program
    .command('config')
    .description('configuration')
    .command('show')
    .description('print the effective configuration with secrets masked')
    .option('--json', 'as JSON')
    .action((options: { json?: boolean }) => {
      const lines = describeConfig(configFrom(program));
      if (options.json) {
        out(JSON.stringify(lines, null, 2));
        return;
      }
      for (const l of lines) out(`${l.key.padEnd(18)} ${l.value.padEnd(30)} (${l.source}; ${l.env})  ${l.description}`);
    });

  registerPlanCommands(program, { out, err, withKernel: (run) => withKernel(program, run) });
  registerImportCommands(program, { out, err, withKernel: (run) => withKernel(program, run) });
  registerRetentionCommands(program, { out, withKernel: (run) => withKernel(program, run), config: () => configFrom(program, { logLevel: 'warn' }) });
  registerScoringCommands(program, { out, withKernel: (run) => withKernel(program, run) });
  registerCompactCommand(program, { out, withKernel: (run) => withKernel(program, run) });

  return program;
}

/** Runs the CLI; returns the process exit code. */
export async function main(argv: readonly string[], out: (line: string) => void = (line) => console.log(line), err: (line: string) => void = (line) => console.error(line)): Promise<number> {
  const program = buildProgram(out, err);
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return 0;
      if (error.message && error.code === 'candor.usage') err(error.message);
      return error.exitCode;
    }
    if (isCandorError(error)) {
      err(`error ${error.code}: ${error.message}${error.details ? ' ' + JSON.stringify(error.details) : ''}`);
      // A command stopped by a signal it got exits as a shell reports one: 128 + its number (130 SIGINT, 143 SIGTERM).
      const signal = error.details?.signal;
      return signal === 'SIGINT' || signal === 'SIGTERM' ? 128 + osConstants.signals[signal] : 1;
    }
    const wrapped = new CandorError('INTERNAL_ERROR', undefined, { cause: error });
    err(`error ${wrapped.code}: ${wrapped.message} (${error instanceof Error ? error.message : String(error)})`);
    return 1;
  }
}
