/**
 * Ownership and permissions of the broker's files. Started as root, Mosquitto 2.0 switches to the
 * `mosquitto` user before it writes its pid file and before every reload (SIGHUP), when it
 * re-reads the config, the certificates, the key and the CRL. So when we run as root and that
 * user exists, the files it reads are given to its group (keys 0640, never world-readable) and
 * the folders on the way are made traversable.
 */
import { chmod, chown, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

export interface Account {
  name: string;
  uid: number;
  gid: number;
  groupName: string;
}

export async function lookupAccount(name: string): Promise<Account | null> {
  // `UID:GID`: the broker runs elsewhere (e.g. uid 1883 in the eclipse-mosquitto image).
  const numeric = /^(\d+):(\d+)$/.exec(name);
  if (numeric) return { name, uid: Number(numeric[1]), gid: Number(numeric[2]), groupName: numeric[2] };
  let passwd: string;
  try {
    passwd = await readFile('/etc/passwd', 'utf8');
  } catch {
    return null;
  }
  const entry = passwd.split('\n').map((l) => l.split(':')).find((f) => f[0] === name);
  if (!entry || entry.length < 4) return null;
  const uid = Number(entry[2]);
  const gid = Number(entry[3]);
  let groupName = String(gid);
  try {
    const groups = await readFile('/etc/group', 'utf8');
    const g = groups.split('\n').map((l) => l.split(':')).find((f) => Number(f[2]) === gid && f[0]);
    if (g) groupName = g[0];
  } catch {
    // keep the number
  }
  return { name, uid, gid, groupName };
}

const octal = (mode: number) => `0${(mode & 0o7777).toString(8)}`;

/** Can `account` (uid + primary gid) use this path with the given permission bits (r=4, w=2, x=1)? */
export function allows(st: { uid: number; gid: number; mode: number }, account: Account, bits: number): boolean {
  if (st.uid === account.uid) return ((st.mode >> 6) & bits) === bits;
  if (st.gid === account.gid) return ((st.mode >> 3) & bits) === bits;
  return (st.mode & bits) === bits;
}

export interface OwnershipContext {
  account: Account | null; // null: no changes (not root, or no such user)
  lines: string[];
}

/** chown root:<broker group> + chmod; only when running as root with the broker user present. */
export async function giveToBrokerGroup(ctx: OwnershipContext, file: string, mode: number, why: string): Promise<void> {
  if (!ctx.account) {
    await chmod(file, mode);
    return;
  }
  await chown(file, 0, ctx.account.gid);
  await chmod(file, mode);
  ctx.lines.push(`chown root:${ctx.account.groupName} ${file} (mode ${octal(mode)}): ${why}`);
}

/** Make a folder traversable by the broker user; add group bits only where it is not already. */
export async function ensureTraversable(ctx: OwnershipContext, dir: string, bits: number, why: string): Promise<void> {
  const account = ctx.account;
  if (!account) return;
  const st = await stat(dir);
  if (allows(st, account, bits)) return;
  if (st.uid === account.uid) {
    ctx.lines.push(`warning: ${dir} is owned by ${account.name} but lacks permissions; left unchanged`);
    return;
  }
  const groupBits = bits << 3;
  if (st.gid !== account.gid) {
    await chown(dir, st.uid, account.gid);
  }
  const mode = (st.mode & 0o7777) | groupBits;
  await chmod(dir, mode);
  ctx.lines.push(`chgrp ${account.groupName} ${dir} (mode ${octal(mode)}): ${why}`);
}

/** Report (do not change) ancestors the broker user cannot traverse. */
export async function checkAncestors(ctx: OwnershipContext, dir: string): Promise<void> {
  const account = ctx.account;
  if (!account) return;
  let current = path.dirname(dir);
  for (;;) {
    try {
      const st = await stat(current);
      if (!allows(st, account, 1)) {
        ctx.lines.push(
          `warning: user ${account.name} cannot traverse ${current} (mode ${octal(st.mode)}); Mosquitto will fail to read files below it`,
        );
      }
    } catch (error) {
      ctx.lines.push(`warning: cannot check whether user ${account.name} can traverse ${current}: ${(error as Error).message}`);
    }
    const parent = path.dirname(current);
    if (parent === current) break;
    current = parent;
  }
}
