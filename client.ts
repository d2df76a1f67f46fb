#!/usr/bin/env -S deno run --allow-net=127.0.0.1:6666
// Copyright the upcase authors. MIT license.
/**
 * The upcase client: sends a message, prints the server's reply.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1:6666 client.ts "hello, world"
 * ```
 *
 * @module
 */

import { CLIENT_HOST, MAXLINE, SERV_PORT } from "./constants.ts";
import { connect, exchange } from "./request.ts";
import {
  CliError,
  EXIT,
  EXIT_CODES_HELP,
  explainNetworkError,
  parseFlags,
  parseHost,
  parsePort,
  printWarning,
  run,
} from "./_cli.ts";
import { closeQuietly, writeAll } from "./_io.ts";
import { VERSION } from "./version.ts";

/** The client's command-line options, validated. */
export interface ClientCliOptions {
  hostname: string;
  port: number;
  /** The message; undefined when none was given. */
  message: string | undefined;
  help: boolean;
  version: boolean;
}

/** The seed's usage line, printed when the message is missing. */
const SEED_USAGE = "usage: ./client message";

/**
 * Parses and validates the client's arguments.
 *
 * @param args The command-line arguments.
 * @returns The options, with defaults filled in.
 * @throws {CliError} For an unknown flag, a bad value or extra arguments.
 */
export function parseClientArgs(args: string[]): ClientCliOptions {
  const flags = parseFlags(args, {
    string: ["host", "port"],
    boolean: ["help", "version"],
    alias: { h: "help", V: "version" },
  });
  if (flags._.length > 1) {
    throw new CliError(
      `Too many arguments: quote the message as one argument, e.g. "${
        flags._.join(" ")
      }"`,
      EXIT.USAGE,
    );
  }
  return {
    hostname: parseHost(flags.host, CLIENT_HOST),
    port: parsePort(flags.port, SERV_PORT),
    message: flags._[0],
    help: flags.help === true,
    version: flags.version === true,
  };
}

function printUsage(): void {
  console.log(`upcase client ${VERSION}
Sends MESSAGE to an upcase server, half-closes, and prints the reply.

Usage:
  deno run --allow-net=HOST:PORT client.ts [options] MESSAGE

Options:
  --host HOST   server host name or address (default ${CLIENT_HOST})
  --port PORT   server TCP port (default ${SERV_PORT})
  -h, --help    show this help
  -V, --version show the version

The --allow-net permission must name the same HOST:PORT, e.g.
  deno run --allow-net=${CLIENT_HOST}:${SERV_PORT} client.ts "hello, world"

Output: "Response from server:", then the reply and a newline. A reply
shorter than the message (the seed's server.c reads at most ${MAXLINE} bytes)
is printed as it came, with a warning on stderr.

${EXIT_CODES_HELP}`);
}

async function main(): Promise<number> {
  const options = parseClientArgs(Deno.args);
  if (options.help) {
    printUsage();
    return EXIT.OK;
  }
  if (options.version) {
    console.log(`upcase client ${VERSION}`);
    return EXIT.OK;
  }
  if (options.message === undefined) {
    console.error(SEED_USAGE);
    return EXIT.USAGE;
  }
  const message = new TextEncoder().encode(options.message);
  let conn: Deno.Conn;
  try {
    conn = await connect(options);
  } catch (err: unknown) {
    throw explainNetworkError(err, { action: "connect", ...options });
  }
  const reply: Uint8Array[] = [];
  let result;
  try {
    result = await exchange(conn, [message], (chunk) => {
      reply.push(chunk.slice());
    });
  } catch (err: unknown) {
    throw explainNetworkError(err, { action: "connect", ...options });
  } finally {
    closeQuietly(conn);
  }
  if (result.received === 0 && message.length > 0) {
    throw new CliError(
      "Server closed the connection before replying",
      EXIT.CONNECTION_LOST,
    );
  }
  await writeAll(
    Deno.stdout,
    new TextEncoder().encode("Response from server:\n"),
  );
  for (const chunk of reply) await writeAll(Deno.stdout, chunk);
  await writeAll(Deno.stdout, new Uint8Array([0x0a]));
  if (result.received < message.length) {
    printWarning(
      `Reply truncated: got ${result.received} of ${message.length} bytes; the server closed early (the seed's server.c reads at most ${MAXLINE})`,
    );
  }
  return EXIT.OK;
}

if (import.meta.main) run(main);
