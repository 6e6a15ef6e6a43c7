/**
 * The folder rules of the architecture (README "Architecture"), checked on every import of every
 * `src/**\/*.ts` file as TypeScript's own parser reads it (static imports, `export ... from`,
 * `import type`, dynamic `import('...')`), and the absence of file-level import cycles.
 *
 * Each rule names the files it forbids; an exception must be listed in PENDING below with the
 * reason and the issue that removes it, and a pending entry that no longer matches anything
 * fails the test (so the list only shrinks).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');

export interface ImportEdge {
  from: string; // path relative to the repository, e.g. src/app/publish-crl.ts
  to: string;
  line: number;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every relative module specifier of one file, with its line. */
export function importsOf(fileName: string, text: string): Array<{ specifier: string; line: number }> {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Array<{ specifier: string; line: number }> = [];
  const add = (node: ts.Node, literal: ts.Expression | undefined) => {
    if (literal && ts.isStringLiteralLike(literal)) found.push({ specifier: literal.text, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node, node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node, node.moduleReference.expression);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node, node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node, node.argument.literal);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

export function importGraph(root: string, files: string[], read: (path: string) => string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of files) {
    for (const { specifier, line } of importsOf(file, read(file))) {
      if (!specifier.startsWith('.')) continue; // packages and node: builtins
      edges.push({ from: relative(root, file), to: relative(root, resolve(dirname(file), specifier)), line });
    }
  }
  return edges;
}

/** A folder rule: no file under `from` may import a file matching `to` (unless `except` matches it). */
interface Rule {
  name: string;
  from: (file: string) => boolean;
  to: (file: string) => boolean;
}

const under = (...folders: string[]) => (file: string) => folders.some((folder) => file.startsWith(`src/${folder}/`));
const not = (test: (file: string) => boolean) => (file: string) => !test(file);

export const RULES: Rule[] = [
  { name: 'domain/ is pure: it imports only domain/', from: under('domain'), to: not(under('domain')) },
  { name: 'app/ (use cases) reaches pki/ only through ports', from: under('app'), to: under('pki') },
  { name: 'app/ reaches storage/ only through ports', from: under('app'), to: under('storage') },
  { name: 'app/ does not import entry points or adapters', from: under('app'), to: under('http', 'cli', 'composition', 'crl', 'broker', 'renewal', 'webhooks', 'scheduler') },
  { name: 'http/ reaches storage/ only through ports', from: under('http'), to: under('storage') },
  { name: 'crl/ and broker/ reach storage/ only through ports', from: under('crl', 'broker'), to: under('storage') },
  { name: 'renewal/ reaches no storage/ repository', from: under('renewal'), to: under('storage/repos') },
  { name: 'broker/, renewal/ and crl/ do not import http/', from: under('broker', 'renewal', 'crl'), to: under('http') },
  { name: 'pki/ does not import entry points, storage or the CRL pipeline', from: under('pki'), to: under('http', 'cli', 'composition', 'storage', 'crl', 'broker', 'renewal') },
  { name: 'storage/ does not import entry points or adapters (ports only)', from: under('storage'), to: (file) => under('http', 'cli', 'composition', 'crl', 'broker', 'pki')(file) || (under('renewal')(file) && file !== 'src/renewal/ports.ts') },
  { name: 'only composition/ and cli/ import composition/', from: not(under('composition', 'cli')), to: under('composition') },
  {
    name: 'the CRL builder is pure: src/crl/build-crl.ts imports only domain/',
    from: (file) => file === 'src/crl/build-crl.ts',
    to: not(under('domain')),
  },
];

/**
 * Known exceptions, each removed by a change in flight on another branch. An entry matching
 * nothing fails the test: delete it when that change lands.
 */
export const PENDING: { rules: Array<{ rule: string; from: string; to: string; why: string }>; cycles: Array<{ files: string[]; why: string }> } = {
  rules: [],
  cycles: [],
};

export function violations(edges: ImportEdge[], rules: Rule[]) {
  return rules.flatMap((rule) => edges.filter((e) => rule.from(e.from) && rule.to(e.to)).map((e) => ({ rule: rule.name, ...e })));
}

/** Strongly connected components with more than one file (Tarjan), each sorted. */
export function cycles(edges: ImportEdge[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    if (!next.has(e.from)) next.set(e.from, new Set());
    next.get(e.from)!.add(e.to);
    if (!next.has(e.to)) next.set(e.to, new Set());
  }
  let index = 0;
  const indexOf = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const strongConnect = (v: string) => {
    indexOf.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!indexOf.has(w)) {
        strongConnect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, indexOf.get(w)!));
    }
    if (low.get(v) === indexOf.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || next.get(v)?.has(v)) found.push(component.sort());
    }
  };
  for (const v of next.keys()) if (!indexOf.has(v)) strongConnect(v);
  return found;
}

const files = sourceFiles(SRC);
const edges = importGraph(ROOT, files, (path) => readFileSync(path, 'utf8'));

describe('layering', () => {
  it('reads every source file and its imports with the TypeScript parser', () => {
    expect(files.length).toBeGreaterThan(100);
    expect(edges.length).toBeGreaterThan(500);
    // Every relative import resolves to a file that exists (a wrong path would silently escape the rules).
    const known = new Set(files.map((f) => relative(ROOT, f)));
    expect(edges.filter((e) => !known.has(e.to)).map((e) => `${e.from}:${e.line} -> ${e.to}`)).toEqual([]);
  });

  it('the checker finds a forbidden import and a cycle in a made-up tree (it can fail)', () => {
    const fake: Record<string, string> = {
      '/r/src/domain/a.ts': "import { b } from '../support/b.ts';\nexport const a = 1;",
      '/r/src/http/h.ts': "export type T = import('../storage/database.ts').Database;",
      '/r/src/crl/x.ts': "import type { Y } from './y.ts';",
      '/r/src/crl/y.ts': "export { x } from './x.ts'; const later = () => import('./x.ts');",
    };
    const graph = importGraph('/r', Object.keys(fake), (p) => fake[p]);
    expect(violations(graph, RULES).map((v) => `${v.from} -> ${v.to}`)).toEqual([
      'src/domain/a.ts -> src/support/b.ts',
      'src/http/h.ts -> src/storage/database.ts',
    ]);
    expect(cycles(graph)).toEqual([['src/crl/x.ts', 'src/crl/y.ts']]);
  });

  it('every folder rule holds (exceptions only as listed in PENDING)', () => {
    const found = violations(edges, RULES);
    const pending = (v: { rule: string; from: string; to: string }) => PENDING.rules.some((p) => p.rule === v.rule && p.from === v.from && p.to === v.to);
    expect(found.filter((v) => !pending(v)).map((v) => `${v.rule}: ${v.from}:${v.line} -> ${v.to}`)).toEqual([]);
    const stale = PENDING.rules.filter((p) => !found.some((v) => v.rule === p.rule && v.from === p.from && v.to === p.to));
    expect(stale, 'a pending exception no longer happens: remove it from PENDING').toEqual([]);
  });

  it('no file-level import cycle (exceptions only as listed in PENDING)', () => {
    const found = cycles(edges);
    const pending = (component: string[]) => PENDING.cycles.find((p) => p.files.every((f) => component.includes(f)));
    expect(found.filter((c) => !pending(c))).toEqual([]);
    const stale = PENDING.cycles.filter((p) => !found.some((c) => p.files.every((f) => c.includes(f))));
    expect(stale, 'a pending cycle is gone: remove it from PENDING').toEqual([]);
    // A pending cycle may not grow: only the listed folder takes part.
    for (const component of found) {
      const folder = dirname(pending(component)!.files[0]);
      expect(component.filter((f) => dirname(f) !== folder), `cycle grew beyond ${folder}`).toEqual([]);
    }
  });
});
