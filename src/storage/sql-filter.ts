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
