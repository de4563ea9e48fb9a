// Commit notices on PostgreSQL: how a Candor process learns that another process (the CLI, a second server, someone
// with psql) changed the database, so that its caches may keep what they read until then (SQLite tells the same by
// its data_version). Every table gets a statement-level trigger that sends a notice on the `candor_commits` channel
// with the writing session's application_name and the table's name; PostgreSQL delivers notices only when their
// transaction commits, and once per transaction and payload. Each Candor process names its sessions after itself and
// listens on one extra connection: notices from any other name are commits of someone else, and a cache can ask about
// the tables it reads only.
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Client, ClientConfig, Notification } from 'pg';

const COMMIT_CHANNEL = 'candor_commits';
const TRIGGER = 'candor_commit_notice';
/** Serializes trigger installation between processes that start at the same moment. */
const INSTALL_LOCK = 0x63616e64;
/**
 * How often the listening connection is asked for an answer (SELECT 1): notices come in order on it, so an answer
 * also says that every notice sent before it has been heard.
 */
export const HEARTBEAT_MS = 500;
/**
 * An answer not come within this: the connection is taken for lost (a network that silently dropped it sends no reset):
 * untracked, so that caches refresh by age, and a new one is made.
 */
export const HEARTBEAT_TIMEOUT_MS = 1000;
/** Longest wait for the listening connection to be made. */
const LISTEN_CONNECT_TIMEOUT_MS = 5000;

/** The application_name of this process's sessions: `candor-` and a random name of this process. */
export function sessionName(): string {
  return `candor-${randomBytes(6).toString('hex')}`;
}

/** The trigger function's body: the notice names the writing session and the table written. */
const NOTICE_BODY = `BEGIN
          PERFORM pg_notify('${COMMIT_CHANNEL}', current_setting('application_name') || ' ' || TG_TABLE_NAME);
          RETURN NULL;
        END`;

/** Whether the trigger function exists in the current schema with the body of this version. */
async function functionCurrent(db: Kysely<object>): Promise<boolean> {
  const rows = await sql<{ body: string }>`SELECT p.prosrc AS body FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = current_schema() AND p.proname = ${TRIGGER}`.execute(db);
  return rows.rows.some((r) => r.body.trim() === NOTICE_BODY);
}

/** Tables of the current schema without the commit-notice trigger. */
export async function tablesWithoutNotices(db: Kysely<object>): Promise<string[]> {
  const rows = await sql<{ name: string }>`SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
      AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = ${TRIGGER})`.execute(db);
  return rows.rows.map((r) => r.name);
}

/**
 * Gives every table of the current schema the commit-notice trigger it lacks (tables only appear through migrations:
 * called after them); one catalog query when nothing is missing. Returns the tables still without one: where the
 * database user may not create triggers, other processes' writes to them cannot be heard.
 */
export async function installCommitNotices(db: Kysely<object>): Promise<string[]> {
  if ((await tablesWithoutNotices(db)).length === 0 && (await functionCurrent(db))) return [];
  try {
    await db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(${INSTALL_LOCK})`.execute(trx);
      // Also replaces the body an earlier version installed (its notices named no table).
      await sql`CREATE OR REPLACE FUNCTION candor_commit_notice() RETURNS trigger LANGUAGE plpgsql AS $$
        ${sql.raw(NOTICE_BODY)} $$`.execute(trx);
      for (const table of await tablesWithoutNotices(trx)) {
        await sql`CREATE TRIGGER ${sql.ref(TRIGGER)} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${sql.table(table)}
          FOR EACH STATEMENT EXECUTE FUNCTION candor_commit_notice()`.execute(trx);
      }
    });
  } catch {
    // Not allowed (another owner, no TRIGGER privilege): caches then refresh by age, as the caller learns below.
  }
  return tablesWithoutNotices(db);
}

/**
 * Listens for commit notices of other sessions than this process's own. `count` moves with each, `countFor(tables)`
 * with those about one of the tables; `tracked` is false while the listening connection is down or silent (commits may
 * then be missed: callers treat everything as possibly changed), and a new connection counts as a change of every
 * table, for what it may have missed. A connection that stops answering without ending (no TCP reset ever comes) is
 * found by a heartbeat: no answer within HEARTBEAT_TIMEOUT_MS, and it is given up for a new one.
 */
export class CommitListener {
  readonly #config: ClientConfig;
  readonly #own: string;
  readonly #connect: (config: ClientConfig) => Client;
  #client: Client | undefined;
  #count = 0;
  /** Changes of any table: reconnections, and notices naming no table (sent by an earlier version's trigger). */
  #everyTable = 0;
  readonly #byTable = new Map<string, number>();
  #tracked = false;
  #closed = false;
  #retry: ReturnType<typeof setTimeout> | undefined;

  constructor(config: ClientConfig, own: string, connect: (config: ClientConfig) => Client) {
    this.#config = { keepAlive: true, keepAliveInitialDelayMillis: HEARTBEAT_MS, connectionTimeoutMillis: LISTEN_CONNECT_TIMEOUT_MS, ...config, application_name: `${own}-listen` };
    this.#own = own;
    this.#connect = connect;
  }

  get count(): number {
    return this.#count;
  }

  /** Other sessions' commits that wrote one of these tables (or, as far as can be told, may have). */
  countFor(tables: readonly string[]): number {
    let n = this.#everyTable;
    for (const table of tables) n += this.#byTable.get(table) ?? 0;
    return n;
  }

  #heard(payload: string): void {
    const space = payload.lastIndexOf(' ');
    const session = space < 0 ? payload : payload.slice(0, space);
    if (session === this.#own) return;
    this.#count++;
    if (space < 0) this.#everyTable++;
    else {
      const table = payload.slice(space + 1);
      this.#byTable.set(table, (this.#byTable.get(table) ?? 0) + 1);
    }
  }

  get tracked(): boolean {
    return this.#tracked;
  }

  /** Connects and listens; on failure stays untracked and tries again a second later. */
  async start(): Promise<void> {
    if (this.#closed) return;
    const client = this.#connect(this.#config);
    const lost = () => this.#lose(client);
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', (notice: Notification) => {
      if (notice.channel === COMMIT_CHANNEL) this.#heard(notice.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${COMMIT_CHANNEL}`);
      if (this.#closed) throw new Error('closed while connecting');
      this.#client = client;
      // Whatever happened before (or while the last connection was down) was not heard: count it as a change.
      this.#count++;
      this.#everyTable++;
      this.#tracked = true;
      this.#beat(client);
    } catch {
      client.removeAllListeners();
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      this.#later();
    }
  }

  /** Gives up the listening connection (ended, failed or silent) and makes a new one a moment later. */
  #lose(client: Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#tracked = false;
    client.removeAllListeners('notification');
    // With a heartbeat still unanswered, ending the client closes its socket at once.
    void client.end().catch(() => undefined);
    this.#later();
  }

  /**
   * Asks the connection for an answer every HEARTBEAT_MS while it is the listening one; gives it up on silence. The
   * timeout is judged by whether the answer has been read, not by the clock alone: after a stall of the event loop (a
   * long synchronous step) timers run before the socket is read, so when the timeout fires the answer that may have
   * come meanwhile is read first (one turn of the loop, setImmediate runs after its I/O) and only then judged missing.
   */
  #beat(client: Client): void {
    let waiting = false;
    const timer = setInterval(() => {
      if (this.#client !== client) {
        clearInterval(timer);
        return;
      }
      if (waiting) return;
      waiting = true;
      let answered = false;
      const silent = setTimeout(() => {
        setImmediate(() => {
          if (answered) return;
          clearInterval(timer);
          this.#lose(client);
        }).unref();
      }, HEARTBEAT_TIMEOUT_MS);
      silent.unref();
      client.query('SELECT 1').then(
        () => {
          answered = true;
          clearTimeout(silent);
          waiting = false;
        },
        // Failed: the connection is lost, and its 'error' or 'end' said so (or the silence timer will).
        () => undefined,
      );
    }, HEARTBEAT_MS);
    timer.unref();
  }

  #later(): void {
    if (this.#closed || this.#retry) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.start();
    }, 1000);
    this.#retry.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#tracked = false;
    if (this.#retry) clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    if (client) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      // A silent connection never acknowledges its end: not waited for longer than a heartbeat's answer.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([client.end().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, HEARTBEAT_TIMEOUT_MS)))]);
      clearTimeout(timer);
    }
  }
}
