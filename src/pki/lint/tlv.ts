/**
 * A minimal DER TLV reader for the linters, written apart from src/domain/der.ts on
 * purpose: the lint must not share code with the encoder it checks. Definite lengths
 * only, minimal length encoding enforced (DER).
 */
import { LintFailure } from './lint-failure.ts';

export interface Node {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  body: number;
  /** Offset just past the content. */
  end: number;
}

export function readNode(buf: Uint8Array, at: number, limit: number, rule = 'crl.parse'): Node {
  if (at + 2 > limit) throw new LintFailure(rule, `truncated TLV at offset ${at}`);
  const tag = buf[at];
  if ((tag & 0x1f) === 0x1f) throw new LintFailure(rule, `multi-byte tag at offset ${at}`);
  let len = buf[at + 1];
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new LintFailure(rule, `unsupported length form at offset ${at}`);
    if (body + n > limit) throw new LintFailure(rule, `truncated length at offset ${at}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i];
    if (buf[body] === 0 || len < 0x80) throw new LintFailure(rule, `non-minimal length at offset ${at} (not DER)`);
    body += n;
  }
  const end = body + len;
  if (end > limit) throw new LintFailure(rule, `TLV at offset ${at} runs past its parent`);
  return { tag, start: at, body, end };
}

export function expectNode(buf: Uint8Array, at: number, limit: number, tag: number, what: string, rule = 'crl.parse'): Node {
  const node = readNode(buf, at, limit, rule);
  if (node.tag !== tag) throw new LintFailure(rule, `${what}: tag 0x${node.tag.toString(16)}, expected 0x${tag.toString(16)}`);
  return node;
}

export function childNodes(buf: Uint8Array, parent: Node, rule = 'crl.parse'): Node[] {
  const out: Node[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const n = readNode(buf, at, parent.end, rule);
    out.push(n);
    at = n.end;
  }
  return out;
}

export const nodeBytes = (buf: Uint8Array, n: Node): Buffer => Buffer.from(buf.buffer, buf.byteOffset + n.start, n.end - n.start);

const d2 = (b: Uint8Array, i: number) => (b[i] - 48) * 10 + (b[i + 1] - 48);

/** UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) → ms since the epoch; NaN when malformed. */
export function timeMs(buf: Uint8Array, n: Node): number {
  const len = n.end - n.body;
  let i = n.body;
  let year: number;
  if (n.tag === 0x17 && len === 13) {
    const yy = d2(buf, i);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
    i += 2;
  } else if (n.tag === 0x18 && len === 15) {
    year = d2(buf, i) * 100 + d2(buf, i + 2);
    i += 4;
  } else return Number.NaN;
  if (buf[n.end - 1] !== 0x5a) return Number.NaN; // 'Z'
  for (let k = n.body; k < n.end - 1; k++) if (buf[k] < 48 || buf[k] > 57) return Number.NaN;
  return Date.UTC(year, d2(buf, i) - 1, d2(buf, i + 2), d2(buf, i + 4), d2(buf, i + 6), d2(buf, i + 8));
}
