import type { FastifyInstance } from 'fastify';
import { CandorError, toProblem } from '../shared/errors.ts';

/** Seconds a client is asked to wait before it tries a request again that a stopping server refused. */
export const STOPPING_RETRY_AFTER_S = 5;

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
    const error = new CandorError('SERVER_STOPPING');
    void reply.code(error.status).header('retry-after', String(STOPPING_RETRY_AFTER_S)).header('connection', 'close').type('application/problem+json').send(toProblem(error, request.id));
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });

  const working = new Set<Promise<unknown>>();
  const waiting: (() => void)[] = [];
  app.addHook('onRoute', (route) => {
    const handler = route.handler;
    // The handler's own result is returned as it is: only a promise (an async handler) is watched until it settles.
    route.handler = function (this: FastifyInstance, request, reply) {
      const result: unknown = handler.call(this, request, reply);
      if (result instanceof Promise) {
        working.add(result);
        const done = () => {
          working.delete(result);
          if (working.size === 0) for (const resolve of waiting.splice(0)) resolve();
        };
        result.then(done, done);
      }
      return result;
    } as typeof handler;
  });
  return {
    settled: () => (working.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiting.push(resolve))),
  };
}
