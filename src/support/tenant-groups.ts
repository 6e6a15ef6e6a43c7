/**
 * Per-tenant grouping with no timer (group commit): a tenant has at most `inFlight` groups being
 * flushed at once; what is added meanwhile waits and then goes together, up to `maxGroup` items,
 * in the next group. An idle tenant's item is flushed at once, alone; under load a group grows with
 * the flush's latency. `flush` settles its items itself (it must not throw: a rejection is ignored
 * here and the next group still runs).
 */
export function tenantGroups<T>(options: {
  maxGroup: number;
  inFlight: number;
  flush: (tenantId: string, group: T[]) => Promise<void>;
  /**
   * Start a group at the end of the current event-loop turn (setImmediate) rather than at once, so
   * items added in the same turn (requests parsed from one read of the sockets) go together: no
   * timer, a lone item waits only for the rest of the turn.
   */
  gatherTurn?: boolean;
}): (tenantId: string, item: T) => void {
  const queues = new Map<string, T[]>();
  const flushing = new Map<string, number>();
  const gathering = new Set<string>();
  function pump(tenantId: string): void {
    const inFlight = flushing.get(tenantId) ?? 0;
    if (inFlight >= options.inFlight) return;
    const queue = queues.get(tenantId);
    if (!queue || queue.length === 0) {
      queues.delete(tenantId);
      return;
    }
    const group = queue.splice(0, options.maxGroup);
    flushing.set(tenantId, inFlight + 1);
    void options
      .flush(tenantId, group)
      .catch(() => undefined)
      .finally(() => {
        const left = (flushing.get(tenantId) ?? 1) - 1;
        if (left === 0) flushing.delete(tenantId);
        else flushing.set(tenantId, left);
        pump(tenantId);
      });
  }
  return (tenantId, item) => {
    let queue = queues.get(tenantId);
    if (!queue) queues.set(tenantId, (queue = []));
    queue.push(item);
    if (!options.gatherTurn) return pump(tenantId);
    if (gathering.has(tenantId)) return;
    gathering.add(tenantId);
    setImmediate(() => {
      gathering.delete(tenantId);
      pump(tenantId);
    });
  };
}
