/**
 * Per-tenant grouping with no timer (group commit): a tenant has at most `inFlight` groups being
 * flushed at once; what is added meanwhile waits and then goes together, up to `maxGroup` items,
 * in the next group. An idle tenant's item is flushed at once, alone; under load a group grows with
 * the flush's latency. `flush` settles its items itself (it must not throw: a rejection is ignored
 * here and the next group still runs).
 */
export function tenantGroups<T>(options: { maxGroup: number; inFlight: number; flush: (tenantId: string, group: T[]) => Promise<void> }): (tenantId: string, item: T) => void {
  const queues = new Map<string, T[]>();
  const flushing = new Map<string, number>();
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
    pump(tenantId);
  };
}
