// Copyright the upcase authors. MIT license.
// The client's command line: its options, their defaults in one place, and
// their validation. Internal.

import { CLIENT_HOST, SERV_PORT } from "./constants.ts";
import {
  type ConnectTlsOptions,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
} from "./request.ts";
import { type LoadMode } from "./load.ts";
import {
  CliError,
  EXIT,
  optionalString,
  parseChoice,
  parseCount,
  parseFlags,
  parseHost,
  parsePort,
  parseSeconds,
  parseUnixPath,
  refuseConflicts,
  requirePair,
} from "./_cli.ts";

/** --udp: how long each datagram waits for its reply, by default. */
export const DEFAULT_UDP_TIMEOUT_MS = 2_000;
/** --udp: how many times a datagram is sent again, by default. */
export const DEFAULT_UDP_RETRIES = 2;
/** --udp with `-`: the largest datagram, by default (one Ethernet frame). */
export const DEFAULT_UDP_SIZE = 1_472;
/** The largest UDP payload over IPv6 (IPv4's is 65,507). */
export const MAX_UDP_SIZE = 65_527;

/** The client's command-line options, validated. */
export interface ClientCliOptions {
  /** Server host name or address. */
  hostname: string;
  /** Server TCP port. */
  port: number;
  /** A Unix socket path to connect to instead of TCP. */
  unix: string | undefined;
  /** The message; `-` for stdin; undefined when none was given. */
  message: string | undefined;
  /** The question-and-answer loop: one line of stdin per request. */
  interactive: boolean;
  /** Connect and reply time limit in milliseconds; 0 for none. */
  timeout: number;
  /** Only the reply: no header line, no warnings. */
  quiet: boolean;
  /** Load-generator mode, or undefined for a normal exchange. */
  bench: LoadMode | undefined;
  /** --bench: connections in flight; 0 for the mode's default. */
  connections: number;
  /** --bench: how long, in milliseconds. */
  duration: number;
  /** --bench: bytes per message or write; 0 for the mode's default. */
  size: number;
  /** --bench: the report as JSON. */
  json: boolean;
  /** Speak TLS. */
  tls: boolean;
  /** --tls: a PEM file of a CA to trust on top of the default roots. */
  ca: string | undefined;
  /** --tls: the name sent (SNI) and checked; the host by default. */
  servername: string | undefined;
  /** --tls: a client certificate (PEM) to present. */
  cert: string | undefined;
  /** --tls: the client certificate's key (PEM). */
  key: string | undefined;
  /** --tls: the handshake's time limit in milliseconds; 0 for none. */
  handshakeTimeout: number;
  /** Trace each socket call on stderr. */
  trace: boolean;
  /** Send a PROXY protocol header of this version first. */
  proxyProtocol: 1 | 2 | undefined;
  /** Speak UDP: datagrams instead of a connection. */
  udp: boolean;
  /** --udp: datagrams sent again after a timeout before giving up. */
  retries: number;
  /** --tls: the options for connect(), with the files' contents. */
  tlsConnect: ConnectTlsOptions | undefined;
  help: boolean;
  version: boolean;
}

/** Every option's default, in one place. */
export const CLIENT_DEFAULTS: Readonly<ClientCliOptions> = {
  hostname: CLIENT_HOST,
  port: SERV_PORT,
  unix: undefined,
  message: undefined,
  interactive: false,
  timeout: 0,
  quiet: false,
  bench: undefined,
  connections: 0,
  duration: 10_000,
  size: 0,
  json: false,
  tls: false,
  ca: undefined,
  servername: undefined,
  cert: undefined,
  key: undefined,
  handshakeTimeout: DEFAULT_HANDSHAKE_TIMEOUT_MS,
  tlsConnect: undefined,
  trace: false,
  proxyProtocol: undefined,
  udp: false,
  retries: DEFAULT_UDP_RETRIES,
  help: false,
  version: false,
};

/** The seed's usage line, printed when the message is missing. */

/**
 * Parses and validates the client's arguments.
 *
 * @param args The command-line arguments.
 * @returns The options, with defaults filled in.
 * @throws {CliError} For an unknown flag, a bad value or extra arguments.
 */
export function parseClientArgs(args: string[]): ClientCliOptions {
  const flags = parseFlags(args, {
    string: [
      "host",
      "port",
      "unix",
      "timeout",
      "bench",
      "connections",
      "duration",
      "size",
      "ca",
      "servername",
      "cert",
      "key",
      "handshake-timeout",
      "proxy-protocol",
      "retries",
    ],
    boolean: [
      "udp",
      "interactive",
      "quiet",
      "json",
      "tls",
      "trace",
      "help",
      "version",
    ],
    alias: { i: "interactive", q: "quiet", h: "help", V: "version" },
  });
  if (flags._.length > 1) {
    throw new CliError(
      `Too many arguments: quote the message as one argument, e.g. "${
        flags._.join(" ")
      }"`,
      EXIT.USAGE,
    );
  }
  const d = CLIENT_DEFAULTS;
  const options: ClientCliOptions = {
    hostname: parseHost(flags.host, d.hostname),
    port: parsePort(flags.port, d.port, 1),
    unix: parseUnixPath(flags.unix) ?? d.unix,
    message: flags._[0] ?? d.message,
    interactive: flags.interactive === true,
    timeout: parseSeconds("timeout", flags.timeout, d.timeout),
    quiet: flags.quiet === true,
    bench: flags.bench === undefined
      ? d.bench
      : parseChoice<LoadMode>("bench", flags.bench, [
        "rtt",
        "stream",
        "oneshot",
      ]),
    connections: parseCount("connections", flags.connections, d.connections),
    duration: parseSeconds("duration", flags.duration, d.duration),
    size: parseCount("size", flags.size, d.size),
    json: flags.json === true,
    tls: flags.tls === true,
    ca: optionalString(flags.ca),
    servername: optionalString(flags.servername),
    cert: optionalString(flags.cert),
    key: optionalString(flags.key),
    handshakeTimeout: parseSeconds(
      "handshake-timeout",
      flags["handshake-timeout"],
      d.handshakeTimeout,
    ),
    tlsConnect: d.tlsConnect,
    trace: flags.trace === true,
    proxyProtocol: flags["proxy-protocol"] === undefined
      ? d.proxyProtocol
      : parseChoice("proxy-protocol", flags["proxy-protocol"], ["v1", "v2"]) ===
          "v1"
      ? 1
      : 2,
    udp: flags.udp === true,
    retries: parseCount("retries", flags.retries, d.retries),
    help: flags.help === true,
    version: flags.version === true,
  };
  if (options.udp) {
    checkUdpFlags(options, flags);
    // UDP has no EOF: without a limit a lost datagram would wait for ever.
    if (flags.timeout === undefined) options.timeout = DEFAULT_UDP_TIMEOUT_MS;
    if (flags.size === undefined && options.bench === undefined) {
      options.size = DEFAULT_UDP_SIZE;
    }
  } else if (flags.retries !== undefined) {
    throw new CliError(
      "Conflicting flags: --retries goes with --udp",
      EXIT.USAGE,
    );
  }
  const benchOnly = ["connections", "duration", "size", "json"]
    .find((name) =>
      flags[name] !== undefined && flags[name] !== false &&
      !(name === "size" && options.udp)
    );
  if (options.bench === undefined && benchOnly !== undefined) {
    throw new CliError(
      `Conflicting flags: --${benchOnly} goes with --bench MODE`,
      EXIT.USAGE,
    );
  }
  if (
    options.bench !== undefined &&
    (options.interactive || options.message !== undefined)
  ) {
    throw new CliError(
      "Conflicting arguments: --bench sends its own messages; leave out MESSAGE, - and -i",
      EXIT.USAGE,
    );
  }
  if (
    options.unix !== undefined &&
    (flags.host !== undefined || flags.port !== undefined)
  ) {
    throw new CliError(
      "Conflicting flags: --unix cannot be combined with --host or --port",
      EXIT.USAGE,
    );
  }
  const tlsOnly = ["ca", "servername", "cert", "key", "handshake-timeout"]
    .find((name) => flags[name] !== undefined);
  if (!options.tls && tlsOnly !== undefined) {
    throw new CliError(
      `Conflicting flags: --${tlsOnly} goes with --tls`,
      EXIT.USAGE,
    );
  }
  if (options.trace && options.bench !== undefined) {
    throw new CliError(
      "Conflicting flags: --trace follows one connection and cannot be combined with --bench",
      EXIT.USAGE,
    );
  }
  if (options.trace && options.quiet) {
    throw new CliError(
      "Conflicting flags: --trace cannot be combined with --quiet",
      EXIT.USAGE,
    );
  }
  if (options.proxyProtocol !== undefined && options.unix !== undefined) {
    throw new CliError(
      "Conflicting flags: --proxy-protocol cannot be combined with --unix",
      EXIT.USAGE,
    );
  }
  if (options.proxyProtocol !== undefined && options.cert !== undefined) {
    throw new CliError(
      "Conflicting flags: Deno cannot send a PROXY header before TLS with a client certificate (--cert)",
      EXIT.USAGE,
    );
  }
  if (options.tls && options.unix !== undefined) {
    throw new CliError(
      "Conflicting flags: --tls cannot be combined with --unix",
      EXIT.USAGE,
    );
  }
  requirePair(options, "cert", "key");
  if (options.cert !== undefined && options.servername !== undefined) {
    throw new CliError(
      "Conflicting flags: Deno cannot send a client certificate (--cert) with another --servername; connect with --host NAME instead",
      EXIT.USAGE,
    );
  }
  if (options.interactive && options.message !== undefined) {
    throw new CliError(
      `Conflicting arguments: --interactive reads its lines from stdin, not "${options.message}"`,
      EXIT.USAGE,
    );
  }
  return options;
}

/**
 * The flags that cannot go with `--udp`.
 *
 * @throws {CliError} Naming the first one given.
 */
function checkUdpFlags(
  options: ClientCliOptions,
  flags: Record<string, unknown>,
): void {
  const conflicts: [boolean, string][] = [
    [options.tls, "--tls: DTLS is not supported"],
    [options.unix !== undefined, "--unix: UDP goes to an IP address"],
    [
      options.proxyProtocol !== undefined,
      "--proxy-protocol: PROXY headers are for TCP",
    ],
    [
      options.bench !== undefined && options.bench !== "rtt",
      `--bench ${options.bench}: only rtt has a UDP form`,
    ],
  ];
  refuseConflicts("--udp", conflicts);
  if (
    flags.size !== undefined &&
    !(options.size >= 1 && options.size <= MAX_UDP_SIZE)
  ) {
    throw new CliError(
      `Invalid --size: "${flags.size}": a datagram holds 1 to ${MAX_UDP_SIZE} bytes`,
      EXIT.USAGE,
    );
  }
  if (options.timeout === 0 && flags.timeout !== undefined) {
    throw new CliError(
      'Invalid --timeout: "0": UDP has no EOF, so a lost datagram would be waited for for ever',
      EXIT.USAGE,
    );
  }
}
