import { Writable } from 'node:stream';

/** A stream for a test's logger (createLogger(level, stream)) that keeps each line it is given. */
export function captureLog(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, stream };
}
