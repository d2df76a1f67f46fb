// Copyright the upcase authors. MIT license.
// TLS scenario 1: many full handshakes at once. Every client gets its exact
// bytes back, the server logs no error, and once they are gone its socket
// count is back where it started.

import {
  checkedRequest,
  handled,
  KiB,
  parseSummary,
  Random,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  waitUntil,
} from "./_util.ts";
import {
  HANDSHAKE_FAILED_LINE,
  makeStressCerts,
  startTlsServer,
  type TlsMode,
} from "./_tls.ts";

/** Options for {@linkcode tlsHandshakes}. */
export interface TlsHandshakesOptions {
  /** How the server frees stalled handshakes. */
  mode: TlsMode;
  /** Seed of the payloads. @default {1} */
  seed?: number;
  /** Clients, each with its own connection and handshake. @default {1000} */
  clients?: number;
  /** Of them, how many at once. @default {200} */
  concurrency?: number;
  /** Largest payload, in bytes (from 1 B, small ones as likely). @default {4096} */
  maxSize?: number;
}

/** How long one client (connect, handshake, round trip) may take. */
const CLIENT_TIMEOUT_MS = 30_000;

/**
 * TLS scenario 1. Starts `server.ts --cert --key` in `mode`; `clients`
 * clients, `concurrency` at a time, each connect, do a full handshake, send a
 * random payload, half-close and check the reply byte for byte. Then the
 * server must have logged every connection as a clean close, no failed
 * handshake and no error, hold no more sockets than before, still serve a
 * client, and exit 0 on SIGTERM with a summary that agrees.
 *
 * @throws {Error} At the first wrong or late reply, or when the server logs
 *   an error or keeps a socket.
 */
export async function tlsHandshakes(
  options: TlsHandshakesOptions,
): Promise<ScenarioResult> {
  const clients = options.clients ?? 1000;
  const concurrency = options.concurrency ?? 200;
  const maxSize = options.maxSize ?? 4 * KiB;
  const random = new Random(options.seed ?? 1);
  await using certs = await makeStressCerts();
  await using server = await startTlsServer(certs, options.mode);
  const baseline = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  let bytes = 0;
  let next = 0;
  let peakSockets = baseline;
  const latencies: number[] = [];
  const started = performance.now();
  let seconds: number;
  let rss: RssFigures;
  try {
    const worker = async () => {
      while (next < clients) {
        const i = next++;
        const own = random.fork(i);
        const payload = own.bytes(own.logInt(1, maxSize));
        const begun = performance.now();
        await checkedRequest(
          server.port,
          payload,
          `TLS client ${i}`,
          CLIENT_TIMEOUT_MS,
          "127.0.0.1",
          certs.tls,
        );
        latencies.push(performance.now() - begun);
        bytes += payload.length;
      }
    };
    // Handled at once: it fails (the server gone) before it is awaited.
    const watching = handled((async () => {
      while (next < clients) {
        peakSockets = Math.max(peakSockets, await server.sockets());
      }
    })());
    await Promise.all(Array.from({ length: concurrency }, worker));
    seconds = (performance.now() - started) / 1000;
    await watching;
    await waitUntil(
      async () => (await server.sockets()) <= baseline,
      10_000,
      `the server's sockets back to ${baseline}`,
    );
    await checkedRequest(
      server.port,
      new TextEncoder().encode("still there?"),
      "a TLS client after the others",
      10_000,
      "127.0.0.1",
      certs.tls,
    );
    rss = await sampler.stop();
  } finally {
    next = clients; // stops the other workers after their current client
    await sampler.stop();
  }
  const out = await server.stop();
  if (out.code !== 0) {
    throw new Error(`server.ts exited ${out.code} on SIGTERM: ${out.stderr}`);
  }
  const failed = server.count(HANDSHAKE_FAILED_LINE);
  const errors = server.count(/^error from /);
  const closed = server.count(/^closed /);
  if (failed > 0 || errors > 0 || closed !== clients + 1) {
    const odd = server.log.find((line) =>
      HANDSHAKE_FAILED_LINE.test(line) || /^error from /.test(line)
    );
    throw new Error(
      `The server logged ${failed} failed handshakes, ${errors} errors and ${closed} clean closes for ${
        clients + 1
      } clients${odd === undefined ? "" : `: ${odd}`}`,
    );
  }
  const summary = parseSummary(out.stdout);
  if (summary.connections !== clients + 1 || summary.errors !== 0) {
    throw new Error(`The summary disagrees: ${summary.line}`);
  }
  const sorted = latencies.toSorted((a, b) => a - b);
  const at = (q: number) =>
    Math.round(
      sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!,
    );
  return {
    cases: clients,
    bytes,
    errors: errors + failed,
    rss,
    notes: [
      `${clients} handshakes, ${concurrency} in flight: ${
        Math.round(clients / seconds)
      } a second; connect to reply p50 ${at(0.5)} ms, p99 ${
        at(0.99)
      } ms; server sockets ${baseline} idle, ${peakSockets} at the most, ${baseline} after`,
    ],
  };
}
