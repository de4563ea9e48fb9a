/** Who is acting: an API token, a write key, the local CLI operator, a verified subject or the system itself. */
export interface Actor {
  /** A token id, `cli`, `system` or a subject pseudonym; never a plaintext personal identifier. */
  readonly id: string;
  readonly role: string;
}

/** The server acting on its own (jobs, start-up). */
export const SYSTEM_ACTOR: Actor = { id: 'system', role: 'system' };

/** Someone at the machine with the data directory, running the `candor` CLI. */
export const CLI_ACTOR: Actor = { id: 'cli', role: 'owner' };
