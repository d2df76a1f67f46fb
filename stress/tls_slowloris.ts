// Copyright the upcase authors. MIT license.
// TLS scenario 3: slowloris against the handshake. Clients that connect and
// send nothing, or trickle a ClientHello a byte at a time, must each be
// closed at --handshake-timeout, seen from their side (FIN or RST), with the
// server's sockets and descriptors back afterwards, while TLS clients that
// behave are served all along.

import { closeQuietly } from "../src/_io.ts";
import {
  Bystanders,
  countDescriptors,
  delay,
  handled,
  isPeerGone,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  waitUntil,
  withTimeout,
} from "./_util.ts";
import {
  CLIENT_HELLO_START,
  failedHandshakes,
  HANDSHAKE_FAILED_LINE,
  makeStressCerts,
  socketsOnPort,
  startTlsServer,
  type TlsMode,
} from "./_tls.ts";

/** Options for {@linkcode tlsSlowloris}. */
export interface TlsSlowlorisOptions {
  /** How the server frees stalled handshakes. */
  mode: TlsMode;
  /** Stalling clients: half silent, half trickling. @default {500} */
  clients?: number;
  /** The server's `--handshake-timeout`, in seconds. @default {2} */
  handshakeTimeout?: number;
  /** A trickling client's pause between two bytes, in ms. @default {200} */
  trickleMs?: number;
  /** Seed of the bystanders' payloads. @default {1} */
  seed?: number;
}

/** Clients that connect together, 20 ms after the batch before. */
const CONNECT_BATCH = 100;
/** How long after the timeout a close still counts as on time. */
const LATE_MS = 1500;
/** How long before the timeout a close would be early (timers, accept lag). */
const EARLY_MS = 100;

/** How a stalling client ended, seen from its side. */
interface Stall {
  kind: "silent" | "trickle";
  /** Milliseconds from connect to the server's FIN or RST; -1 if none came. */
  closedAfter: number;
  /** "fin" (EOF) or "rst" (ConnectionReset, or a write that failed). */
  how: "fin" | "rst" | "none";
  /** ClientHello bytes it had sent. */
  sent: number;
  /** Bytes the server sent it (a TLS alert, maybe). */
  received: number;
}

/**
 * One client that connects and stalls: silent, or sending
 * {@linkcode CLIENT_HELLO_START} one byte every `trickleMs` (wrapping round
 * it) until the server closes; gives up after `waitMs`.
 */
async function stall(
  port: number,
  kind: Stall["kind"],
  trickleMs: number,
  waitMs: number,
): Promise<Stall> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const connected = performance.now();
  const result: Stall = {
    kind,
    closedAfter: -1,
    how: "none",
    sent: 0,
    received: 0,
  };
  let closed = false;
  const ended = (how: "fin" | "rst") => {
    if (closed) return;
    closed = true;
    result.closedAfter = performance.now() - connected;
    result.how = how;
  };
  const trickling = kind === "silent" ? Promise.resolve() : (async () => {
    try {
      while (!closed) {
        const byte = CLIENT_HELLO_START.subarray(
          result.sent % CLIENT_HELLO_START.length,
          result.sent % CLIENT_HELLO_START.length + 1,
        );
        await conn.write(byte);
        result.sent++;
        await delay(trickleMs);
      }
    } catch (err: unknown) {
      if (isPeerGone(err)) ended("rst");
      else if (!(err instanceof Deno.errors.BadResource)) throw err;
    }
  })();
  try {
    await withTimeout(
      (async () => {
        const buf = new Uint8Array(1024);
        try {
          while (true) {
            const n = await conn.read(buf);
            if (n === null) return ended("fin");
            result.received += n;
          }
        } catch (err: unknown) {
          if (!isPeerGone(err)) throw err;
          ended("rst");
        }
      })(),
      waitMs,
      `a ${kind} client waiting for the server to close it`,
      () => closeQuietly(conn),
    ).catch((err: unknown) => {
      if (!closed) return; // timed out: closedAfter stays -1
      throw err;
    });
  } finally {
    closed = true;
    closeQuietly(conn);
    await trickling;
  }
  return result;
}

/**
 * TLS scenario 3. Starts `server.ts --cert --key --handshake-timeout T` in
 * `mode`; `clients` clients connect (100 every 20 ms) and stall, half silent,
 * half trickling a ClientHello a byte every `trickleMs`, while two TLS
 * clients exchange checked payloads. Each stalling client must see the
 * server close it (FIN or RST) between T − 0.1 s and T + 1.5 s after its
 * connect; then `ss` must show no connection on the port, the server's TCP
 * sockets and descriptors must be back to what they were, every stall must
 * be logged as a failed handshake, and the SIGTERM summary must count them.
 *
 * @throws {Error} When a client is closed early, late or never, or anything
 *   stays open.
 */
export async function tlsSlowloris(
  options: TlsSlowlorisOptions,
): Promise<ScenarioResult> {
  const clients = options.clients ?? 500;
  const seconds = options.handshakeTimeout ?? 2;
  const trickleMs = options.trickleMs ?? 200;
  const timeoutMs = seconds * 1000;
  await using certs = await makeStressCerts();
  await using server = await startTlsServer(certs, options.mode, [
    "--handshake-timeout",
    String(seconds),
  ]);
  const baseline = await server.sockets();
  const baseDescriptors = await countDescriptors(server.pid);
  const sampler = await RssSampler.start(server.pid);
  const bystanders = Bystanders.start(server.port, {
    count: 2,
    pauseMs: 10,
    seed: options.seed,
    tls: certs.tls,
  });
  let stalls: Stall[];
  let peakSockets = baseline;
  let exchanges = 0;
  let bystanderBytes = 0;
  let rss: RssFigures;
  try {
    const waits: Promise<Stall>[] = [];
    for (let i = 0; i < clients; i += CONNECT_BATCH) {
      const n = Math.min(CONNECT_BATCH, clients - i);
      const batch = Array.from({ length: n }, (_, j) =>
        handled(stall(
          server.port,
          (i + j) % 2 === 0 ? "silent" : "trickle",
          trickleMs,
          timeoutMs + 10_000,
        )));
      waits.push(...batch);
      // Let the batch connect before the next one.
      await delay(20);
    }
    // Handled at once: it fails (the server gone) before it is awaited.
    const counting = handled((async () => {
      await delay(timeoutMs / 2);
      peakSockets = await server.sockets();
    })());
    stalls = await Promise.all(waits);
    await counting;
    const report = await bystanders.stop();
    exchanges = report.exchanges;
    bystanderBytes = report.bytes;
    await waitUntil(
      async () => (await server.sockets()) <= baseline,
      5000,
      `the server's sockets back to ${baseline}`,
    );
    rss = await sampler.stop();
  } finally {
    await bystanders.stop().catch(() => {});
    await sampler.stop();
  }
  const never = stalls.filter((s) => s.closedAfter < 0);
  const early = stalls.filter((s) =>
    s.closedAfter >= 0 && s.closedAfter < timeoutMs - EARLY_MS
  );
  const late = stalls.filter((s) => s.closedAfter > timeoutMs + LATE_MS);
  if (never.length > 0 || early.length > 0 || late.length > 0) {
    throw new Error(
      `Of ${clients} stalled clients (--handshake-timeout ${seconds}), ${never.length} were never closed (e.g. a ${
        never[0]?.kind
      } one), ${early.length} early (first after ${
        early[0]?.closedAfter.toFixed(0)
      } ms), ${late.length} late (first after ${
        late[0]?.closedAfter.toFixed(0)
      } ms)`,
    );
  }
  const established = await socketsOnPort(server.port);
  if (established !== 0) {
    throw new Error(`ss shows ${established} connections still established`);
  }
  const descriptors = await countDescriptors(server.pid);
  if (descriptors > baseDescriptors + 2) {
    throw new Error(
      `The server holds ${descriptors} descriptors, ${baseDescriptors} before the stalls`,
    );
  }
  await waitUntil(
    () => server.count(HANDSHAKE_FAILED_LINE) >= clients,
    5000,
    `${clients} "TLS handshake failed" lines (${
      server.count(HANDSHAKE_FAILED_LINE)
    } so far)`,
  );
  const out = await server.stop();
  if (out.code !== 0) {
    throw new Error(`server.ts exited ${out.code} on SIGTERM: ${out.stderr}`);
  }
  // Counted once the server has exited: its whole log is in.
  const timedOut = server.count(
    new RegExp(
      `no TLS handshake within ${seconds} s \\(--handshake-timeout\\)`,
    ),
  );
  const failed = failedHandshakes(out.stdout);
  if (failed !== clients || timedOut !== clients) {
    throw new Error(
      `The server logged ${timedOut} handshake timeouts and its summary ${failed} failed handshakes, for ${clients} stalled clients`,
    );
  }
  const times = stalls.map((s) => s.closedAfter).toSorted((a, b) => a - b);
  const fins = stalls.filter((s) => s.how === "fin").length;
  const alerts = stalls.filter((s) => s.received > 0).length;
  return {
    cases: clients,
    bytes: stalls.reduce((n, s) => n + s.sent, 0) + bystanderBytes,
    errors: server.count(/^error from /) + failed,
    rss,
    notes: [
      `--handshake-timeout ${seconds}: ${clients / 2} silent and ${
        clients / 2
      } trickling clients (a ClientHello byte every ${trickleMs} ms) closed after ${
        times[0]!.toFixed(0)
      }-${times.at(-1)!.toFixed(0)} ms, ${fins} with FIN, ${
        clients - fins
      } with RST, ${alerts} got bytes first; server sockets ${baseline} idle, ${peakSockets} mid-stall, ${baseline} after; descriptors ${baseDescriptors} → ${descriptors}; ${exchanges} TLS round trips checked meanwhile`,
    ],
  };
}
