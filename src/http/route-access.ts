import type { Principal, StaffRole, SubjectPrincipal } from '../modules/access/index.ts';

/** Who a route serves; each audience has its own authentication. */
export type Audience = 'public' | 'ingest' | 'subject' | 'admin';

/** What every route must declare: its audience, the roles allowed, and the purpose of the access. */
export interface RouteAccess {
  readonly audience: Audience;
  /** Staff roles allowed (admin routes only). */
  readonly roles?: readonly StaffRole[];
  /** The data use (taxonomy key) this access serves. */
  readonly purpose: string;
  /** The route returns personal data: each successful call writes an audit entry before the answer leaves. */
  readonly personalData?: boolean;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: RouteAccess;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
    /** The verified customer, on subject-audience routes. */
    subject: SubjectPrincipal | undefined;
    /** Pseudonym of the subject whose data a personal-data route returned, for the audit entry. */
    auditSubject: string | undefined;
  }
}

/** A registered route and its declaration, for the contract test and the docs. */
export interface RouteRecord {
  method: string;
  url: string;
  access: RouteAccess | undefined;
}
