/**
 * A deterministic synthetic shop: customers who buy and drop out exactly as the BG/NBD and Gamma–Gamma models
 * assume (λ ~ Gamma(r, α) purchases per week while alive, dropout with probability p ~ Beta(a, b) after each repeat
 * purchase; spend per order ~ Gamma(p, ν) with ν ~ Gamma(q, γ)), a catalogue with categories and taste clusters,
 * browsing sessions, e-mail engagement, and consent choices (some refuse profiling, some send GPC). The true
 * parameters are known, so tests can check that fitting recovers them; the same seed always gives the same shop.
 */

export interface ShopParams {
  customers: number;
  seed: number;
  /** First day of the shop (UTC, YYYY-MM-DD) and its length in weeks. */
  start: string;
  weeks: number;
  /** Customers join uniformly over the first `cohortWeeks`. */
  cohortWeeks: number;
  bgnbd: { r: number; alpha: number; a: number; b: number };
  spend: { p: number; q: number; gamma: number };
  /** Shares of customers who refuse profiling, and who browse with Global Privacy Control on. */
  refuseProfiling: number;
  gpc: number;
}

export const DEFAULT_SHOP: Omit<ShopParams, 'customers' | 'seed'> = {
  start: '2025-01-01',
  weeks: 78,
  cohortWeeks: 12,
  bgnbd: { r: 0.8, alpha: 8, a: 0.8, b: 4 },
  spend: { p: 6, q: 4, gamma: 15 },
  refuseProfiling: 0.15,
  gpc: 0.05,
};

export interface TasteCluster {
  name: string;
  categories: readonly string[];
  weekdayShare: number;
  morningShare: number;
}

export const CATEGORIES = ['books', 'music', 'games', 'kitchen', 'garden', 'outdoor', 'kids', 'beauty'] as const;

export const TASTES: readonly TasteCluster[] = [
  { name: 'commuter readers', categories: ['books', 'music'], weekdayShare: 0.9, morningShare: 0.7 },
  { name: 'weekend gardeners', categories: ['garden', 'outdoor', 'kitchen'], weekdayShare: 0.3, morningShare: 0.5 },
  { name: 'evening gamers', categories: ['games', 'music'], weekdayShare: 0.6, morningShare: 0.1 },
  { name: 'family shoppers', categories: ['kids', 'kitchen', 'beauty'], weekdayShare: 0.5, morningShare: 0.4 },
];

export interface ShopOrder {
  orderId: string;
  /** Days since the shop's start (fractional: the time of day). */
  day: number;
  total: number;
  items: { productId: string; category: string; price: number; quantity: number }[];
}

export interface ShopCustomer {
  id: string;
  email: string;
  name: string;
  country: string;
  taste: string;
  joinedDay: number;
  /** The latent truth, for tests: rate per week, dropout probability, mean spend, and the day they dropped out. */
  truth: { lambda: number; p: number; meanSpend: number; droppedOutDay: number | null };
  orders: ShopOrder[];
  sessions: { day: number; productsViewed: string[] }[];
  mail: { sent: number; opened: number; clicked: number };
  consent: { profiling: boolean; marketingEmail: boolean; gpc: boolean; fairnessAudit: boolean };
  /** Answers to the optional survey (age range, gender), kept only with explicit consent for fairness audits. */
  survey: { ageRange: string; gender: string };
}

/** Mulberry32: small, fast, seedable. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normal(rand: () => number): number {
  const u = Math.max(rand(), 1e-300);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

/** Gamma(shape, scale 1) by Marsaglia & Tsang (boosted for shape < 1). */
function gamma1(shape: number, rand: () => number): number {
  if (shape < 1) return gamma1(shape + 1, rand) * Math.pow(Math.max(rand(), 1e-300), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(rand);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rand();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

const gammaRate = (shape: number, rate: number, rand: () => number) => gamma1(shape, rand) / rate;
const beta = (a: number, b: number, rand: () => number) => {
  const x = gamma1(a, rand);
  return x / (x + gamma1(b, rand));
};

const FIRST = ['Alex', 'Sam', 'Robin', 'Kim', 'Jo', 'Noa', 'Mika', 'Ari', 'Lou', 'Eli'];
const LAST = ['Meyer', 'Novak', 'Silva', 'Berg', 'Rossi', 'Dubois', 'Nieminen', 'Kowalski', 'Jensen', 'Costa'];
const AGE_RANGES = ['18-24', '25-34', '35-44', '45-54', '55-64', '65+'];
const COUNTRIES = ['DE', 'FR', 'NL', 'SE', 'ES', 'IT', 'PL', 'US'];

/** Days since the epoch of the shop's first day. */
export function startDay(params: Pick<ShopParams, 'start'>): number {
  return Math.floor(Date.parse(`${params.start}T00:00:00Z`) / 86_400_000);
}

/** The shop's customers, one at a time (a million customers never need to be in memory at once). */
export function* generateShop(options: Partial<ShopParams> & Pick<ShopParams, 'customers' | 'seed'>): Generator<ShopCustomer> {
  const params: ShopParams = { ...DEFAULT_SHOP, ...options };
  const rand = random(params.seed);
  // A second stream for the survey, so that adding it left every customer's buying exactly as it was.
  const side = random(params.seed ^ 0x5eed);
  const endDay = params.weeks * 7;
  const products = CATEGORIES.flatMap((category) => Array.from({ length: 25 }, (_, i) => ({ productId: `${category}-${String(i + 1).padStart(2, '0')}`, category, price: 0 })));
  for (let i = 0; i < params.customers; i++) {
    const taste = TASTES[Math.floor(rand() * TASTES.length)] as TasteCluster;
    const lambda = gammaRate(params.bgnbd.r, params.bgnbd.alpha, rand);
    const p = beta(params.bgnbd.a, params.bgnbd.b, rand);
    const nu = gammaRate(params.spend.q, params.spend.gamma, rand);
    const joinedDay = Math.floor(rand() * params.cohortWeeks * 7);
    const orders: ShopOrder[] = [];
    let droppedOutDay: number | null = null;
    // Time of day and weekday follow the customer's taste; the first purchase is on the day they joined.
    const placeOrder = (day: number) => {
      let whole = Math.floor(day);
      // Move the day (by at most three, either way, so inter-purchase times stay as the model has them) to a
      // weekday or a weekend day as the customer's taste prefers. 2025-01-01 was a Wednesday.
      const dow = (whole + 2) % 7; // 0 = Monday … 6 = Sunday
      const wantWeekday = rand() < taste.weekdayShare;
      const shift = wantWeekday ? (dow === 5 ? -1 : dow === 6 ? 1 : 0) : ([-1, -2, 3, 2, 1, 0, 0][dow] as number);
      if (whole + shift >= 0 && whole + shift < endDay) whole += shift;
      const morning = rand() < taste.morningShare;
      const hour = morning ? 7 + Math.floor(rand() * 5) : 12 + Math.floor(rand() * 11);
      const total = Math.round(gammaRate(params.spend.p, nu, rand) * 100) / 100;
      const count = 1 + Math.floor(rand() * 3);
      const items = Array.from({ length: count }, () => {
        const category = taste.categories[Math.floor(rand() * taste.categories.length)] as string;
        const product = products[CATEGORIES.indexOf(category as (typeof CATEGORIES)[number]) * 25 + Math.floor(rand() * 25)] as { productId: string };
        return { productId: product.productId, category, price: Math.round((total / count) * 100) / 100, quantity: 1 };
      });
      orders.push({ orderId: `o${params.seed}-${i}-${orders.length + 1}`, day: Math.min(whole, endDay - 1) + hour / 24, total, items });
    };
    placeOrder(joinedDay);
    let t = joinedDay;
    for (;;) {
      t += (-Math.log(Math.max(rand(), 1e-300)) / lambda) * 7;
      if (t >= endDay) break;
      placeOrder(t);
      if (rand() < p) {
        droppedOutDay = Math.floor(t);
        break;
      }
    }
    orders.sort((x, y) => x.day - y.day);
    const sessions = Array.from({ length: orders.length + Math.floor(rand() * 4) }, (_, s) => {
      const day = s < orders.length ? (orders[s] as ShopOrder).day - 0.01 : joinedDay + rand() * (endDay - joinedDay);
      return { day, productsViewed: Array.from({ length: 1 + Math.floor(rand() * 4) }, () => (products[Math.floor(rand() * products.length)] as { productId: string }).productId) };
    });
    const sent = Math.floor((endDay - joinedDay) / 14);
    const opened = Math.floor(sent * rand() * 0.6);
    const first = FIRST[i % FIRST.length] as string;
    const last = LAST[Math.floor(i / FIRST.length) % LAST.length] as string;
    yield {
      id: `c${params.seed}-${i + 1}`,
      email: `${first.toLowerCase()}.${last.toLowerCase()}.${i + 1}@shop.example`,
      name: `${first} ${last}`,
      country: COUNTRIES[Math.floor(rand() * COUNTRIES.length)] as string,
      taste: taste.name,
      joinedDay,
      truth: { lambda, p, meanSpend: (params.spend.p * 1) / nu, droppedOutDay },
      orders,
      sessions,
      mail: { sent, opened, clicked: Math.floor(opened * rand() * 0.4) },
      consent: { profiling: rand() >= params.refuseProfiling, marketingEmail: rand() < 0.6, gpc: rand() < params.gpc, fairnessAudit: side() < 0.4 },
      survey: { ageRange: AGE_RANGES[Math.floor(side() * AGE_RANGES.length)] as string, gender: side() < 0.48 ? 'female' : side() < 0.96 ? 'male' : 'non-binary' },
    };
  }
}
