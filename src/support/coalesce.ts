/**
 * One run at a time, and at most one more queued behind it: calls while a run is in flight share
 * the queued run, which starts when the current one settles (so it sees every change made before
 * it was asked for). For "bring X up to date with the database" jobs, where N requests during a
 * run need exactly one more run, not N.
 */
export function coalesced<T>(run: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | null = null;
  let queued: Promise<T> | null = null;
  const call = (): Promise<T> => {
    if (!running) {
      running = run().finally(() => {
        running = null;
      });
      return running;
    }
    queued ??= running
      .catch(() => undefined)
      .then(() => {
        queued = null;
        return call();
      });
    return queued;
  };
  return call;
}
