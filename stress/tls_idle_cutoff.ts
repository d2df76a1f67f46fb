// Copyright the upcase authors. MIT license.
// TLS scenario 5: a TLS client that sends and never reads until the server
// cuts it off with --idle-timeout. The cut-off must be real: the socket gone
// from `ss`, the server's socket count back, the client told (EOF or RST),
// not a connection logged as closed that still holds its descriptor.

import {
  MiB,
  type RssFigures,
  RssSampler,
  type ScenarioResult,
  skippedResult,
  waitUntil,
} from "./_util.ts";
import {
  havePython,
  makeStressCerts,
  PYTHON,
  socketsOnPort,
  startTlsServer,
  type TlsMode,
} from "./_tls.ts";
import { SlowWriter } from "./tls_slow_reader.ts";

/**
 * How long the client may take to see its socket end once the server has
 * freed it: a guard only, the wait ends as soon as it does.
 */
const CLIENT_TOLD_WITHIN_MS = 10_000;

/** Options for {@linkcode tlsIdleCutoff}. */
export interface TlsIdleCutoffOptions {
  /** How the server frees stalled handshakes. */
  mode: TlsMode;
  /** The server's `--idle-timeout`, in seconds. @default {2} */
  idleTimeout?: number;
  /**
   * How long after the logged close the socket may linger, in ms: the relay
   * gives a closed connection's last bytes 2 s to go out.
   *
   * @default {3000}
   */
  graceMs?: number;
}

/**
 * TLS scenario 5. Starts `server.ts --cert --key --idle-timeout T` in
 * `mode`; a Python TLS client writes without reading until its writes block
 * and the server logs it "closed ... after the idle timeout"; within
 * `graceMs` of that line (3 s) `ss` must show no connection on the port, the
 * server's TCP sockets must be back to idle and the client must see its
 * socket end, all while the client is still there (it would free the
 * socket by closing).
 *
 * Skipped, with the reason, without `/usr/bin/python3`.
 *
 * @throws {Error} When the server logs the close but keeps the socket, or
 *   the client is not told its socket ended.
 */
export async function tlsIdleCutoff(
  options: TlsIdleCutoffOptions,
): Promise<ScenarioResult> {
  if (!await havePython()) {
    return skippedResult(`${PYTHON} with its ssl module is not there`);
  }
  const seconds = options.idleTimeout ?? 2;
  const graceMs = options.graceMs ?? 3000;
  await using certs = await makeStressCerts();
  await using server = await startTlsServer(certs, options.mode, [
    "--idle-timeout",
    String(seconds),
  ]);
  const baseline = await server.sockets();
  const sampler = await RssSampler.start(server.pid);
  const writer = new SlowWriter(server.port, certs.ca, 256 * MiB);
  let rss: RssFigures;
  let line: string;
  let toldAfter: number;
  try {
    await writer.connected;
    line = await server.waitForLine(
      new RegExp(`^closed \\S+ at PORT ${writer.port} after the idle timeout`),
      seconds * 1000 + 10_000,
    );
    const logged = Date.now();
    const freed = async () =>
      (await socketsOnPort(server.port)) === 0 &&
      (await server.sockets()) <= baseline;
    try {
      await waitUntil(freed, graceMs, "the cut-off socket to go");
    } catch (err: unknown) {
      const lingering = await socketsOnPort(server.port);
      throw new Error(
        `${
          ((Date.now() - logged) / 1000).toFixed(1)
        } s after it logged "${line}", the server still has ${lingering} connection${
          lingering === 1 ? "" : "s"
        } ESTABLISHED on its port and ${await server
          .sockets()} TCP sockets (${baseline} idle); the client (${
          (writer.pushed / MiB).toFixed(1)
        } MiB pushed) ${
          writer.error === undefined
            ? "was told nothing"
            : `says: ${writer.error}`
        }`,
        { cause: err },
      );
    }
    // The client's view of the end: its next write fails (it is blocked,
    // retrying every 100 ms). Waited for, not slept on: a slow machine only
    // takes longer to say it.
    const freedAt = Date.now();
    await waitUntil(
      () => writer.error !== undefined,
      CLIENT_TOLD_WITHIN_MS,
      "the client to see its socket end (a write failing with EOF or RST)",
    ).catch((err: unknown) => {
      throw new Error(
        `The server freed the cut-off socket, but the client (${
          (writer.pushed / MiB).toFixed(1)
        } MiB pushed) was told nothing within ${CLIENT_TOLD_WITHIN_MS} ms`,
        { cause: err },
      );
    });
    toldAfter = Date.now() - freedAt;
    rss = await sampler.stop();
  } finally {
    await writer.close().catch(() => {});
    await sampler.stop();
  }
  return {
    cases: 1,
    bytes: writer.pushed,
    errors: server.count(/^error from /),
    rss,
    notes: [
      `--idle-timeout ${seconds}: the non-reading TLS client (${
        (writer.pushed / MiB).toFixed(1)
      } MiB pushed) was logged cut off and its socket was gone within ${
        graceMs / 1000
      } s; the client saw ${writer.error} ${
        toldAfter === 0 ? "by then" : `${toldAfter} ms later`
      }`,
    ],
  };
}
