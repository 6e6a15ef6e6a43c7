/**
 * Node's asynchronous `crypto.sign` / `crypto.verify` copy their input before handing the job to
 * libuv's thread pool, on the calling thread. Up to 32 MiB that copy is cheap (about 0.5 ms for a
 * 4 MB CRL, 4 ms for 32 MB) and the hash runs on another core. Above it glibc serves each copy with
 * a fresh mmap (its dynamic mmap threshold stops at 32 MiB), and the copy's page faults cost more
 * main-thread time than hashing in place: measured on this 2-core machine (Node 20, ECDSA P-256,
 * medians of 11), 40 MB: synchronous 26 ms, asynchronous 34 ms on the calling thread and 61 ms
 * in all; 48 MB (a CRL of 1,000,000 entries): 31 ms against 36 ms and 68 ms. So an input above
 * this size is signed or verified on the calling thread: less of its time, and half the wait.
 */
export const THREAD_POOL_MAX_BYTES = 32 * 1024 * 1024;

/** Whether a signature over `bytes` bytes is better made (or checked) in libuv's thread pool than on the calling thread. */
export const inThreadPool = (bytes: number, maxBytes = THREAD_POOL_MAX_BYTES): boolean => bytes <= maxBytes;
