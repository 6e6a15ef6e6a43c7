/** Human-readable by default, JSON with --json. */
export function print(flags: { json?: string | boolean }, human: string, data: unknown): void {
  console.log(flags.json ? JSON.stringify(data, null, 2) : human);
}
