// Copyright the upcase authors. MIT license.
// Pieces the TLS scenarios share: test certificates made in a child process
// (`deno task stress` grants neither --allow-read nor --allow-write), server.ts
// with --cert/--key in either accept mode, what `ss` sees, and the first bytes
// of a ClientHello for clients that stall mid-handshake.
//
// Run as a program (`deno run --allow-read=DIR --allow-write=DIR
// --allow-run=openssl stress/_tls.ts DIR`) it writes tests/_certs.ts's
// certificates to DIR and prints the CA's certificate.

import type { ConnectTlsOptions } from "../mod.ts";
import { makeTestCerts } from "../tests/_certs.ts";
import { WatchedServer } from "./_util.ts";

/**
 * How the server frees stalled handshakes (src/_tls.ts): "relay" without
 * --allow-ffi, "shutdown" with it.
 */
export type TlsMode = "relay" | "shutdown";

/** Both modes, in the order the scenarios run them. */
export const TLS_MODES: readonly TlsMode[] = ["relay", "shutdown"];

/** Test certificates in a temporary folder, removed on dispose. */
export interface StressCerts extends AsyncDisposable {
  dir: string;
  /** The server's certificate chain file. */
  cert: string;
  /** Its key file. */
  key: string;
  /** The CA's certificate file. */
  ca: string;
  /** The client options that trust the CA. */
  tls: ConnectTlsOptions;
}

async function output(command: string, args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  if (!success) {
    throw new Error(
      `${command} ${args.join(" ")} failed: ${decoder.decode(stderr).trim()}`,
    );
  }
  return decoder.decode(stdout);
}

/**
 * Makes the test CA and a server certificate for 127.0.0.1 in a new
 * temporary folder, through `mktemp` and a `deno run` child that may write
 * only there (this process needs no more than `--allow-run`).
 *
 * @returns The paths, the CA as client options, and a dispose that removes
 *   the folder.
 * @throws {Error} When `openssl` or the child fails.
 */
export async function makeStressCerts(): Promise<StressCerts> {
  const dir = (await output("mktemp", ["-d", "-t", "upcase-stress-XXXXXX"]))
    .trim();
  const remove = () => output("rm", ["-rf", "--", dir]);
  try {
    const caPem = await output(Deno.execPath(), [
      "run",
      "--no-prompt",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
      "--allow-run=openssl",
      new URL(import.meta.url).pathname,
      dir,
    ]);
    return {
      dir,
      cert: `${dir}/server-chain.pem`,
      key: `${dir}/server.key`,
      ca: `${dir}/ca.pem`,
      tls: { caCerts: [caPem] },
      [Symbol.asyncDispose]: async () => {
        await remove();
      },
    };
  } catch (err: unknown) {
    await remove();
    throw err;
  }
}

/**
 * Starts `server.ts --cert --key ...args` with README's permissions for
 * `mode`: `--allow-net=127.0.0.1` (the relay connects to its inner
 * listener) or `--allow-net=127.0.0.1:0 --allow-ffi` (no relay could run).
 */
export async function startTlsServer(
  certs: StressCerts,
  mode: TlsMode,
  args: string[] = [],
): Promise<WatchedServer> {
  const read = `--allow-read=${certs.cert},${certs.key}`;
  const server = await WatchedServer.start(
    ["--cert", certs.cert, "--key", certs.key, ...args],
    mode === "relay"
      ? { allowNet: "127.0.0.1", flags: [read] }
      : { flags: [read, "--allow-ffi"] },
  );
  if (!server.log[0]?.startsWith("Accepting TLS connections on ")) {
    const first = server.log[0];
    // Killed and waited for: its pipes read to the end, its exit collected.
    await server[Symbol.asyncDispose]();
    throw new Error(`The server does not speak TLS: ${first}`);
  }
  return server;
}

/**
 * The Python interpreter of the clients Deno cannot be: ones that reset
 * (SO_LINGER 0) and ones that close while a TLS write is blocked.
 */
export const PYTHON = "/usr/bin/python3";

/** Whether {@linkcode PYTHON} runs here with its ssl module. */
export async function havePython(): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(PYTHON, {
      args: ["-c", "import ssl"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** Matches the log line of a connection that failed the TLS handshake. */
export const HANDSHAKE_FAILED_LINE = /^TLS handshake failed from /;

/**
 * How many TCP sockets on 127.0.0.1:`port` are in ESTABLISHED (or, with
 * `state`, another `ss` state filter), as `ss` sees them on the server's side.
 */
export async function socketsOnPort(
  port: number,
  state = "established",
): Promise<number> {
  const listing = await output("ss", [
    "-Htn",
    "state",
    state,
    `( sport = :${port} )`,
  ]);
  return listing.split("\n").filter((line) => line.trim() !== "").length;
}

/**
 * The number in the summary's ", N failed the TLS handshake", 0 without it.
 *
 * @throws {Error} When `stdout` has no summary line.
 */
export function failedHandshakes(stdout: string): number {
  const line = /^Served .*$/m.exec(stdout)?.[0];
  if (line === undefined) throw new Error("The server printed no summary line");
  return Number(/, (\d+) failed the TLS handshake/.exec(line)?.[1] ?? 0);
}

/**
 * The first bytes of a TLS 1.2/1.3 ClientHello record: the record header
 * (handshake, 512 bytes to come), the handshake header (ClientHello), the
 * legacy version and the start of the random. A client that sends these and
 * no more leaves the server waiting in the middle of a record.
 */
export const CLIENT_HELLO_START: Uint8Array = new Uint8Array([
  0x16,
  0x03,
  0x01,
  0x02,
  0x00,
  0x01,
  0x00,
  0x01,
  0xfc,
  0x03,
  0x03,
  ...Array.from({ length: 29 }, (_, i) => (i * 37 + 11) & 0xff),
]);

if (import.meta.main) {
  const dir = Deno.args[0];
  if (dir === undefined) {
    console.error("Usage: deno run ... stress/_tls.ts DIR");
    Deno.exit(2);
  }
  const made = await makeTestCerts(dir);
  console.log(await Deno.readTextFile(made.ca));
}
