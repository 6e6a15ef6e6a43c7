import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** A document served with validators: ETag, Last-Modified, Cache-Control, and 304 when the client has it. */
export interface CacheableDocument {
  /** Opaque strong validator (e.g. a SHA-256 hex), without quotes. */
  etag: string;
  lastModified: Date;
  maxAgeSeconds: number;
  /** Authenticated responses are `private` (shared caches must not keep them). */
  visibility: 'public' | 'private';
  contentType: string;
  body: Buffer | string;
  /** Sent as an attachment with this file name. */
  attachment?: string;
}

export const sha256Hex = (data: string | Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** RFC 9110 13.1.1/13.1.3: If-None-Match (weak comparison, `*`) wins over If-Modified-Since. */
function notModified(request: FastifyRequest, etag: string, lastModified: Date): boolean {
  const inm = request.headers['if-none-match'];
  if (inm !== undefined) {
    return inm.split(',').some((tag) => {
      const t = tag.trim();
      return t === '*' || t.replace(/^W\//, '') === etag;
    });
  }
  const ims = request.headers['if-modified-since'];
  if (ims) {
    const since = Date.parse(ims);
    return !Number.isNaN(since) && Math.floor(lastModified.getTime() / 1000) * 1000 <= since;
  }
  return false;
}

export function sendCacheable(request: FastifyRequest, reply: FastifyReply, doc: CacheableDocument) {
  const etag = `"${doc.etag}"`;
  reply
    .header('ETag', etag)
    .header('Last-Modified', doc.lastModified.toUTCString())
    .header('Cache-Control', `${doc.visibility}, max-age=${doc.maxAgeSeconds}`);
  if (notModified(request, etag, doc.lastModified)) return reply.code(304).send();
  reply.type(doc.contentType);
  if (doc.attachment) reply.header('Content-Disposition', `attachment; filename=${doc.attachment}`);
  return reply.send(doc.body);
}
