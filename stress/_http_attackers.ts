// Copyright the upcase authors. MIT license.
// The attackers of the hostile-http scenario, as a program of their own:
// `deno run --allow-net=127.0.0.1:PORT stress/_http_attackers.ts PORT SCALE
// KINDS` attacks the metrics address at 127.0.0.1:PORT until its stdin ends
// (KINDS "flood": the pipelined /metrics and /healthz floods of issue 18's
// finding 4; "all": every attack at once), then
// prints "rounds N flooded M" (attack connections made, responses the
// flooders read) and exits. It prints "attacking" once every loop has
// started.

import { closeQuietly } from "../src/_io.ts";
import { delay, handled, isClosedHere, isPeerGone } from "./_util.ts";

const encoder = new TextEncoder();

/** Runs `attack` again and again until `stopped()`, ignoring peer errors. */
async function repeat(
  stopped: () => boolean,
  attack: () => Promise<void>,
): Promise<number> {
  let rounds = 0;
  while (!stopped()) {
    try {
      await attack();
    } catch (err: unknown) {
      // The server cut the attacker off: that is its job.
      if (!isPeerGone(err) && !isClosedHere(err)) throw err;
      await delay(10);
    }
    rounds++;
  }
  return rounds;
}

/** The attackers, each kind in its own loops, until `stop()`. */
class Attacks {
  #stopped = false;
  #open = new Set<Deno.Conn>();
  #loops: Promise<number>[] = [];
  /** Responses the flooders read. */
  flooded = 0;

  constructor(port: number, scale: number, kinds: "flood" | "all") {
    const n = (full: number) => Math.max(1, Math.round(full * scale));
    const stopped = () => this.#stopped;
    const loop = (count: number, attack: () => Promise<void>) => {
      for (let i = 0; i < count; i++) {
        this.#loops.push(handled(repeat(stopped, attack)));
      }
    };
    loop(n(4), () => this.#flood(port, "/metrics"));
    loop(n(2), () => this.#flood(port, "/healthz"));
    if (kinds === "flood") return;
    loop(n(100), () => this.#trickle(port));
    loop(n(50), () => this.#silent(port));
    loop(n(2), () => this.#badRequest(port));
    loop(n(20), () => this.#unreadPage(port));
    loop(n(1), () => this.#churn(port));
    loop(n(16), () => this.#drip(port));
  }

  async #connect(port: number): Promise<Deno.Conn> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    this.#open.add(conn);
    return conn;
  }

  #close(conn: Deno.Conn): void {
    this.#open.delete(conn);
    closeQuietly(conn);
  }

  /** Keep-alive requests, 50 per write, as fast as the server takes them. */
  async #flood(port: number, path: string): Promise<void> {
    const conn = await this.#connect(port);
    const batch = encoder.encode(
      `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(50),
    );
    const reading = (async () => {
      const buffer = new Uint8Array(65536);
      for (let n = await conn.read(buffer); n !== null;) {
        for (let i = 0; i + 4 < n; i++) {
          // "HTTP/": the start of a status line.
          if (buffer[i] === 0x48 && buffer[i + 4] === 0x2f) this.flooded++;
        }
        if (this.#stopped) break;
        n = await conn.read(buffer);
      }
    })();
    try {
      while (!this.#stopped) await conn.write(batch);
    } finally {
      this.#close(conn);
      await reading.catch(() => {});
    }
  }

  /** A head one byte a second, never finished. */
  async #trickle(port: number): Promise<void> {
    const conn = await this.#connect(port);
    try {
      await conn.write(encoder.encode("GET /metrics HTTP/1.1\r\nX: "));
      while (!this.#stopped) {
        await delay(1000);
        await conn.write(encoder.encode("x"));
      }
    } finally {
      this.#close(conn);
    }
  }

  /** Connects and says nothing until the server gives up on it. */
  async #silent(port: number): Promise<void> {
    const conn = await this.#connect(port);
    try {
      await conn.read(new Uint8Array(1024));
    } finally {
      this.#close(conn);
    }
  }

  /** A bad Host on a new connection, reading the 400. */
  async #badRequest(port: number): Promise<void> {
    const conn = await this.#connect(port);
    try {
      await conn.write(
        encoder.encode("GET /metrics HTTP/1.1\r\nHost: a b\r\n\r\n"),
      );
      const buffer = new Uint8Array(1024);
      while (await conn.read(buffer) !== null) {
        // to the server's close
      }
    } finally {
      this.#close(conn);
    }
  }

  /** An event page that never reads. */
  async #unreadPage(port: number): Promise<void> {
    const conn = await this.#connect(port);
    try {
      await conn.write(
        encoder.encode("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"),
      );
      while (!this.#stopped) await delay(200);
    } finally {
      this.#close(conn);
    }
  }

  /**
   * A head one byte per segment, a segment every millisecond, never
   * finished: a server that parses the head again at every read pays for
   * each byte with the whole head. (As fast as the socket takes them, 16 of
   * these would take a core of this machine themselves: a remote attacker's
   * core, not the server's.)
   */
  async #drip(port: number): Promise<void> {
    const conn = await this.#connect(port) as Deno.TcpConn;
    conn.setNoDelay(true);
    const head = encoder.encode(
      "GET /metrics HTTP/1.1\r\n" +
        `X-Drip: ${"x".repeat(110)}\r\n`.repeat(63),
    );
    try {
      for (let i = 0; !this.#stopped; i = (i + 1) % head.length) {
        await conn.write(head.subarray(i, i + 1));
        await delay(1);
      }
    } finally {
      this.#close(conn);
    }
  }

  /** Connect and close at once. */
  async #churn(port: number): Promise<void> {
    this.#close(await this.#connect(port));
  }

  /** Stops every attacker and closes its connections. */
  async stop(): Promise<number> {
    this.#stopped = true;
    for (const conn of [...this.#open]) this.#close(conn);
    const rounds = await Promise.all(this.#loops);
    return rounds.reduce((a, b) => a + b, 0);
  }
}

if (import.meta.main) {
  const [port, scale] = Deno.args.map(Number);
  const kinds = Deno.args[2] === "flood" ? "flood" : "all";
  const attacks = new Attacks(port!, scale!, kinds);
  console.log("attacking");
  await new Response(Deno.stdin.readable).arrayBuffer();
  const rounds = await attacks.stop();
  console.log(`rounds ${rounds} flooded ${attacks.flooded}`);
}
