/**
 * Keeps the broker's acl_file (BROKER_ACL_PATH) equal to what certfleet renders from the
 * registered devices and the tenants' broker grants, and makes the broker reload it.
 *
 * `sync()` is coalesced: while a write is running, every further call waits for ONE more run that
 * starts after it (so a change committed before the call is in the file when it resolves). The
 * file is replaced atomically (temp file, fsync, rename, fsync folder), keeping the mode and, as
 * root, the owner of the file it replaces (broker-config gives it to the broker's group); the
 * broker is reloaded only after the rename. An unchanged file is not rewritten (a pending reload
 * is retried). A failed reload is remembered and retried by the next sync.
 */
import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic, type FileOwner } from '../support/atomic-file.ts';
import type { Logger } from '../support/logger.ts';
import type { RenderedAcl } from './mosquitto-config.ts';
import type { BrokerReloader } from './broker-reloader.ts';
import { isMissing, unlessMissing } from '../support/missing-file.ts';
import { coalesced } from '../support/coalesce.ts';

export interface AclSyncDeps {
  path: string;
  /** Reads the devices and grants and renders the file. */
  render(): Promise<RenderedAcl>;
  reloader: BrokerReloader;
  logger: Logger;
}

export interface AclSyncResult {
  file: 'written' | 'unchanged';
  devices: number;
  bytes: number;
  /** true: reloaded; false: the reload failed (retried by the next sync); null: not due or not configured. */
  reloaded: boolean | null;
  ms: number;
}

export interface AclSync {
  sync(): Promise<AclSyncResult>;
  readonly reloadPending: boolean;
}

/**
 * Mode and owner of the file being replaced (0640 when there is none yet): as root its owner and
 * group; otherwise our uid with its group (the broker's, given by broker-config), which works
 * when this process is a member of that group (compose: `group_add`).
 */
async function currentMode(path: string): Promise<{ mode: number; owner?: FileOwner }> {
  try {
    const s = await stat(path);
    const uid = typeof process.getuid === 'function' ? process.getuid() : s.uid;
    return { mode: s.mode & 0o777, owner: { uid: uid === 0 ? s.uid : uid, gid: s.gid } };
  } catch (error) {
    if (isMissing(error)) return { mode: 0o640 };
    throw error;
  }
}

export function createAclSync(deps: AclSyncDeps): AclSync {
  let reloadPending = false;
  const reloading = (): Promise<boolean | null> => reload();

  async function reload(): Promise<boolean | null> {
    if (!deps.reloader.configured) return null;
    try {
      await deps.reloader.reload();
      reloadPending = false;
      return true;
    } catch (error) {
      reloadPending = true;
      deps.logger.error({ path: deps.path, err: (error as Error).message }, 'broker reload after the ACL change failed; retried by the next ACL sync');
      return false;
    }
  }

  async function runOnce(): Promise<AclSyncResult> {
    const started = performance.now();
    const rendered = await deps.render();
    for (const id of rendered.skipped) deps.logger.warn({ device: id }, 'a registered device has an invalid id: it gets no broker topics');
    const before = await unlessMissing(readFile(deps.path, 'utf8'));
    const bytes = Buffer.byteLength(rendered.text);
    if (before === rendered.text) {
      const reloaded = reloadPending ? await reloading() : null;
      return { file: 'unchanged', devices: rendered.devices, bytes, reloaded, ms: performance.now() - started };
    }
    const { mode, owner } = await currentMode(deps.path);
    await mkdir(dirname(deps.path), { recursive: true, mode: 0o755 });
    try {
      await writeFileAtomic(deps.path, rendered.text, mode, owner);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EPERM' || !owner) throw error;
      deps.logger.warn({ path: deps.path, gid: owner.gid }, 'cannot keep the broker ACL file’s group (not a member): the broker may not read it; see the README, Broker');
      await writeFileAtomic(deps.path, rendered.text, mode);
    }
    const reloaded = await reloading();
    const result: AclSyncResult = { file: 'written', devices: rendered.devices, bytes, reloaded, ms: performance.now() - started };
    deps.logger.info({ event: 'broker_acl_written', path: deps.path, ...result }, 'broker ACL written');
    return result;
  }

  const sync = coalesced(runOnce);

  return {
    sync,
    get reloadPending() {
      return reloadPending;
    },
  };
}
