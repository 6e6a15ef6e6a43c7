import type { Queryable } from './driver.ts';

/** A WHERE clause built from optional filters, with numbered parameters. */
export function createFilter() {
  const clauses: string[] = [];
  const params: unknown[] = [];
  return {
    params,
    /** `clause` receives the placeholder (`$n`) of `value`. */
    add(clause: (placeholder: string) => string, value: unknown) {
      params.push(value);
      clauses.push(clause(`$${params.length}`));
    },
    /** A condition without a parameter. */
    raw(clause: string) {
      clauses.push(clause);
    },
    /** The placeholder of one more parameter (LIMIT, ...), not part of the WHERE. */
    param(value: unknown) {
      params.push(value);
      return `$${params.length}`;
    },
    sql: () => (clauses.length ? ` WHERE ${clauses.join(' AND ')}` : ''),
  };
}

/**
 * For the rest of the transaction, plans a keyset page (`ORDER BY` the columns of an index,
 * `LIMIT`) as an index range scan whatever the table statistics say. Without statistics
 * (right after a bulk load, before autovacuum's ANALYZE) the planner guesses that a tenant
 * has a handful of rows and would read and sort all of them: a page of 100 would cost a sort
 * of the tenant's 100,000. A sort of the page's own rows, where one is needed, still runs.
 */
export const planKeysetPages = (tx: Queryable) => tx.query('SET LOCAL enable_sort = off');
