/**
 * Machine-readable benchmark results: every benchmark prints its tables as
 * `BENCH_RESULT <json>` lines (and chart series as `BENCH_SERIES <json>`) beside its human
 * output; bench/run-all.ts collects them into BENCHMARKS.md.
 */
export type Cell = string | number | null;

export interface BenchTable {
  /** Stable id, e.g. "issuance". */
  id: string;
  title: string;
  /** What was measured and how, one paragraph. */
  description: string;
  columns: string[];
  rows: Cell[][];
  notes?: string[];
}

export interface ChartSeries {
  chart: string;
  tool: string;
  /** x = entries, y = milliseconds. */
  points: [number, number][];
}

export const RESULT_PREFIX = 'BENCH_RESULT ';
export const SERIES_PREFIX = 'BENCH_SERIES ';

export function emitTable(table: BenchTable): void {
  process.stdout.write(`\n${RESULT_PREFIX}${JSON.stringify(table)}\n`);
}

export function emitSeries(series: ChartSeries): void {
  process.stdout.write(`${SERIES_PREFIX}${JSON.stringify(series)}\n`);
}

/** BENCH_SCALE=small: minutes instead of an hour, for a quick run on a shared machine. */
export const SMALL = process.env.BENCH_SCALE === 'small';
export const scaled = <T>(full: T, small: T): T => (SMALL ? small : full);

/** "1.3x" with a sensible number of digits. */
export const ratio = (a: number, b: number): string => {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '-';
  const r = a / b;
  return `${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2)}x`;
};

export const round = (n: number, digits = 1): number => (Number.isFinite(n) ? Number(n.toFixed(digits)) : NaN);
