// What Candor answered to a client library's requests, recorded on the client side without changing the request.

export interface ItemAnswer {
  index: number;
  messageId?: string;
  status: string;
  code?: string;
  purposes?: string[];
  dropped?: string[];
  refusedFields?: string[];
}

export interface RecordedAnswer {
  url: string;
  status: number;
  body: { success?: boolean; gpcHonoured?: boolean; results?: ItemAnswer[]; code?: string };
}

/** Every per-message result of the recorded answers, in order. */
export function resultsOf(answers: readonly RecordedAnswer[]): ItemAnswer[] {
  return answers.flatMap((a) => a.body.results ?? []);
}

/** The per-message result for a messageId, failing loudly when Candor did not answer it. */
export function resultFor(answers: readonly RecordedAnswer[], messageId: string): ItemAnswer {
  const found = resultsOf(answers).find((r) => r.messageId === messageId);
  if (!found) throw new Error(`no result for ${messageId} in ${JSON.stringify(answers)}`);
  return found;
}

/** Parses an answer body; a non-JSON body is kept as text under `code` so the assertion shows it. */
export function parseAnswer(text: string): RecordedAnswer['body'] {
  try {
    return JSON.parse(text) as RecordedAnswer['body'];
  } catch {
    return { code: `non-JSON answer: ${text.slice(0, 200)}` };
  }
}
