// Copyright the upcase authors. MIT license.
// Scenario 1: a property test of the byte stream. Random payloads (every byte
// value), random write sizes, pauses and half-close timing, many connections
// at once; every reply must be exactly the transform of its request.

import { serve, type Server } from "../mod.ts";
import { closeQuietly } from "../src/_io.ts";
import { concat, readToEnd, writeAll } from "../tests/_util.ts";
import {
  checkReply,
  delay,
  exchangeChecked,
  KiB,
  MiB,
  Random,
  type ScenarioResult,
  waitUntil,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode byteStreamProperty}. */
export interface ByteStreamOptions {
  /** The seed every case derives from (print it, so it can be replayed). */
  seed: number;
  /** How many cases. @default {500} */
  cases?: number;
  /** Cases running at once. @default {32} */
  concurrency?: number;
}

/** When the client half-closes and how it reads, for one case. */
type Timing =
  /** Read while sending; half-close right after the last write. */
  | "concurrent"
  /** Read while sending; pause, then half-close. */
  | "late-half-close"
  /** Send everything, half-close, only then read (small payloads only). */
  | "read-after-half-close"
  /** Read each write's reply before the next write. */
  | "lockstep";

/** One generated case: everything about it comes from its seed. */
export interface ByteStreamCase {
  /** The run's seed, and the case's number in it. */
  seed: number;
  index: number;
  hostname: string;
  payload: Uint8Array;
  /** Sizes of the successive writes; they add up to the payload length. */
  writes: number[];
  /** Pause before each write, in ms (0: none). */
  pauses: number[];
  timing: Timing;
  /** Pause before the half-close, in ms. */
  halfCloseDelay: number;
  /** Size of the client's read buffer. */
  readSize: number;
  /** Pause after each read, in ms (a slow reader). */
  readPause: number;
}

/**
 * The most writes (and about the most reads) one case makes, so a 4 MiB
 * payload is not 4 M writes.
 */
const MAX_WRITES = 400;
/** The most pauses one case makes, writing or reading. */
const MAX_PAUSES = 20;
/** How long one case may take before it counts as hung. */
const CASE_TIMEOUT_MS = 60_000;

/**
 * Generates case `index` of a run: the same seed and index always give the
 * same case, whatever the scheduling.
 */
export function generateCase(
  seed: number,
  index: number,
  hostnames: readonly string[],
): ByteStreamCase {
  const random = new Random(seed).fork(index);
  const roll = random.next();
  const size = roll < 0.1
    ? random.int(0, 3)
    : roll < 0.4
    ? random.int(1, KiB)
    : roll < 0.75
    ? random.int(KiB, 64 * KiB)
    : roll < 0.97
    ? random.int(64 * KiB, MiB)
    : random.int(MiB, 4 * MiB);
  // Mostly uniform bytes; sometimes text-like, where letters dominate.
  const payload = random.chance(0.7) ? random.bytes(size) : Uint8Array.from(
    { length: size },
    () => random.chance(0.8) ? random.int(0x40, 0x7f) : random.int(0, 255),
  );
  const timing: Timing = size <= 64 * KiB
    ? random.pick(
      ["concurrent", "late-half-close", "read-after-half-close", "lockstep"],
    )
    : random.pick(["concurrent", "late-half-close", "lockstep"]);
  const minWrite = Math.max(1, Math.ceil(size / MAX_WRITES));
  const maxWrite = Math.max(minWrite, random.logInt(1, 256 * KiB));
  const writes: number[] = [];
  for (let left = size; left > 0;) {
    const n = Math.min(left, random.logInt(minWrite, maxWrite));
    writes.push(n);
    left -= n;
  }
  const pauseChance = random.pick([0, 0, 0.05, 0.3]);
  let pausesLeft = MAX_PAUSES;
  const pauses = writes.map(() => {
    if (pausesLeft === 0 || !random.chance(pauseChance)) return 0;
    pausesLeft--;
    return random.int(1, 5);
  });
  const readSize = Math.max(
    Math.ceil(size / MAX_WRITES),
    random.logInt(1, 128 * KiB),
  );
  return {
    seed,
    index,
    hostname: random.pick(hostnames),
    payload,
    writes,
    pauses,
    timing,
    halfCloseDelay: timing === "late-half-close" ? random.int(1, 30) : 0,
    readSize,
    // A slow reader, but one that pauses at most MAX_PAUSES times.
    readPause: size / readSize <= MAX_PAUSES && random.chance(0.2)
      ? random.int(1, 3)
      : 0,
  };
}

/** One line that says what a case did, for failure messages. */
export function describeCase(c: ByteStreamCase): string {
  return `case ${c.index} of SEED=${c.seed}: ${c.payload.length} B to ${c.hostname} in ${c.writes.length} writes, ${c.timing}, ${
    c.pauses.filter((p) => p > 0).length
  } pauses, read ${c.readSize} B at a time${
    c.readPause ? ` with ${c.readPause} ms pauses` : ""
  }`;
}

/** Runs one case against `port`; throws unless the reply is exact. */
export async function runCase(
  c: ByteStreamCase,
  port: number,
): Promise<void> {
  const conn = await Deno.connect({ hostname: c.hostname, port });
  try {
    await withTimeout(
      exchangeCase(conn, c),
      CASE_TIMEOUT_MS,
      describeCase(c),
      () => closeQuietly(conn),
    );
  } finally {
    closeQuietly(conn);
  }
}

async function exchangeCase(conn: Deno.Conn, c: ByteStreamCase) {
  const what = describeCase(c);
  const send = async (readBack: boolean) => {
    let offset = 0;
    for (let i = 0; i < c.writes.length; i++) {
      if (c.pauses[i]) await delay(c.pauses[i]!);
      const piece = c.payload.subarray(offset, offset + c.writes[i]!);
      if (readBack) await exchangeChecked(conn, piece, what);
      else await writeAll(conn, piece);
      offset += piece.length;
    }
    if (c.halfCloseDelay) await delay(c.halfCloseDelay);
    await conn.closeWrite();
  };
  switch (c.timing) {
    case "lockstep": {
      await send(true);
      checkReply(await readToEnd(conn), new Uint8Array(0), `${what} (tail)`);
      return;
    }
    case "read-after-half-close": {
      await send(false);
      checkReply(await readAll(conn, c), c.payload, what);
      return;
    }
    default: {
      const [reply] = await Promise.all([readAll(conn, c), send(false)]);
      checkReply(reply, c.payload, what);
    }
  }
}

/** Reads to EOF in the case's read size, pausing if it is a slow reader. */
async function readAll(conn: Deno.Conn, c: ByteStreamCase) {
  if (c.readPause === 0 && c.readSize >= 64 * KiB) return await readToEnd(conn);
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(c.readSize);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    if (c.readPause) await delay(c.readPause);
  }
  return concat(chunks);
}

/**
 * Scenario 1. Runs `cases` random cases, `concurrency` at a time, against
 * in-process servers on 127.0.0.1 and ::1 (when this machine has IPv6), and
 * checks every reply byte for byte, then the servers' counters.
 *
 * @throws {Error} Naming the case (and so the seed) that failed.
 */
export async function byteStreamProperty(
  options: ByteStreamOptions,
): Promise<ScenarioResult> {
  const cases = options.cases ?? 500;
  const concurrency = options.concurrency ?? 32;
  const servers: Server[] = [serve({ hostname: "127.0.0.1", port: 0 })];
  const notes: string[] = [];
  try {
    servers.push(serve({ hostname: "::1", port: 0 }));
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.AddrNotAvailable)) throw err;
    notes.push("no IPv6 loopback here: 127.0.0.1 only");
  }
  const ports = new Map(servers.map((s) => [s.addr.hostname, s.addr.port]));
  const hostnames = [...ports.keys()];
  let bytes = 0;
  let peakRss = Deno.memoryUsage().rss;
  const startRss = peakRss;
  try {
    let next = 0;
    const worker = async () => {
      while (next < cases) {
        const c = generateCase(options.seed, next++, hostnames);
        await runCase(c, ports.get(c.hostname)!);
        bytes += c.payload.length;
        peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    await waitUntil(
      () => servers.every((s) => s.stats.active === 0),
      5000,
      "every connection closed on the server side",
    );
    const total = { accepted: 0, bytesIn: 0, bytesOut: 0, errors: 0 };
    for (const s of servers) {
      const stats = s.stats;
      total.accepted += stats.accepted;
      total.bytesIn += stats.bytesIn;
      total.bytesOut += stats.bytesOut;
      total.errors += stats.errors;
    }
    const want = {
      accepted: cases,
      bytesIn: bytes,
      bytesOut: bytes,
      errors: 0,
    };
    if (JSON.stringify(total) !== JSON.stringify(want)) {
      throw new Error(
        `Server counters ${JSON.stringify(total)}, want ${
          JSON.stringify(want)
        }`,
      );
    }
    return {
      cases,
      bytes,
      errors: total.errors,
      rss: {
        start: startRss,
        peak: peakRss,
        end: Deno.memoryUsage().rss,
        inProcess: true,
      },
      notes,
    };
  } finally {
    await Promise.all(servers.map((s) => s.shutdown({ grace: 0 })));
  }
}
