// Copyright the upcase authors. MIT license.
// Scenario 1 with --unicode: random UTF-8 text (characters of 1 to 4 bytes,
// ones whose upper case is longer or shorter) mixed with bytes that are not
// UTF-8, cut in two at every byte of short texts and at random points of
// long ones; every reply must be exactly the character-by-character reference
// of tests/_util.ts.

import { format as formatBytes } from "@std/fmt/bytes";
import { serve } from "../mod.ts";
import { closeQuietly } from "../src/_io.ts";
import {
  concat,
  expectedUpperUnicode,
  firstDifference,
  readExactly,
  readToEnd,
  writeAll,
} from "../tests/_util.ts";
import {
  delay,
  formatSize,
  KiB,
  parseSummary,
  Random,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  waitUntil,
  WatchedServer,
  withTimeout,
} from "./_util.ts";

/** Options for {@linkcode unicodeByteStreamProperty}. */
export interface UnicodeStreamOptions {
  /** The seed every text derives from (print it, so it can be replayed). */
  seed: number;
  /**
   * How many cases (connections), at least: the short texts are cut at every
   * byte, so the last one may add a few more.
   *
   * @default {500}
   */
  cases?: number;
  /** Cases running at once. @default {32} */
  concurrency?: number;
  /** The largest long text, in bytes. @default {64 KiB} */
  maxSize?: number;
  /**
   * Run against `server.ts --unicode` in a child process instead of an
   * in-process `serve({ unicode: true })`.
   *
   * @default {false}
   */
  cli?: boolean;
  /**
   * Put U+FEFF in the texts too (a decoder that strips byte order marks
   * would lose it where a read starts with it: a defect this suite found).
   *
   * @default {true}
   */
  includeFeff?: boolean;
}

/** One connection's worth: a text and how it is written. */
export interface UnicodeCase {
  /** Names the case in a failure message, with the seed to replay it. */
  label: string;
  payload: Uint8Array;
  /** Sizes of the successive writes; they add up to the payload length. */
  writes: number[];
  /** Pause before each write, in ms (0: none). */
  pauses: number[];
  /**
   * A text cut in two: the reply to the first write (what the server does
   * not hold back) is read before the second goes out, so the two arrive as
   * separate reads.
   */
  cut: boolean;
}

/** Lower-case ASCII and a little punctuation: the common case. */
const ASCII = [..."abcdefghijklmnopqrstuvwxyz ABCXYZ 0123456789 .,;!?~-_\t\n"];
/**
 * Characters of 2 to 4 bytes: ones whose upper case has more bytes (ß ŉ ΐ ﬁ
 * ᾳ ẖ ȿ ɐ), fewer (ı ſ ⱥ ⱦ), other code points of the same length (é ǅ ς µ
 * 𐐨 𞤢), or that have none (日 € 😀 and ones already upper case).
 */
const NON_ASCII = [
  ..."éñüçøåæœÿµßŉǰſıǆǅǈǲΐΰάέωςσμжяђɐȿɀȼÉΣЖ\u0345",
  ..."ﬀﬁﬂﬃﬄﬅﬆᾳῳᾀῲẖẗẘẙẚⱥⱦꭰｚ日本語€ᵹ…ẞ",
  ..."𐐨𐑏𞤢𖹠𐓘😀𝒜🙂",
];
const FEFF = "\ufeff";

/** Byte sequences that are never UTF-8, or not where they stand. */
const INVALID: readonly (readonly number[])[] = [
  [0xc0, 0xaf], // overlong "/"
  [0xc1, 0xbf], // overlong
  [0xe0, 0x80, 0xaf], // overlong
  [0xf0, 0x80, 0x80, 0xaf], // overlong
  [0xed, 0xa0, 0x80], // a surrogate
  [0xed, 0xbf, 0xbf], // a surrogate
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xf5, 0x80, 0x80, 0x80], // never a lead byte
  [0xfe],
  [0xff],
];

/** Up to this many of a long case's writes are preceded by a pause. */
const MAX_PAUSES = 20;
/** The most writes one long case makes. */
const MAX_WRITES = 200;
/** How long a cut case waits between its writes when no reply shows the first was read. */
const CUT_PAUSE_MS = 3;
/** How long one case may take before it counts as hung. */
const CASE_TIMEOUT_MS = 30_000;
/** Short of the cases are short texts cut at every byte; the rest are long. */
const SHORT_SHARE = 0.7;

const encoder = new TextEncoder();

/** Random text: mostly characters, and at `invalidShare` bytes that are not UTF-8. */
function randomText(
  random: Random,
  size: number,
  invalidShare: number,
  includeFeff: boolean,
): Uint8Array {
  const bytes: number[] = [];
  while (bytes.length < size) {
    if (random.chance(invalidShare)) {
      bytes.push(...invalidBytes(random));
      continue;
    }
    const char = includeFeff && random.chance(0.02)
      ? FEFF
      : random.chance(0.4)
      ? random.pick(ASCII)
      : random.pick(NON_ASCII);
    bytes.push(...encoder.encode(char));
  }
  return new Uint8Array(bytes);
}

/** A few bytes that are not UTF-8 where they stand. */
function invalidBytes(random: Random): number[] {
  switch (random.int(0, 3)) {
    case 0:
      return [random.int(0x80, 0xbf)]; // a lone continuation byte
    case 1: {
      // A character cut short (what follows is not its continuation).
      const char = encoder.encode(random.pick(NON_ASCII));
      return [...char.subarray(0, random.int(1, char.length - 1))];
    }
    case 2:
      return [...random.pick(INVALID)];
    default:
      return [...random.bytes(random.int(1, 8))];
  }
}

/** Hexadecimal bytes, for a failure message that can be replayed by hand. */
function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/**
 * Generates the cases of a run: short texts (2 to 12 characters) each cut in
 * two at every byte, until they make about 70 % of `cases`, then long texts
 * (up to `maxSize`) in random writes with random pauses. The same seed
 * always gives the same cases.
 */
export function generateUnicodeCases(
  seed: number,
  cases: number,
  maxSize: number,
  includeFeff: boolean,
): UnicodeCase[] {
  const out: UnicodeCase[] = [];
  const root = new Random(seed ^ 0x55aa55aa);
  for (let t = 0; out.length < cases * SHORT_SHARE; t++) {
    const random = root.fork(t);
    const invalidShare = random.pick([0, 0, 0.1, 0.3]);
    const payload = randomText(
      random,
      random.int(2, 24),
      invalidShare,
      includeFeff,
    );
    for (let cut = 1; cut < payload.length; cut++) {
      out.push({
        label: `short text ${t} cut at byte ${cut} of ${payload.length} (${
          hex(payload)
        }), SEED=${seed}`,
        payload,
        writes: [cut, payload.length - cut],
        pauses: [0, 0],
        cut: true,
      });
    }
  }
  for (let t = 0; out.length < cases; t++) {
    const random = root.fork(1_000_000 + t);
    const size = random.logInt(25, maxSize);
    const payload = randomText(
      random,
      size,
      random.pick([0, 0.01, 0.05, 0.2]),
      includeFeff,
    );
    const minWrite = Math.max(1, Math.ceil(payload.length / MAX_WRITES));
    const maxWrite = Math.max(minWrite, random.logInt(1, 64 * KiB));
    const writes: number[] = [];
    for (let left = payload.length; left > 0;) {
      const n = Math.min(left, random.logInt(minWrite, maxWrite));
      writes.push(n);
      left -= n;
    }
    const pauseChance = random.pick([0, 0.05, 0.3]);
    let pausesLeft = MAX_PAUSES;
    const pauses = writes.map(() => {
      if (pausesLeft === 0 || !random.chance(pauseChance)) return 0;
      pausesLeft--;
      return random.int(1, 5);
    });
    out.push({
      label: `long text ${t}: ${payload.length} B in ${writes.length} writes, ${
        pauses.filter((p) => p > 0).length
      } pauses, SEED=${seed}`,
      payload,
      writes,
      pauses,
      cut: false,
    });
  }
  return out;
}

/**
 * Whether 1 to 3 more bytes can make `prefix` one whole character: then a
 * Unicode server holds it back until they come. Only a character's second
 * byte may have a range narrower than 0x80-0xbf, so trying each second byte
 * and 0x80 for the rest is enough.
 */
function isCharacterStart(prefix: Uint8Array): boolean {
  const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  for (let length = prefix.length + 1; length <= 4; length++) {
    const candidate = new Uint8Array(length).fill(0x80);
    candidate.set(prefix);
    const seconds = prefix.length === 1
      ? Array.from({ length: 0x40 }, (_, i) => 0x80 + i)
      : [candidate[1]!];
    for (const second of seconds) {
      candidate[1] = second;
      try {
        if ([...fatal.decode(candidate)].length === 1) return true;
      } catch (err: unknown) {
        if (!(err instanceof TypeError)) throw err;
      }
    }
  }
  return false;
}

/**
 * Where the bytes a Unicode server holds back at the end of `bytes` begin:
 * the start of a character whose last bytes have not come (at most 3 bytes
 * from the end), else `bytes.length`.
 */
export function heldBackFrom(bytes: Uint8Array): number {
  for (let k = Math.max(0, bytes.length - 3); k < bytes.length; k++) {
    if (isCharacterStart(bytes.subarray(k))) return k;
  }
  return bytes.length;
}

/** Throws unless `actual` equals `expected`, naming the first differing byte. */
function check(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const at = firstDifference(actual, expected);
  if (at !== -1) {
    throw new Error(
      `${what}: reply differs at byte ${at} (got ${actual.length} B, want ${expected.length} B; got ${
        hex(actual.subarray(Math.max(0, at - 4), at + 8))
      }, want ${
        hex(expected.subarray(Math.max(0, at - 4), at + 8))
      } from byte ${Math.max(0, at - 4)})`,
    );
  }
}

/**
 * Runs one case against `port` and returns the reply's length.
 *
 * @throws {Error} Unless the reply is exact and comes within 30 s.
 */
export async function runUnicodeCase(
  c: UnicodeCase,
  port: number,
): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  // Every write goes out at once, as its own segment.
  conn.setNoDelay(true);
  try {
    return await withTimeout(
      c.cut ? cutExchange(conn, c) : streamExchange(conn, c),
      CASE_TIMEOUT_MS,
      c.label,
      () => closeQuietly(conn),
    );
  } finally {
    closeQuietly(conn);
  }
}

/** Two writes; the second only once the server has read the first. */
async function cutExchange(conn: Deno.Conn, c: UnicodeCase): Promise<number> {
  const expected = expectedUpperUnicode(c.payload);
  const first = c.payload.subarray(0, c.writes[0]);
  await writeAll(conn, first);
  // What the server sends back before the rest comes: everything but a
  // character the cut left unfinished.
  const partial = expectedUpperUnicode(
    first.subarray(0, heldBackFrom(first)),
  );
  let got = new Uint8Array(0);
  if (partial.length > 0) {
    got = await readExactly(conn, partial.length);
    check(got, partial, `${c.label} (reply to the first write)`);
  } else {
    await delay(CUT_PAUSE_MS);
  }
  await writeAll(conn, c.payload.subarray(first.length));
  await conn.closeWrite();
  const reply = concat([got, await readToEnd(conn)]);
  check(reply, expected, c.label);
  return reply.length;
}

/** The writes with their pauses, reading the reply all the while. */
async function streamExchange(
  conn: Deno.Conn,
  c: UnicodeCase,
): Promise<number> {
  const send = async () => {
    let offset = 0;
    for (let i = 0; i < c.writes.length; i++) {
      if (c.pauses[i]) await delay(c.pauses[i]!);
      await writeAll(conn, c.payload.subarray(offset, offset + c.writes[i]!));
      offset += c.writes[i]!;
    }
    await conn.closeWrite();
  };
  const [reply] = await Promise.all([readToEnd(conn), send()]);
  check(reply, expectedUpperUnicode(c.payload), c.label);
  return reply.length;
}

/**
 * Scenario 1 for `--unicode`. Runs the cases of
 * {@linkcode generateUnicodeCases}, `concurrency` at a time, against
 * `serve({ unicode: true })` (or `server.ts --unicode` with `cli`), checks
 * every reply byte for byte against the reference, then the server's
 * counters (or its summary line).
 *
 * @throws {Error} Naming the case, its bytes and the seed, at the first
 *   wrong reply; or when the counters disagree with the clients.
 */
export async function unicodeByteStreamProperty(
  options: UnicodeStreamOptions,
): Promise<ScenarioResult> {
  const concurrency = options.concurrency ?? 32;
  const cases = generateUnicodeCases(
    options.seed,
    options.cases ?? 500,
    options.maxSize ?? 64 * KiB,
    options.includeFeff ?? true,
  );
  let bytesIn = 0;
  let bytesOut = 0;
  let peakRss = 0;
  const runAll = async (port: number) => {
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        const replied = await runUnicodeCase(c, port);
        bytesIn += c.payload.length;
        bytesOut += replied;
        peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  };
  let rss: RssFigures;
  let errors: number;
  if (options.cli) {
    await using server = await WatchedServer.start(["--unicode"]);
    const sampler = await RssSampler.start(server.pid);
    try {
      await runAll(server.port);
    } finally {
      rss = await sampler.stop();
    }
    const { code, stdout } = await server.stop("SIGTERM");
    if (code !== 0) throw new Error(`The server exited with ${code}, want 0`);
    const summary = parseSummary(stdout);
    const want =
      `Served ${cases.length} connections on 127.0.0.1:${server.port}: ${
        formatBytes(bytesIn)
      } in, ${formatBytes(bytesOut)} out, 0 errors, up `;
    if (!summary.line.startsWith(want)) {
      throw new Error(`The summary says "${summary.line}", want "${want}..."`);
    }
    errors = summary.errors;
  } else {
    const startRss = Deno.memoryUsage().rss;
    await using server = serve({
      hostname: "127.0.0.1",
      port: 0,
      unicode: true,
    });
    await runAll(server.addr.port);
    await waitUntil(
      () => server.stats.active === 0,
      5000,
      "every connection closed on the server side",
    );
    const stats = server.stats;
    const got = [stats.accepted, stats.errors, stats.bytesIn, stats.bytesOut];
    const want = [cases.length, 0, bytesIn, bytesOut];
    if (got.join() !== want.join()) {
      throw new Error(
        `Server counters (accepted, errors, bytes in, bytes out) ${got}, want ${want}`,
      );
    }
    errors = stats.errors;
    rss = {
      start: startRss,
      peak: Math.max(startRss, peakRss),
      end: Deno.memoryUsage().rss,
      inProcess: true,
    };
  }
  const short = cases.filter((c) => c.cut);
  const split = short.filter((c) => {
    const first = c.payload.subarray(0, c.writes[0]);
    return heldBackFrom(first) < first.length;
  }).length;
  const notes = [
    `${short.length} two-write cases (every cut of ${
      new Set(short.map((c) => c.payload)).size
    } short texts; ${split} cut inside a character) and ${
      cases.length - short.length
    } long texts in random writes; ${formatSize(bytesIn)} in, ${
      formatSize(bytesOut)
    } out`,
  ];
  if (options.includeFeff === false) {
    notes.push("U+FEFF left out of the texts");
  }
  return { cases: cases.length, bytes: bytesIn, errors, rss, notes };
}
