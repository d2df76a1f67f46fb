// Copyright the upcase authors. MIT license.
/**
 * The servers under test: their command lines, and starting and stopping
 * one on a free loopback port (TCP, or UDP for the UDP scenario).
 *
 * @module
 */

import type { Environment } from "./_environment.ts";
import {
  EPOLL_SERVER,
  EPOLL_TLS_SERVER,
  ROOT_DIR,
  TLS_CERT,
  TLS_KEY,
  UDP_SERVER,
} from "./_paths.ts";
import { killQuietly, sleep, spawn } from "./_process.ts";
import type { ScenarioKind, ServerName } from "./_settings.ts";

/** Passed to server.ts when its --help mentions the flag. */
export const UPCASE_MAX_CONNS = 20_000;
/** Longest wait for a server to accept its first connection. */
export const START_TIMEOUT_MS = 10_000;
/** Longest wait for a server to exit after SIGTERM, before SIGKILL. */
export const STOP_TIMEOUT_MS = 3_000;
/** How many Worker threads `upcase-w2` runs. */
export const UPCASE_WORKERS = 2;
/** The start of upcase's line once its UDP socket is bound. */
export const UPCASE_UDP_READY = "Answering datagrams on 127.0.0.1:";
/** The start of every peer's line once it listens (or is bound). */
export const PEER_READY = "listening on 127.0.0.1:";

/**
 * Free loopback ports, all different: bind port 0 that many times, read
 * the ports, close.
 *
 * @param count How many.
 * @returns The ports.
 */
export function freePorts(count: number): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return ports;
}

/**
 * Free loopback UDP ports, all different, the same way as
 * {@linkcode freePorts}.
 *
 * @param count How many.
 * @returns The ports.
 */
export function freeUdpPorts(count: number): number[] {
  const sockets = Array.from(
    { length: count },
    () =>
      Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 }),
  );
  const ports = sockets.map((s) => (s.addr as Deno.NetAddr).port);
  for (const socket of sockets) socket.close();
  return ports;
}

/** How {@linkcode serverCommand} runs a server. */
export interface CommandOptions {
  /**
   * Whether `upcase` is to serve TLS (`upcase-relay` always does, the other
   * servers serve one kind only).
   *
   * @default {false}
   */
  tls?: boolean;
  /**
   * Whether `upcase` is to answer datagrams (`server.ts --udp`).
   *
   * @default {false}
   */
  udp?: boolean;
  /**
   * The port of `upcase-metrics`' `--metrics` on 127.0.0.1; `"MPORT"` (or
   * any text) for a note.
   *
   * @default {"MPORT"}
   */
  metricsPort?: number | string;
}

/**
 * The second port a server listens on, besides the one the generator
 * connects to: `upcase-metrics`' metrics.
 *
 * @param name The server.
 * @returns Whether it needs one.
 */
export function needsMetricsPort(name: ServerName): boolean {
  return name === "upcase-metrics";
}

/**
 * The line in a server's log that says it is ready, when accepting a first
 * connection does not say so: `upcase-w2` logs "Accepting connections" once
 * every Worker listens (the first alone may accept before), and
 * `upcase-metrics` logs "Serving metrics" once the metrics server does.
 * Over UDP there is nothing to accept, and every server's line is needed:
 * upcase's "Answering datagrams on", the peers' "listening on".
 *
 * @param name The server.
 * @param udp Whether it serves the UDP scenario.
 * @returns The start of the line; undefined when accepting is enough.
 */
export function readyLine(
  name: ServerName,
  udp = false,
): string | undefined {
  if (udp) return name === "upcase" ? UPCASE_UDP_READY : PEER_READY;
  switch (name) {
    case "upcase-w2":
      return "Accepting connections on ";
    case "upcase-metrics":
      return "Serving metrics on ";
    default:
      return undefined;
  }
}

/**
 * The command line of a server, run from the repository root.
 *
 * Over TLS, `upcase` has `--allow-ffi`, so server.ts frees stalled
 * handshakes with shutdown(2) on Deno.listenTls's own sockets;
 * `upcase-relay` has not, so server.ts relays each client to an in-process
 * Deno.listenTls on 127.0.0.1:0, which needs `--allow-net=127.0.0.1` (every
 * loopback port) rather than `127.0.0.1:PORT`. `upcase-w2` has
 * `--workers 2` and `--allow-read=src` (each Worker loads the library's
 * modules); `upcase-metrics` has `--metrics` on a second port, which its
 * `--allow-net` names too. Over UDP, upcase and the Deno peers have
 * `--allow-net=127.0.0.1` (any port): Deno checks the destination of every
 * datagram sent, and the generator's port is any; upcase has
 * `--udp-rate 0`, no per-source rate limit (the generator is one source).
 *
 * @param name The server.
 * @param port Its port on 127.0.0.1; `"PORT"` (or any text) for a note.
 * @param env What the probe found.
 * @param options TLS or UDP, and the metrics port.
 * @returns The program and its arguments.
 */
export function serverCommand(
  name: ServerName,
  port: number | string,
  env: Environment,
  options: CommandOptions = {},
): string[] {
  const { tls = false, udp = false, metricsPort = "MPORT" } = options;
  const deno = Deno.execPath();
  const allowNet = `--allow-net=127.0.0.1:${port}`;
  const allowRead = `--allow-read=${TLS_CERT},${TLS_KEY}`;
  const keyPair = [TLS_CERT, TLS_KEY];
  switch (name) {
    case "epoll":
      return [EPOLL_SERVER, String(port)];
    case "upcase":
    case "upcase-relay": {
      if (udp && name === "upcase") {
        return [
          ...[deno, "run", "--allow-net=127.0.0.1", "server.ts", "--udp"],
          ...["--host", "127.0.0.1", "--port", String(port), "--udp-rate", "0"],
        ];
      }
      const relay = name === "upcase-relay";
      const cmd = [deno, "run"];
      if (relay) cmd.push("--allow-net=127.0.0.1", allowRead);
      else if (tls) cmd.push(allowNet, allowRead, "--allow-ffi");
      else cmd.push(allowNet);
      cmd.push("server.ts", "--host", "127.0.0.1", "--port", String(port));
      if (env.upcaseMaxConns) cmd.push("--max-conns", String(UPCASE_MAX_CONNS));
      if (tls || relay) cmd.push("--cert", TLS_CERT, "--key", TLS_KEY);
      return cmd;
    }
    case "upcase-w2":
    case "upcase-metrics": {
      const metrics = `127.0.0.1:${metricsPort}`;
      const cmd = name === "upcase-w2"
        ? [deno, "run", allowNet, "--allow-read=src", "server.ts"]
        : [deno, "run", `${allowNet},${metrics}`, "server.ts"];
      cmd.push("--host", "127.0.0.1", "--port", String(port));
      if (env.upcaseMaxConns) cmd.push("--max-conns", String(UPCASE_MAX_CONNS));
      if (name === "upcase-w2") cmd.push("--workers", String(UPCASE_WORKERS));
      else cmd.push("--metrics", metrics);
      return cmd;
    }
    case "node":
      return ["node", "bench/peers/node_server.mjs", String(port)];
    case "deno-plain":
      return [
        deno,
        "run",
        allowNet,
        "bench/peers/deno_plain_server.ts",
        String(port),
      ];
    case "node-tls":
      return [
        "node",
        "bench/peers/node_tls_server.mjs",
        String(port),
        ...keyPair,
      ];
    case "deno-tls":
      return [
        ...[deno, "run", allowNet, allowRead],
        ...["bench/peers/deno_tls_server.ts", String(port), ...keyPair],
      ];
    case "c-tls":
      return [EPOLL_TLS_SERVER, String(port), ...keyPair];
    case "c-udp":
      return [UDP_SERVER, String(port)];
    case "node-udp":
      return ["node", "bench/peers/node_udp_server.mjs", String(port)];
    case "deno-udp":
    case "deno-node-udp":
      return [
        ...[deno, "run", "--allow-net=127.0.0.1"],
        name === "deno-udp"
          ? "bench/peers/deno_udp_server.ts"
          : "bench/peers/deno_node_udp_server.ts",
        String(port),
      ];
  }
}

/**
 * A command line as a reader would type it in the repository root: `deno`
 * for this Deno, paths relative to the root.
 *
 * @param command The program and its arguments, as
 * {@linkcode serverCommand} gives them.
 * @returns The words joined by spaces.
 */
export function showCommand(command: readonly string[]): string {
  return command
    .map((word) => word === Deno.execPath() ? "deno" : word)
    .map((word) => word.replaceAll(ROOT_DIR, ""))
    .join(" ");
}

/**
 * The note that says how upcase runs: each of its command lines that runs,
 * exactly, as {@linkcode showCommand} shows it.
 *
 * @param env What the probe found.
 * @param runs Whether a server runs a scenario of the kind.
 * @returns The note; undefined when upcase does not run.
 */
export function upcaseNote(
  env: Environment,
  runs: (name: ServerName, kind: ScenarioKind) => boolean,
): string | undefined {
  const line = (name: ServerName, kind: ScenarioKind = "plain") =>
    `\`${
      showCommand(
        serverCommand(name, "PORT", env, {
          tls: kind === "tls",
          udp: kind === "udp",
        }),
      )
    }\``;
  const said = [
    runs("upcase", "plain") && `upcase runs as ${line("upcase")}`,
    runs("upcase", "tls") &&
    `over TLS, upcase runs as ${line("upcase", "tls")} (--allow-ffi: a ` +
      "client that stalls its handshake is shut down through FFI)",
    runs("upcase", "udp") &&
    `over UDP, upcase runs as ${line("upcase", "udp")} ` +
      "(--allow-net=127.0.0.1, every port: Deno checks the destination of " +
      "each datagram sent; --udp-rate 0: no per-source rate limit, the " +
      "generator being one source)",
    runs("upcase-relay", "tls") &&
    `upcase-relay runs as ${line("upcase-relay", "tls")} (no --allow-ffi: ` +
      "every client is relayed to an in-process Deno.listenTls on " +
      "127.0.0.1:0, hence --allow-net=127.0.0.1)",
    runs("upcase-w2", "plain") &&
    `upcase-w2 runs as ${line("upcase-w2")} (${UPCASE_WORKERS} ` +
      "Worker threads in one process, each with its own SO_REUSEPORT " +
      "listener; --allow-read=src for the modules the Workers load; the " +
      `generator shares the ${navigator.hardwareConcurrency} cores with ` +
      "them)",
    runs("upcase-metrics", "plain") &&
    `upcase-metrics runs as ${line("upcase-metrics")} (MPORT a ` +
      "second free port; nothing scrapes /metrics during the runs)",
  ].filter((text) => text !== false);
  if (said.length === 0) return undefined;
  return `${said.join("; ")}. The logs go to bench/.build/logs/` +
    (env.upcaseMaxConns ? "." : " (server.ts has no --max-conns flag).");
}

/** A server that accepts connections. */
export interface RunningServer {
  child: Deno.ChildProcess;
  pid: number;
  exited: () => boolean;
}

/** Options for {@linkcode startServer}. */
export interface StartOptions {
  /**
   * Text the log must hold as well before the server counts as started,
   * as {@linkcode readyLine} gives it.
   *
   * @default {undefined}
   */
  readyLine?: string;
  /**
   * The server answers datagrams: nothing to connect to, so the ready line
   * alone says it is started (and must be given).
   *
   * @default {false}
   */
  udp?: boolean;
}

/**
 * Starts a server from the repository root with stdout and stderr going to
 * `log` (through `sh -c 'exec ...'`, so the PID is the server's own and the
 * driver copies no bytes), and waits until it accepts connections (not
 * over UDP) and, if asked, its log holds the ready line.
 *
 * @param command The program and its arguments.
 * @param port The port it listens on, on 127.0.0.1.
 * @param log The file its output goes to.
 * @param options The ready line; UDP.
 * @returns The server.
 * @throws {Error} When it exits or is not ready within 10 s.
 */
export async function startServer(
  command: string[],
  port: number,
  log: string,
  options: StartOptions = {},
): Promise<RunningServer> {
  // A run done again writes the same log: the last one's ready line must
  // not count for this one.
  await Deno.writeTextFile(log, "");
  const child = spawn("sh", [
    "-c",
    'log=$1; shift; exec "$@" >"$log" 2>&1',
    "sh",
    log,
    ...command,
  ], { cwd: ROOT_DIR, stdin: "null", stdout: "null", stderr: "null" });
  let done = false;
  child.status.then(() => done = true, () => done = true);
  const server = { child, pid: child.pid, exited: () => done };
  const deadline = Date.now() + START_TIMEOUT_MS;
  let accepting = options.udp === true;
  try {
    while (Date.now() < deadline && !done) {
      if (!accepting) {
        try {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          conn.close();
          accepting = true;
        } catch {
          await sleep(50);
          continue;
        }
      }
      const ready = options.readyLine;
      if (!ready || (await logText(log)).includes(ready)) return server;
      await sleep(50);
    }
  } catch (err: unknown) {
    await stopServer(server);
    throw err;
  }
  await stopServer(server);
  const what = accepting
    ? `No "${options.readyLine?.trim()}" in the log after 10 s`
    : "Not accepting after 10 s";
  throw new Error(`${done ? "Exited" : what}: ${await logTail(log)}`);
}

/**
 * Stops a server: SIGTERM, then SIGKILL after 3 s.
 *
 * @param server The server.
 */
export async function stopServer(server: RunningServer): Promise<void> {
  if (!server.exited()) {
    killQuietly(server.child, "SIGTERM");
    const stopped = await Promise.race([
      server.child.status.then(() => true),
      sleep(STOP_TIMEOUT_MS).then(() => false),
    ]);
    if (!stopped) killQuietly(server.child, "SIGKILL");
  }
  await server.child.status;
}

async function logText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) return "";
    throw err;
  }
}

async function logTail(path: string): Promise<string> {
  try {
    const text = (await Deno.readTextFile(path)).trim();
    return text.split("\n").slice(-3).join(" | ") || "(empty log)";
  } catch {
    return "(no log)";
  }
}
