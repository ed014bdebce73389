// A one-line progress display on stderr: rewritten in place on a terminal, a line every few
// seconds otherwise (CI logs), never on stdout so --json output stays clean.

export class Progress {
  private last = 0;
  private readonly tty = process.stderr.isTTY === true;
  constructor(private readonly quiet = false) {}

  update(fraction: number, text: string): void {
    if (this.quiet) return;
    const now = Date.now();
    if (!this.tty && now - this.last < 2000) return;
    this.last = now;
    const width = 24;
    const f = Math.max(0, Math.min(1, fraction));
    const bar = '#'.repeat(Math.round(f * width)).padEnd(width, '.');
    const line = `[${bar}] ${(f * 100).toFixed(0).padStart(3)}% ${text}`;
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  done(): void {
    if (!this.quiet && this.tty) process.stderr.write('\r\x1b[K');
  }
}
