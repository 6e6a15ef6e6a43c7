/**
 * "Absent" means the file (or folder) does not exist, nothing else: a read that fails with
 * EACCES, EIO or EISDIR is a failure to report, not a missing file to silently recreate.
 */
export const isMissing = (error: unknown): boolean => {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR'; // ENOTDIR: a path through a file, which cannot exist either
};

/** The promise's value, or `absent` when it failed because the path does not exist; any other failure is raised. */
export async function unlessMissing<T, A = null>(operation: Promise<T>, absent: A = null as A): Promise<T | A> {
  try {
    return await operation;
  } catch (error) {
    if (isMissing(error)) return absent;
    throw error;
  }
}
