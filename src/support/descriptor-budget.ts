/**
 * Connection caps that cannot exhaust the process's file descriptors. Every accepted connection
 * holds one descriptor; when the API and EST listeners may together hold more than the process
 * can open, a flood of idle connections to one of them makes everything else fail with EMFILE
 * (Postgres connections, the CRL file write, the other listener). So at start:
 *
 *   budget = RLIMIT_NOFILE (soft) - descriptors open now - database connections - FD_RESERVE
 *
 * and HTTP_MAX_CONNECTIONS + EST_MAX_CONNECTIONS must fit in it. A cap set explicitly is kept or
 * the start is refused (over-commit); a default cap is lowered to fit (the API and EST share
 * what is left in proportion to their defaults). Where the limit cannot be read (no /proc), the
 * caps are used as configured.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface DescriptorUsage {
  /** The soft RLIMIT_NOFILE (Node raises it to the hard limit at start); null: unknown. */
  limit: number | null;
  /** Descriptors open now; null: unknown. */
  open: number | null;
}

/** Linux: /proc/self/limits and /proc/self/fd. */
export function currentDescriptorUsage(): DescriptorUsage {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    const limit = soft && /^\d+$/.test(soft) ? Number(soft) : null;
    return { limit, open: readdirSync('/proc/self/fd').length };
  } catch {
    return { limit: null, open: null };
  }
}

export interface CapRequest {
  /** The configured cap (the variable's value or its default). */
  cap: number;
  /** Set explicitly: never lowered. */
  explicit: boolean;
  variable: string;
}

export interface ConnectionCaps {
  api: number;
  est: number | null;
  /** What the caps had to fit in; null: the limit is unknown. */
  budget: number | null;
  limit: number | null;
  /** Descriptors kept out of the caps: open at start + database + FD_RESERVE. */
  reserved: number | null;
}

/** Pure: the caps for this usage, or an Error that names the variables and the numbers. */
export function planConnectionCaps(input: { usage: DescriptorUsage; database: number; reserve: number; api: CapRequest; est: CapRequest | null }): ConnectionCaps {
  const { usage, api, est } = input;
  if (usage.limit === null || usage.open === null) return { api: api.cap, est: est?.cap ?? null, budget: null, limit: null, reserved: null };
  const reserved = usage.open + input.database + input.reserve;
  const budget = usage.limit - reserved;
  const requests = est ? [api, est] : [api];
  const why = `RLIMIT_NOFILE is ${usage.limit} (ulimit -n); ${usage.open} descriptors are open at start, ${input.database} are kept for database connections and FD_RESERVE=${input.reserve} for file writes`;
  if (budget < requests.length) {
    throw new Error(`no file descriptors are left for ${requests.map((r) => r.variable).join(' and ')}: ${why}. Raise the limit (ulimit -n) or lower FD_RESERVE`);
  }
  const explicitTotal = requests.filter((r) => r.explicit).reduce((n, r) => n + r.cap, 0);
  if (explicitTotal > budget) {
    const named = requests.filter((r) => r.explicit).map((r) => `${r.variable}=${r.cap}`).join(' + ');
    throw new Error(`${named} over-commits the file descriptors: ${why}, which leaves ${Math.max(0, budget)} for connections. Lower the caps or raise the limit (ulimit -n, LimitNOFILE=, ulimits: nofile)`);
  }
  const defaulted = requests.filter((r) => !r.explicit);
  const left = budget - explicitTotal;
  const wanted = defaulted.reduce((n, r) => n + r.cap, 0);
  const caps = new Map<CapRequest, number>(requests.map((r) => [r, r.cap]));
  if (wanted > left) {
    for (const r of defaulted) {
      const share = Math.floor((left * r.cap) / wanted);
      if (share < 1) throw new Error(`no file descriptors are left for ${r.variable}: ${why}. Raise the limit (ulimit -n) or lower the other caps`);
      caps.set(r, share);
    }
  }
  return { api: caps.get(api)!, est: est ? caps.get(est)! : null, budget, limit: usage.limit, reserved };
}
