// Copyright the upcase authors. MIT license.
/**
 * The servers under test: their command lines, and starting and stopping
 * one on a free loopback port.
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
} from "./_paths.ts";
import { killQuietly, sleep, spawn } from "./_process.ts";
import type { ServerName } from "./_settings.ts";

/** Passed to server.ts when its --help mentions the flag. */
export const UPCASE_MAX_CONNS = 20_000;
/** Longest wait for a server to accept its first connection. */
export const START_TIMEOUT_MS = 10_000;
/** Longest wait for a server to exit after SIGTERM, before SIGKILL. */
export const STOP_TIMEOUT_MS = 3_000;

/**
 * A free loopback port: bind port 0, read it, close.
 *
 * @returns The port.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * The command line of a server, run from the repository root.
 *
 * Over TLS, `upcase` has `--allow-ffi`, so server.ts frees stalled
 * handshakes with shutdown(2) on Deno.listenTls's own sockets;
 * `upcase-relay` has not, so server.ts relays each client to an in-process
 * Deno.listenTls on 127.0.0.1:0, which needs `--allow-net=127.0.0.1` (every
 * loopback port) rather than `127.0.0.1:PORT`.
 *
 * @param name The server.
 * @param port Its port on 127.0.0.1; `"PORT"` (or any text) for a note.
 * @param env What the probe found.
 * @param tls Whether `upcase` is to serve TLS (`upcase-relay` always does,
 * the other servers serve one kind only).
 * @returns The program and its arguments.
 */
export function serverCommand(
  name: ServerName,
  port: number | string,
  env: Environment,
  tls = false,
): string[] {
  const deno = Deno.execPath();
  const allowNet = `--allow-net=127.0.0.1:${port}`;
  const allowRead = `--allow-read=${TLS_CERT},${TLS_KEY}`;
  const keyPair = [TLS_CERT, TLS_KEY];
  switch (name) {
    case "epoll":
      return [EPOLL_SERVER, String(port)];
    case "upcase":
    case "upcase-relay": {
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
 * @param runs Whether a server runs a scenario of the kind (TLS or not).
 * @returns The note; undefined when upcase does not run.
 */
export function upcaseNote(
  env: Environment,
  runs: (name: ServerName, tls: boolean) => boolean,
): string | undefined {
  const line = (name: ServerName, tls: boolean) =>
    `\`${showCommand(serverCommand(name, "PORT", env, tls))}\``;
  const said = [
    runs("upcase", false) && `upcase runs as ${line("upcase", false)}`,
    runs("upcase", true) &&
    `over TLS, upcase runs as ${line("upcase", true)} (--allow-ffi: a ` +
      "client that stalls its handshake is shut down through FFI)",
    runs("upcase-relay", true) &&
    `upcase-relay runs as ${line("upcase-relay", true)} (no --allow-ffi: ` +
      "every client is relayed to an in-process Deno.listenTls on " +
      "127.0.0.1:0, hence --allow-net=127.0.0.1)",
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

/**
 * Starts a server from the repository root with stdout and stderr going to
 * `log` (through `sh -c 'exec ...'`, so the PID is the server's own and the
 * driver copies no bytes), and waits until it accepts connections.
 *
 * @param command The program and its arguments.
 * @param port The port it listens on, on 127.0.0.1.
 * @param log The file its output goes to.
 * @returns The server.
 * @throws {Error} When it exits or does not accept within 10 s.
 */
export async function startServer(
  command: string[],
  port: number,
  log: string,
): Promise<RunningServer> {
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
  while (Date.now() < deadline && !done) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return server;
    } catch {
      await sleep(50);
    }
  }
  await stopServer(server);
  throw new Error(
    `${done ? "Exited" : "Not accepting after 10 s"}: ${await logTail(log)}`,
  );
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

async function logTail(path: string): Promise<string> {
  try {
    const text = (await Deno.readTextFile(path)).trim();
    return text.split("\n").slice(-3).join(" | ") || "(empty log)";
  } catch {
    return "(no log)";
  }
}
