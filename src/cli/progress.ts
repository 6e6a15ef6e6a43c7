/**
 * Progress of a bulk command: a redrawn bar on a terminal, one plain line per item otherwise,
 * nothing when null (--json). Always on stderr, so stdout keeps the result.
 */
export class Progress {
  private total = 0;
  private done = 0;
  private readonly counts = new Map<string, number>();
  private started = 0;
  private readonly tty: boolean;

  constructor(private readonly stream: NodeJS.WriteStream | null) {
    this.tty = Boolean(stream?.isTTY);
  }

  start(total: number): void {
    this.total = total;
    this.started = performance.now();
    if (this.tty) this.draw();
    else this.stream?.write(`${total} to do\n`);
  }

  tick(outcome: string, line: string): void {
    this.done++;
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
    if (this.tty) this.draw();
    else this.stream?.write(`[${this.done}/${this.total}] ${line}\n`);
  }

  note(line: string): void {
    if (!this.stream) return;
    this.stream.write(this.tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    if (this.tty && this.total) this.draw();
  }

  finish(): void {
    if (this.tty) this.stream?.write('\n');
  }

  private draw(): void {
    const width = 30;
    const filled = this.total ? Math.round((this.done / this.total) * width) : width;
    const seconds = (performance.now() - this.started) / 1000;
    const rate = seconds > 0 ? this.done / seconds : 0;
    const eta = rate > 0 ? Math.round((this.total - this.done) / rate) : null;
    const counts = [...this.counts].map(([k, v]) => `${k} ${v}`).join('  ');
    this.stream!.write(
      `\r\x1b[2K[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${this.done}/${this.total}  ${counts}  ${rate.toFixed(1)}/s${eta !== null ? `  eta ${eta}s` : ''}`,
    );
  }
}
