// Copyright the upcase authors. MIT license.
// The server's log: one line per event, written in batches so logging costs
// little on the hot path. Internal.

import type { ServerEvent } from "./serve.ts";
import { joinHostPort } from "./_cli.ts";

/** Flush once this many lines are waiting, without waiting for the timer. */
const MAX_PENDING_LINES = 1024;

/**
 * Collects lines and writes them to a file (stdout) in one write per event
 * loop turn instead of one per line.
 */
export class LineWriter {
  #file: { writeSync(p: Uint8Array): number };
  #lines: string[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #encoder = new TextEncoder();

  /** @param file Where lines go, e.g. `Deno.stdout`. */
  constructor(file: { writeSync(p: Uint8Array): number }) {
    this.#file = file;
  }

  /**
   * Queues one line (without its newline).
   *
   * @param line The text.
   */
  write(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length >= MAX_PENDING_LINES) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), 0);
  }

  /** Writes every queued line now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0) return;
    const bytes = this.#encoder.encode(this.#lines.join("\n") + "\n");
    this.#lines = [];
    let written = 0;
    while (written < bytes.length) {
      written += this.#file.writeSync(bytes.subarray(written));
    }
  }
}

/**
 * One log line for a server event, in the seed's words where it has them.
 *
 * @param event What happened.
 * @returns The line, without a newline.
 */
export function formatEvent(event: ServerEvent): string {
  switch (event.type) {
    case "listen":
      return `Accepting connections on ${
        joinHostPort(event.addr.hostname, event.addr.port)
      } ...`;
    case "connect":
      return `received from ${event.remote.hostname} at PORT ${event.remote.port}`;
    case "close": {
      const where = `${event.remote.hostname} at PORT ${event.remote.port}`;
      const counts = `${event.bytesIn} bytes in, ${event.bytesOut} bytes out`;
      return event.error === undefined
        ? `closed ${where}: ${counts}`
        : `error from ${where}: ${event.error} (${counts})`;
    }
    case "accept-error":
      return `accept failed: ${event.error}; retrying`;
  }
}
