import type { FastifyRequest } from 'fastify';
import type { Actor } from '../../shared/actor.ts';

/** The staff member behind an authenticated admin request. */
export function actorOf(request: FastifyRequest): Actor {
  const principal = request.principal;
  if (!principal) throw new Error('admin route reached without a principal');
  return { id: principal.tokenId, role: principal.role };
}
