#!/usr/bin/env -S deno run --allow-net=0.0.0.0:6666
// Copyright the upcase authors. MIT license.
/**
 * The upcase server: every byte a client sends comes back upper-cased.
 *
 * ```sh
 * deno run --allow-net=0.0.0.0:6666 server.ts
 * ```
 *
 * @module
 */

import { format as formatBytes } from "@std/fmt/bytes";
import { format as formatDuration } from "@std/fmt/duration";
import { MAXLINE, SERV_PORT, SERVER_HOST } from "./constants.ts";
import { serve, type Server } from "./serve.ts";
import {
  CliError,
  EXIT,
  EXIT_CODES_HELP,
  explainNetworkError,
  joinHostPort,
  parseFlags,
  parseHost,
  parsePort,
  run,
} from "./_cli.ts";
import { formatEvent, LineWriter } from "./_log.ts";
import { VERSION } from "./version.ts";

/** The server's command-line options, validated. */
export interface ServerCliOptions {
  hostname: string;
  port: number;
  once: boolean;
  help: boolean;
  version: boolean;
}

/** Grace period after SIGINT or SIGTERM, in milliseconds. */
const GRACE_MS = 10_000;

/**
 * Parses and validates the server's arguments.
 *
 * @param args The command-line arguments.
 * @returns The options, with defaults filled in.
 * @throws {CliError} For an unknown flag or a bad value.
 */
export function parseServerArgs(args: string[]): ServerCliOptions {
  const flags = parseFlags(args, {
    string: ["host", "port"],
    boolean: ["once", "help", "version"],
    alias: { h: "help", V: "version" },
  });
  if (flags._.length > 0) {
    throw new CliError(
      `Unexpected argument: "${flags._[0]}" (see --help)`,
      EXIT.USAGE,
    );
  }
  return {
    hostname: parseHost(flags.host, SERVER_HOST),
    port: parsePort(flags.port, SERV_PORT),
    once: flags.once === true,
    help: flags.help === true,
    version: flags.version === true,
  };
}

function printUsage(): void {
  console.log(`upcase server ${VERSION}
Every byte a client sends comes back with a-z upper-cased, until it half-closes.

Usage:
  deno run --allow-net=HOST:PORT server.ts [options]

Options:
  --host HOST   address to listen on (default ${SERVER_HOST}, all IPv4 interfaces)
  --port PORT   TCP port, 0 for any free one (default ${SERV_PORT})
  --once        the seed's server.c: one read of at most ${MAXLINE} bytes, reply, close
  -h, --help    show this help
  -V, --version show the version

The --allow-net permission must name the same HOST:PORT, e.g.
  deno run --allow-net=0.0.0.0:${SERV_PORT} server.ts

SIGINT (Ctrl-C) or SIGTERM: stop accepting, let open connections finish for
${
    GRACE_MS / 1000
  } s, print a summary, exit 0. A second signal closes them at once.

${EXIT_CODES_HELP}`);
}

async function main(): Promise<number> {
  const options = parseServerArgs(Deno.args);
  if (options.help) {
    printUsage();
    return EXIT.OK;
  }
  if (options.version) {
    console.log(`upcase server ${VERSION}`);
    return EXIT.OK;
  }
  const log = new LineWriter(Deno.stdout);
  const started = Date.now();
  let server: Server;
  try {
    server = serve({
      hostname: options.hostname,
      port: options.port,
      once: options.once,
      onEvent: (event) => log.write(formatEvent(event)),
    });
  } catch (err: unknown) {
    throw explainNetworkError(err, { action: "listen", ...options });
  }
  log.flush();
  let signals = 0;
  const stop = () => {
    signals++;
    if (signals === 1) {
      log.write(
        `Shutting down: waiting up to ${
          GRACE_MS / 1000
        } s for open connections`,
      );
    }
    server.shutdown({ grace: signals === 1 ? GRACE_MS : 0 });
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  const stats = server.stats;
  log.write(
    `Served ${stats.accepted} connections on ${
      joinHostPort(server.addr.hostname, server.addr.port)
    }: ${formatBytes(stats.bytesIn)} in, ${
      formatBytes(stats.bytesOut)
    } out, ${stats.errors} errors, up ${
      formatDuration(Date.now() - started, { ignoreZero: true }) || "0ms"
    }`,
  );
  log.flush();
  return EXIT.OK;
}

if (import.meta.main) run(main);
