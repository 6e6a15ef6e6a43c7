import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The journal of `certfleet rotate-expiring`, one JSON line per event in --out. An `intent`
 * is written (and fsynced) before each rotation request, `done` after the key and
 * certificate files are written, so a run that was killed can tell, for every device, whether
 * it was rotated and its key saved, not requested at all, or requested with the answer lost.
 */
export type JournalRecord =
  | { event: 'intent'; device_id: string; old_certificate_ids: number[]; at: string }
  | { event: 'done'; device_id: string; new_certificate_id: number; fingerprint: string; not_after: string; at: string; recovered?: boolean }
  | { event: 'failed'; device_id: string; code: string; detail: string; at: string }
  | { event: 'pending'; device_id: string; at: string }
  | { event: 'cancelled'; device_id: string; cancelled_certificate_id: number; at: string };

export interface DeviceJournal {
  /** The last intent without a done/failed/pending after it: the request's answer was lost. */
  unresolved: Extract<JournalRecord, { event: 'intent' }> | null;
  done: Extract<JournalRecord, { event: 'done' }>[];
  /** Every certificate id a finished rotation replaced: never rotated again from this journal. */
  rotatedOldIds: Set<number>;
}

export const JOURNAL_FILE = 'rotate-expiring.journal';

export class RotationJournal {
  private readonly fd: number | null;
  readonly devices = new Map<string, DeviceJournal>();

  /** `readOnly` (a dry run): reads the journal if there is one, creates and writes nothing. */
  constructor(
    readonly dir: string,
    readOnly = false,
  ) {
    if (!readOnly) mkdirSync(dir, { recursive: true, mode: 0o700 });
    const path = join(dir, JOURNAL_FILE);
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        this.apply(JSON.parse(line) as JournalRecord);
      } catch {
        // A line cut short by a kill mid-write: the record it started never completed.
      }
    }
    this.fd = readOnly ? null : openSync(path, 'a', 0o600);
    if (this.fd !== null && text && !text.endsWith('\n')) writeSync(this.fd, '\n');
  }

  private entry(deviceId: string): DeviceJournal {
    let d = this.devices.get(deviceId);
    if (!d) this.devices.set(deviceId, (d = { unresolved: null, done: [], rotatedOldIds: new Set() }));
    return d;
  }

  private apply(r: JournalRecord): void {
    const d = this.entry(r.device_id);
    if (r.event === 'intent') d.unresolved = r;
    else if (r.event === 'cancelled') return;
    else {
      if (r.event === 'done') {
        d.done.push(r);
        for (const id of d.unresolved?.old_certificate_ids ?? []) d.rotatedOldIds.add(id);
      }
      d.unresolved = null;
    }
  }

  /** Appends and fsyncs one record. */
  record(r: JournalRecord): void {
    if (this.fd === null) throw new Error('the journal was opened read-only (dry run)');
    writeSync(this.fd, `${JSON.stringify(r)}\n`);
    fsyncSync(this.fd);
    this.apply(r);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
  }
}
