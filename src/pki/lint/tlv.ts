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

/** The byte at `i`, or a lint failure when the input ends before it. */
export function byteOf(buf: Uint8Array, i: number, rule = 'crl.parse'): number {
  const b = buf[i];
  if (b === undefined) throw new LintFailure(rule, `truncated input: no byte at offset ${i}`);
  return b;
}

export function readNode(buf: Uint8Array, at: number, limit: number, rule = 'crl.parse'): Node {
  if (at + 2 > limit) throw new LintFailure(rule, `truncated TLV at offset ${at}`);
  const tag = byteOf(buf, at, rule);
  if ((tag & 0x1f) === 0x1f) throw new LintFailure(rule, `multi-byte tag at offset ${at}`);
  let len = byteOf(buf, at + 1, rule);
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new LintFailure(rule, `unsupported length form at offset ${at}`);
    if (body + n > limit) throw new LintFailure(rule, `truncated length at offset ${at}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + byteOf(buf, body + i, rule);
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
