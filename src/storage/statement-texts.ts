/**
 * SQL texts compiled once by name (a hot path compiles its statement with Kysely the first time, then reuses the
 * text with storage.raw).
 */
export class StatementTexts {
  readonly #texts = new Map<string, string>();

  get(name: string, build: () => string): string {
    let text = this.#texts.get(name);
    if (text === undefined) {
      text = build();
      this.#texts.set(name, text);
    }
    return text;
  }
}
