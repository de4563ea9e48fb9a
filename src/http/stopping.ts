import type { FastifyInstance } from 'fastify';
import { CandorError } from '../shared/errors.ts';
import { sendProblem } from './problem.ts';

/** What the server tells the one stopping it (docs/security.md, Stopping). */
export interface Stopping {
  /** Resolves once no route handler is working any more: their writes are committed or abandoned. */
  settled(): Promise<void>;
}

/**
 * Makes a closing server (from `app.close()` on) answer like one that is going away: a request that arrives meanwhile
 * (on a connection that was already open) is answered SERVER_STOPPING, 503 with Retry-After, and every answer carries
 * `Connection: close`, so that no client keeps a connection the server is waiting for. Also counts the route handlers
 * at work, so that a stop that closed their connections can still wait for their writes to commit.
 */
export function installStopping(app: FastifyInstance): Stopping {
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // Before the guard's hooks: no credential is checked, and nothing is counted as a refusal, for a request never served.
  app.addHook('onRequest', (request, reply, done) => {
    if (!closing) {
      done();
      return;
    }
    void sendProblem(request, reply.header('connection', 'close'), new CandorError('SERVER_STOPPING'));
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });

  let working = 0;
  const waiting: (() => void)[] = [];
  app.addHook('onRoute', (route) => {
    const handler = route.handler;
    // The handler's own result is returned as it is: only a promise (an async handler) is counted until it settles.
    route.handler = function (this: FastifyInstance, request, reply) {
      const result: unknown = handler.call(this, request, reply);
      if (result instanceof Promise) {
        working++;
        const done = () => {
          working--;
          if (working === 0) for (const resolve of waiting.splice(0)) resolve();
        };
        result.then(done, done);
      }
      return result;
    } as typeof handler;
  });
  return {
    settled: () => (working === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiting.push(resolve))),
  };
}
