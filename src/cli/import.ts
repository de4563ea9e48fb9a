import { closeSync, createReadStream, fchmodSync, fstatSync, fsyncSync, openSync, renameSync, rmSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import type { Kernel } from '../kernel.ts';
import { CsvImporter, type ImportBasis, type ImportCounts, type ImportKind, type ImportSummary, type RowReport } from '../modules/collect/index.ts';
import { CLI_ACTOR } from '../shared/actor.ts';
import { appendWhole, fsyncDirectory } from '../shared/durable-write.ts';
import { CandorError } from '../shared/errors.ts';

/** What the import commands need from the program that hosts them. */
export interface ImportCommandHelpers {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Opens the kernel for one command and closes it afterwards. */
  withKernel: <T>(run: (kernel: Kernel) => Promise<T>) => Promise<T>;
  /** Where the progress bar goes; drawn only when it is a terminal (default: stderr). */
  progress?: NodeJS.WriteStream;
}

interface ImportFlags {
  source?: string;
  basis?: string;
  purposes?: string;
  jurisdiction?: string;
  noticeVersion?: string;
  report?: string;
  batchSize: string;
  dryRun?: boolean;
  asOf?: string;
}

const KINDS: readonly [ImportKind, string][] = [
  ['customers', 'import a customer list: one person per row — user_id (or userId, customer_id, id), anonymous_id, email, phone; every other column is a trait'],
  [
    'events',
    'import events: one per row — event (or type page/screen with name), user_id or anonymous_id, timestamp, message_id; other columns are properties. Consecutive lines of one order_id (a line with empty id cells joins the order before it) become one Order Completed event with product_* columns as products[]; a line of an order after other orders\' lines is reported IMPORT_ORDER_NOT_CONSECUTIVE (sort the file by order_id)',
  ],
];

const HELP = `
Rows go through the same pipeline as the HTTP API: the tracking plan keeps declared fields only, and the consent gate
stores a field only for a purpose with a lawful basis for that person. With --basis consent, consent for --purposes is
recorded (mechanism import, with a receipt) for each person who has no record for them yet; an import never overrides
a refusal, a withdrawal or a GPC opt-out. Other bases record nothing: only purposes that need no consent record (and
consents the person gave before) let data through.

Cells are trimmed and empty ones left out; numbers and booleans are read only where the plan declares the field so.
Without a message_id column, a keyed hash of the row is the message id, so importing a file again stores nothing twice.
A customer row without a timestamp cell is dated by --as-of (default: the file's modification time), which is part of
its id with the basis and purposes claimed: a list of a later date, or on a wider basis, stores its rows again (a
trait set back to an earlier value included); a list older than a trait's stored value leaves that trait as it is.
An event is stored once, whatever the basis.
Rows not stored are listed in the report (row,status,code,detail; a row is the line its record starts on, the header
being line 1), never with their values; a report that cannot be written (the disk full) stops the import with
IMPORT_REPORT_WRITE_FAILED and keeps whole lines only (none at all: it is removed). The report is written as
REPORT.PID.partial (PID: the import's process id, so two imports at once do not share one) and renamed when the
import ends: a .partial one is what an interrupted import had reported so far
(its rows up to there are stored; run the import again). The file must be UTF-8 (a byte
order mark is allowed): the import stops at the first row that is not (IMPORT_FILE_NOT_UTF8), and it reads nothing
past a quote that is never closed (IMPORT_QUOTE_NOT_CLOSED). A dry run writes nothing to the database, only the report.
Exit status 0 when the whole file was read, even with rows in the report; 1 otherwise.`;

function positiveInteger(option: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1) throw new CandorError('IMPORT_OPTION_INVALID', { option, allowed: 'a whole number from 1' });
  return n;
}

/** Opens the file to import; coded errors for what cannot be read. */
function openInput(file: string): { fd: number; size: number; modified: Date } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    throw new CandorError('IMPORT_FILE_UNREADABLE', { file, reason: (error as NodeJS.ErrnoException).code ?? 'open_failed' });
  }
  const stat = fstatSync(fd);
  if (!stat.isFile()) {
    closeSync(fd);
    throw new CandorError('IMPORT_FILE_UNREADABLE', { file, reason: 'not_a_file' });
  }
  return { fd, size: stat.size, modified: stat.mtime };
}

const csvField = (value: string | number): string => {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
};

/**
 * The per-row report: owner-only (it says which rows of a customer file failed), never a row's values. Each write is
 * whole lines or nothing (IMPORT_REPORT_WRITE_FAILED, the file cut back); a report whose header cannot be written is
 * removed rather than left empty. It is written as `REPORT.<pid>.partial` (two imports at once each have their own) and
 * renamed once the import has ended, so that an
 * import killed part of the way (Ctrl-C, a crash) leaves a report named for what it is, and no earlier run's report.
 */
class ReportFile {
  readonly #fd: number;
  readonly #path: string;
  readonly #final: string;

  constructor(path: string) {
    this.#final = path;
    this.#path = `${path}.${process.pid}.partial`;
    try {
      rmSync(path, { force: true });
      this.#fd = openSync(this.#path, 'w', 0o600);
      fchmodSync(this.#fd, 0o600);
    } catch (error) {
      throw new CandorError('IMPORT_OPTION_INVALID', { option: 'report', reason: (error as NodeJS.ErrnoException).code ?? 'cannot_write' });
    }
    try {
      this.#append('row,status,code,detail\n');
    } catch (error) {
      closeSync(this.#fd);
      rmSync(this.#path, { force: true });
      throw error;
    }
  }

  write(rows: readonly RowReport[]): void {
    this.#append(rows.map((r) => `${r.row},${r.status},${r.code},${csvField(r.detail)}\n`).join(''));
  }

  #append(text: string): void {
    appendWhole(this.#fd, this.#path, text, { code: 'IMPORT_REPORT_WRITE_FAILED' });
  }

  /** Closes the report once it is on disk and gives it its name. */
  close(): void {
    try {
      fsyncSync(this.#fd);
    } catch (error) {
      throw new CandorError('IMPORT_REPORT_WRITE_FAILED', { file: this.#path, reason: (error as NodeJS.ErrnoException).code ?? 'fsync_failed' }, { cause: error });
    } finally {
      closeSync(this.#fd);
    }
    try {
      renameSync(this.#path, this.#final);
      fsyncDirectory(dirname(this.#final));
    } catch (error) {
      throw new CandorError('IMPORT_REPORT_WRITE_FAILED', { file: this.#final, reason: (error as NodeJS.ErrnoException).code ?? 'rename_failed' }, { cause: error });
    }
  }
}

/** A one-line progress bar on a terminal: share of the file read, rows, rows/s and outcomes. */
class ProgressBar {
  readonly #stream: NodeJS.WriteStream;
  readonly #total: number;
  readonly #started = Date.now();
  #drawnAt = 0;
  #drawn = false;
  /** The counts last reported, and whether the throttle left them undrawn. */
  #last: ImportCounts | undefined;
  #pending = false;

  constructor(stream: NodeJS.WriteStream, total: number) {
    this.#stream = stream;
    this.#total = total;
  }

  /** Takes the counts so far; draws them unless the bar was drawn less than 200 ms ago. */
  update(counts: Readonly<ImportCounts>): void {
    // A copy: the importer changes its counts after the last report (on a failure, to the bytes read ahead of the rows).
    this.#last = { ...counts };
    const now = Date.now();
    this.#pending = now - this.#drawnAt < 200;
    if (!this.#pending) this.#draw(now);
  }

  #draw(now: number): void {
    const counts = this.#last;
    if (!counts) return;
    this.#drawnAt = now;
    const share = this.#total > 0 ? Math.min(1, counts.bytes / this.#total) : 1;
    const width = 24;
    const filled = Math.round(share * width);
    const rate = Math.round(counts.rows / Math.max(0.001, (now - this.#started) / 1000));
    const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(share * 100)).padStart(3)}%  ${counts.rows} rows  ${rate} rows/s  stored ${counts.stored}  refused ${counts.refused}  invalid ${counts.invalid}`;
    this.#stream.write(`\r${line.slice(0, Math.max(20, (this.#stream.columns || 120) - 1))}\x1b[K`);
    this.#drawn = true;
    this.#pending = false;
  }

  /** Clears the bar so that a message can be printed on its own line. */
  clear(): void {
    if (this.#drawn) this.#stream.write('\r\x1b[K');
    this.#drawn = false;
  }

  /** Draws the last counts reported, which the throttle may have skipped (the 100% ones), and ends the line. */
  finish(): void {
    if (!this.#last) return;
    if (this.#pending || !this.#drawn) this.#draw(Date.now());
    this.#stream.write('\n');
    this.#drawn = false;
  }
}

/**
 * The as-of time of a customers import: --as-of, else the file's modification time (a re-run of the same file has the
 * same one, so it stores nothing twice; a later export of the list has a later one).
 */
function asOfOption(flags: ImportFlags, modified: Date): { asOf: string; line: string } {
  if (flags.asOf !== undefined) return { asOf: flags.asOf, line: '' };
  if (modified.getTime() > Date.now()) throw new CandorError('IMPORT_OPTION_INVALID', { option: 'as-of', reason: "the file's modification time is later than now: give --as-of" });
  const asOf = modified.toISOString();
  return { asOf, line: ` (the file's modification time; --as-of to set another)` };
}

function describeBasis(claim: ImportBasis, dryRun: boolean): string[] {
  const lines: string[] = [];
  if (claim.basis === 'consent') lines.push(`consent (mechanism import, with a receipt) is recorded for each person who has no record yet for: ${claim.purposes.join(', ')}`);
  else lines.push(`purposes with basis ${claim.basis} in this deployment: ${claim.purposes.join(', ') || 'none'}`);
  if (claim.alsoAllowed.length > 0) lines.push(`purposes that need no consent record apply as well: ${claim.alsoAllowed.map((a) => `${a.purpose} (${a.basis})`).join(', ')}`);
  if (claim.basis !== 'consent' && claim.purposes.length === 0) lines.push(`warning: no configured purpose has basis ${claim.basis}`);
  if (dryRun) lines.push('dry run: nothing is written but the report; the consent gate is predicted from the purposes\' bases');
  return lines;
}

function summaryLine(summary: ImportSummary, report: string, dryRun: boolean): string {
  const counts = `${summary.duplicate} duplicate, ${summary.refused} refused (no lawful basis), ${summary.invalid} invalid, ${summary.suppressed} suppressed${summary.notProcessed > 0 ? `, ${summary.notProcessed} not processed` : ''}; report: ${report}`;
  return dryRun ? `checked ${summary.rows} rows (dry run, nothing written): ${summary.stored} would be stored, ${counts}` : `imported ${summary.rows} rows: ${summary.stored} stored, ${counts}`;
}

/** Registers `candor import customers|events FILE`. */
export function registerImportCommands(program: Command, { out, err, withKernel, progress = process.stderr }: ImportCommandHelpers): void {
  const group = program.command('import').description('import customer lists and event histories (orders) from CSV through the ingestion pipeline');
  for (const [kind, description] of KINDS) {
    const command = group
      .command(`${kind} <file>`)
      .description(description)
      .option('--source <name>', 'the source the rows are stored under (required)')
      .option('--basis <basis>', 'the lawful basis claimed for the records: consent, contract, legal_obligation or legitimate_interests (required)')
      .option('--purposes <list>', 'with --basis consent: the purposes the people consented to, comma-separated')
      .option('--jurisdiction <code>', 'with --basis consent: ISO 3166 code recorded with the consents, e.g. DE or US-CA')
      .option('--notice-version <n>', 'with --basis consent: the privacy notice version the consents were given under (default: the current one)')
      .option('--report <file>', 'where to write the rows that were not stored (default: FILE.report.csv)')
      .option('--batch-size <n>', 'rows per batch through the pipeline', '500')
      .option('--dry-run', 'read and check every row against the tracking plan; write nothing but the report');
    if (kind === 'customers') command.option('--as-of <time>', "the time the list is as of, for rows without a timestamp cell (ISO 8601; default: the file's modification time)");
    command
      .addHelpText('after', HELP)
      .action(async (file: string, flags: ImportFlags) => {
        if (!flags.source) throw new CandorError('IMPORT_OPTION_INVALID', { option: 'source', reason: 'required' });
        if (!flags.basis) throw new CandorError('IMPORT_OPTION_INVALID', { option: 'basis', reason: 'required' });
        const options = {
          kind,
          source: flags.source,
          basis: flags.basis,
          purposes: flags.purposes?.split(',').map((p) => p.trim()).filter((p) => p !== ''),
          jurisdiction: flags.jurisdiction,
          noticeVersion: positiveInteger('notice-version', flags.noticeVersion),
          batchSize: positiveInteger('batch-size', flags.batchSize),
          dryRun: flags.dryRun === true,
          actor: CLI_ACTOR,
        };
        const reportPath = flags.report ?? `${file}.report.csv`;
        if (resolve(reportPath) === resolve(file)) throw new CandorError('IMPORT_OPTION_INVALID', { option: 'report', reason: 'the report would overwrite the file imported' });
        const input = openInput(file);
        let fdOwned = true;
        try {
          const asOf = kind === 'customers' ? asOfOption(flags, input.modified) : undefined;
          const run = { ...options, asOf: asOf?.asOf };
          const summary = await withKernel(async (kernel) => {
            const importer = new CsvImporter({
              storage: kernel.storage,
              audit: kernel.audit,
              keyring: kernel.keyring,
              catalog: kernel.catalog,
              consent: kernel.consent,
              identity: kernel.identity,
              collect: kernel.collect,
              taxonomy: kernel.taxonomy,
            });
            const claim = importer.check(run);
            err(`importing ${kind} from ${file} as source ${options.source} on the basis of ${claim.basis}`);
            for (const line of describeBasis(claim, options.dryRun)) err(line);
            if (asOf && claim.asOf) err(`rows without a timestamp are as of ${claim.asOf}${asOf.line}`);
            const report = new ReportFile(reportPath);
            const bar = progress.isTTY ? new ProgressBar(progress, input.size) : undefined;
            try {
              fdOwned = false;
              const stream = createReadStream(file, { fd: input.fd, highWaterMark: 256 * 1024 });
              return await importer.run(stream, run, {
                onRows: (rows) => report.write(rows),
                onProgress: (counts) => bar?.update(counts),
                onWarning: (message) => {
                  bar?.clear();
                  err(`warning: ${message}`);
                },
              });
            } finally {
              bar?.finish();
              report.close();
            }
          });
          if (summary.consents > 0) err(`consent recorded for ${summary.consents} people (mechanism import)`);
          if (summary.dropped.length > 0) err(`not in the tracking plan, dropped: ${summary.dropped.map((d) => `${d.path} (${d.rows} rows)`).join(', ')}`);
          if (summary.refusedFields.length > 0) err(`left out, no lawful basis for their purposes: ${summary.refusedFields.map((d) => `${d.path} (${d.rows} rows)`).join(', ')}`);
          out(summaryLine(summary, reportPath, options.dryRun));
          if (!summary.complete) throw summary.error;
        } finally {
          if (fdOwned) closeSync(input.fd);
        }
      });
  }
}
