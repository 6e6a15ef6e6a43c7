import { describe, expect, it } from 'vitest';
import { tenantGroups } from '../src/support/tenant-groups.ts';

/** The per-tenant grouping under the group commit and the CSR key checks (src/support/tenant-groups.ts). */
describe('tenantGroups', () => {
  const recorder = (gatherTurn: boolean) => {
    const groups: string[][] = [];
    const release: Array<() => void> = [];
    const add = tenantGroups<string>({
      maxGroup: 4,
      inFlight: 1,
      gatherTurn,
      flush: (tenant, group) => {
        groups.push(group.map((g) => `${tenant}:${g}`));
        return new Promise<void>((resolve) => release.push(resolve));
      },
    });
    return { add, groups, release };
  };
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

  it('without gathering, a lone item goes at once and what comes meanwhile waits for the group in flight', async () => {
    const { add, groups, release } = recorder(false);
    add('a', '1');
    expect(groups).toEqual([['a:1']]); // synchronously
    add('a', '2');
    add('a', '3');
    expect(groups).toHaveLength(1);
    release.shift()!();
    await turn();
    expect(groups).toEqual([['a:1'], ['a:2', 'a:3']]);
  });

  it('gathering: the items of one event-loop turn go together, at most maxGroup, tenants apart; a lone item waits only for the end of its turn', async () => {
    const { add, groups, release } = recorder(true);
    for (const i of [1, 2, 3, 4, 5, 6]) add('a', String(i));
    add('b', '1');
    expect(groups).toEqual([]); // not before the end of the turn
    await turn();
    expect(groups).toEqual([['a:1', 'a:2', 'a:3', 'a:4'], ['b:1']]);
    release.shift()!(); // a's first group done: the rest of a goes next
    await turn();
    expect(groups.at(-1)).toEqual(['a:5', 'a:6']);
    release.splice(0).forEach((r) => r());
    await turn();
    add('b', '2'); // idle again: alone, at the end of this turn
    await turn();
    expect(groups.at(-1)).toEqual(['b:2']);
  });
});
