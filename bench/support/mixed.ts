// Mixed traffic for bench:ingest: batches of 100 events of which only some take Candor's fastest path (a person
// known by both ids, consent already loaded), with the consent calls of first-time visitors before their events.
// Every batch of 100 has, in random order:
//   60 events of known people on a known device (user id and anonymous id linked before the run, consent given),
//   20 of known people on a device never seen before (their user id with a new anonymous id),
//   10 of 2 first-time visitors (5 each, anonymous id only), each of whom sent a consent call first (POST /v1/consent,
//      analytics and profiling given) that was answered before the batch was made,
//   10 of 2 visitors who never answered the consent banner (anonymous id only): refused for want of consent, but for
//      events whose purpose needs none.
// GPC: the events of 1 known person in 20 carry `context.gpc: true` (their browser sends the signal), and 1 first-time
// visitor in 4 sends it (the consent call with `Sec-GPC: 1`, the events with `context.gpc`).
// Against the privacy-off server the same batches are sent, without consent calls (it has no consent to record).
import { randomUUID } from 'node:crypto';
import { makeEvent } from './events.ts';
import type { Payload } from './load.ts';

export const MIXED_SHAPE = 'per 100 events: 60 known people, 20 known people on a new device, 10 of 2 first-time visitors after their consent call, 10 of 2 visitors without consent; GPC from 1 known person in 20 and 1 first-time visitor in 4';

interface Visitor {
  id: string;
  gpc: boolean;
}

/** A generator of mixed requests for load(): consent calls when `consentCalls`, else only batches. */
export function mixedTraffic(random: () => number, users: number, consentCalls: boolean): { next: () => Payload } {
  const ready: Visitor[] = [];
  let asked = 0;
  let visitors = 0;
  const newVisitor = (): Visitor => ({ id: `visitor-${process.pid}-${visitors++}`, gpc: visitors % 4 === 0 });
  const consentCall = (): Payload => {
    const visitor = newVisitor();
    asked++;
    return {
      kind: 'consent',
      path: '/v1/consent',
      events: 0,
      ...(visitor.gpc ? { headers: { 'sec-gpc': '1' } } : {}),
      body: JSON.stringify({ anonymousId: visitor.id, purposes: { 'analytics.reporting': 'given', 'personalize.profiling': 'given' }, mechanism: 'banner_accept' }),
      answered: (status) => {
        asked--;
        if (status === 200) ready.push(visitor);
      },
    };
  };
  const anonymous = (id: string, gpc: boolean) => {
    const e = makeEvent(random, users);
    delete e.userId;
    e.anonymousId = id;
    if (gpc) e.context = { ...(e.context as object), gpc: true };
    return e;
  };
  const batch = (): Payload => {
    const events: Record<string, unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      const e = makeEvent(random, users);
      if (Number(String(e.userId).slice(5)) % 20 === 0) e.context = { ...(e.context as object), gpc: true };
      events.push(e);
    }
    for (let i = 0; i < 20; i++) events.push({ ...makeEvent(random, users), anonymousId: `device-${randomUUID()}` });
    for (const visitor of ready.splice(0, 2)) for (let i = 0; i < 5; i++) events.push(anonymous(visitor.id, visitor.gpc));
    for (let v = 0; v < 2; v++) {
      const id = `stranger-${randomUUID()}`;
      for (let i = 0; i < 5; i++) events.push(anonymous(id, false));
    }
    // Shuffled, so that no kind of event always comes first in a batch.
    for (let i = events.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [events[i], events[j]] = [events[j] as Record<string, unknown>, events[i] as Record<string, unknown>];
    }
    return { kind: 'batch', body: JSON.stringify({ batch: events }), events: events.length };
  };
  return {
    next: () => {
      if (!consentCalls) {
        while (ready.length < 2) ready.push(newVisitor());
        return batch();
      }
      // Consent calls keep 16 visitors answered or on their way; the batches take two answered ones each (a batch made
      // with fewer than two answered is shorter, and the run's count of consent calls per batch shows it).
      if (ready.length + asked < 16) return consentCall();
      return batch();
    },
  };
}
