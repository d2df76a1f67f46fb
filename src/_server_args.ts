// Copyright the upcase authors. MIT license.
// The server's command line: its options, their defaults in one place, and
// their validation. Internal.

import { SERV_PORT, SERVER_HOST } from "./constants.ts";
import {
  DEFAULT_BACKLOG,
  DEFAULT_GRACE_MS,
  DEFAULT_PROXY_TIMEOUT_MS,
  DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS,
} from "./serve.ts";
import { parseCidrs } from "./_cidr.ts";
import { DEFAULT_UDP_RATE } from "./_udp_guard.ts";
import { FaultSpecError, parseFault } from "./_fault_spec.ts";
import {
  CliError,
  EXIT,
  joinHostPort,
  optionalString,
  parseChoice,
  parseCount,
  parseFlags,
  parseHost,
  parseHostPort,
  parsePort,
  parseSeconds,
  parseUnixPath,
  refuseConflicts,
  requirePair,
} from "./_cli.ts";
import { type LogFormat } from "./_log.ts";

/** The server's command-line options, validated. */
export interface ServerCliOptions {
  /** TCP address to listen on. */
  hostname: string;
  /** TCP port. */
  port: number;
  /** A Unix socket path to listen on instead of TCP. */
  unix: string | undefined;
  /** The seed's one-read mode. */
  once: boolean;
  /** Unicode upper-casing instead of ASCII. */
  unicode: boolean;
  /** Connections served at once; 0 for no limit. */
  maxConns: number;
  /** Close connections idle this long, in milliseconds; 0 for never. */
  idleTimeout: number;
  /** Shutdown drain time, in milliseconds. */
  grace: number;
  /** A PEM certificate (chain) file: TLS on, with {@linkcode key}. */
  cert: string | undefined;
  /** The certificate's PEM private key file. */
  key: string | undefined;
  /** TLS: close a client whose handshake is not done by then, in ms; 0: never. */
  handshakeTimeout: number;
  /** Worker threads, each with its own listener on the address. */
  workers: number;
  /** Where to serve /metrics and /healthz, if anywhere. */
  metrics: { hostname: string; port: number } | undefined;
  /** Expect a PROXY protocol header on every connection. */
  proxyProtocol: boolean;
  /** --proxy-protocol: the peers (CIDR ranges) that may connect; [] for any. */
  proxyFrom: string[];
  /** --proxy-protocol: the header's deadline, in milliseconds. */
  proxyTimeout: number;
  /** At SIGINT/SIGTERM: keep serving this long (ms) with /healthz at 503. */
  drainDelay: number;
  /** Leave out the per-connection log lines. */
  quiet: boolean;
  /** Log each socket call of each connection. */
  trace: boolean;
  /** `--fault` specs, validated, as written. */
  faults: string[];
  /** The faults' seed; a random one when undefined. */
  faultSeed: number | undefined;
  /** The listen queue's length (Deno.listen's `tcpBacklog`). */
  backlog: number;
  /** PUT and DELETE /faults on the metrics address change the faults. */
  faultApi: boolean;
  /** Serve datagrams (UDP) instead of TCP. */
  udp: boolean;
  /** --udp: replies per second to one source address; 0 for no limit. */
  udpRate: number;
  logFormat: LogFormat;
  help: boolean;
  version: boolean;
}

/** The most --workers. */
export const MAX_WORKERS = 256;

/** Every option's default, in one place. */
export const SERVER_DEFAULTS: Readonly<ServerCliOptions> = {
  hostname: SERVER_HOST,
  port: SERV_PORT,
  unix: undefined,
  once: false,
  unicode: false,
  maxConns: 0,
  idleTimeout: 0,
  grace: DEFAULT_GRACE_MS,
  cert: undefined,
  key: undefined,
  handshakeTimeout: DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS,
  workers: 1,
  metrics: undefined,
  proxyProtocol: false,
  proxyFrom: [],
  proxyTimeout: DEFAULT_PROXY_TIMEOUT_MS,
  drainDelay: 0,
  quiet: false,
  trace: false,
  faults: [],
  faultSeed: undefined,
  backlog: DEFAULT_BACKLOG,
  faultApi: false,
  udp: false,
  udpRate: DEFAULT_UDP_RATE,
  logFormat: "text",
  help: false,
  version: false,
};

/**
 * Parses and validates the server's arguments.
 *
 * @param args The command-line arguments.
 * @returns The options, with defaults filled in.
 * @throws {CliError} For an unknown flag, a bad value or a conflict.
 */
export function parseServerArgs(args: string[]): ServerCliOptions {
  const flags = parseFlags(args, {
    string: [
      "host",
      "port",
      "unix",
      "max-conns",
      "idle-timeout",
      "grace",
      "log-format",
      "cert",
      "key",
      "handshake-timeout",
      "workers",
      "metrics",
      "proxy-from",
      "proxy-timeout",
      "drain-delay",
      "fault",
      "fault-seed",
      "backlog",
      "udp-rate",
    ],
    collect: ["fault"],
    boolean: [
      "once",
      "unicode",
      "quiet",
      "trace",
      "proxy-protocol",
      "fault-api",
      "udp",
      "help",
      "version",
    ],
    alias: { h: "help", V: "version", q: "quiet" },
  });
  if (flags._.length > 0) {
    throw new CliError(
      `Unexpected argument: "${flags._[0]}" (see --help)`,
      EXIT.USAGE,
    );
  }
  const d = SERVER_DEFAULTS;
  const options: ServerCliOptions = {
    hostname: parseHost(flags.host, d.hostname),
    port: parsePort(flags.port, d.port),
    unix: parseUnixPath(flags.unix) ?? d.unix,
    once: flags.once === true,
    unicode: flags.unicode === true,
    maxConns: parseCount("max-conns", flags["max-conns"], d.maxConns),
    idleTimeout: parseSeconds(
      "idle-timeout",
      flags["idle-timeout"],
      d.idleTimeout,
    ),
    grace: parseSeconds("grace", flags.grace, d.grace),
    cert: optionalString(flags.cert),
    key: optionalString(flags.key),
    handshakeTimeout: parseSeconds(
      "handshake-timeout",
      flags["handshake-timeout"],
      d.handshakeTimeout,
    ),
    workers: parseWorkers(flags.workers, d.workers),
    metrics: parseHostPort("metrics", flags.metrics, d.metrics),
    proxyProtocol: flags["proxy-protocol"] === true,
    proxyFrom: parseProxyFrom(flags["proxy-from"], d.proxyFrom),
    proxyTimeout: parseSeconds(
      "proxy-timeout",
      flags["proxy-timeout"],
      d.proxyTimeout,
    ),
    drainDelay: parseSeconds("drain-delay", flags["drain-delay"], d.drainDelay),
    quiet: flags.quiet === true,
    trace: flags.trace === true,
    faults: parseFaults(flags.fault),
    faultSeed: parseFaultSeed(flags["fault-seed"]),
    backlog: parseBacklog(flags.backlog, d.backlog),
    faultApi: flags["fault-api"] === true,
    udp: flags.udp === true,
    udpRate: parseCount("udp-rate", flags["udp-rate"], d.udpRate),
    logFormat: parseChoice("log-format", flags["log-format"], [
      "text",
      "json",
    ]),
    help: flags.help === true,
    version: flags.version === true,
  };
  if (
    options.unix !== undefined &&
    (flags.host !== undefined || flags.port !== undefined)
  ) {
    throw new CliError(
      "Conflicting flags: --unix cannot be combined with --host or --port",
      EXIT.USAGE,
    );
  }
  requirePair(options, "cert", "key");
  if (options.cert === undefined && flags["handshake-timeout"] !== undefined) {
    throw new CliError(
      "Conflicting flags: --handshake-timeout goes with --cert and --key",
      EXIT.USAGE,
    );
  }
  if (options.cert !== undefined && options.unix !== undefined) {
    throw new CliError(
      "Conflicting flags: --cert and --key (TLS) cannot be combined with --unix",
      EXIT.USAGE,
    );
  }
  if (options.trace && options.quiet) {
    throw new CliError(
      "Conflicting flags: --trace logs every socket call and cannot be combined with --quiet",
      EXIT.USAGE,
    );
  }
  if (flags["proxy-from"] !== undefined && !options.proxyProtocol) {
    throw new CliError(
      "Conflicting flags: --proxy-from goes with --proxy-protocol",
      EXIT.USAGE,
    );
  }
  if (flags["proxy-timeout"] !== undefined && !options.proxyProtocol) {
    throw new CliError(
      "Conflicting flags: --proxy-timeout goes with --proxy-protocol",
      EXIT.USAGE,
    );
  }
  if (flags["proxy-from"] !== undefined && options.unix !== undefined) {
    throw new CliError(
      "Conflicting flags: --proxy-from cannot be combined with --unix (a Unix socket peer has no address)",
      EXIT.USAGE,
    );
  }
  if (options.proxyProtocol && options.proxyTimeout === 0) {
    throw new CliError(
      'Invalid --proxy-timeout: "0": the header needs some time to arrive',
      EXIT.USAGE,
    );
  }
  if (options.unix !== undefined && options.workers > 1) {
    throw new CliError(
      "Conflicting flags: --workers cannot be combined with --unix (a Unix socket has one listener)",
      EXIT.USAGE,
    );
  }
  if (
    options.metrics !== undefined && options.unix === undefined &&
    options.metrics.port === options.port && options.port !== 0 &&
    (options.metrics.hostname === options.hostname ||
      isWildcard(options.metrics.hostname) || isWildcard(options.hostname))
  ) {
    throw new CliError(
      `Conflicting flags: --metrics ${
        joinHostPort(options.metrics.hostname, options.metrics.port)
      } is the server's own address`,
      EXIT.USAGE,
    );
  }
  if (options.unix !== undefined && flags.backlog !== undefined) {
    throw new CliError(
      "Conflicting flags: --backlog is for TCP and cannot be combined with --unix",
      EXIT.USAGE,
    );
  }
  if (options.faultApi && options.metrics === undefined) {
    throw new CliError(
      "Conflicting flags: --fault-api serves PUT and DELETE /faults on the --metrics address: give --metrics",
      EXIT.USAGE,
    );
  }
  if (
    options.faultSeed !== undefined && options.faults.length === 0 &&
    !options.faultApi
  ) {
    throw new CliError(
      "Conflicting flags: --fault-seed goes with --fault or --fault-api",
      EXIT.USAGE,
    );
  }
  if (options.udp) checkUdpFlags(options, flags);
  else if (flags["udp-rate"] !== undefined) {
    throw new CliError(
      "Conflicting flags: --udp-rate goes with --udp",
      EXIT.USAGE,
    );
  }
  if (options.once && options.unicode) {
    throw new CliError(
      "Conflicting flags: --once is the seed's ASCII behaviour and cannot be combined with --unicode",
      EXIT.USAGE,
    );
  }
  return options;
}

/**
 * The flags that cannot go with `--udp`, each with the reason in one line.
 *
 * @throws {CliError} Naming the first one given.
 */
function checkUdpFlags(
  options: ServerCliOptions,
  flags: Record<string, unknown>,
): void {
  const conflicts: [boolean, string][] = [
    [
      options.unicode,
      "--unicode: a Unicode reply can be longer than its request, past the largest datagram, and a reply larger than the request is what a reflection attack wants",
    ],
    [
      options.workers > 1,
      "--workers: Deno's UDP socket has no SO_REUSEPORT, so a second Worker could not share the port",
    ],
    [options.cert !== undefined, "--cert and --key: DTLS is not supported"],
    [options.proxyProtocol, "--proxy-protocol: PROXY headers are for TCP"],
    [options.unix !== undefined, "--unix: upcase serves UDP on an IP address"],
    [
      flags["max-conns"] !== undefined,
      "--max-conns: UDP has no connections (--udp-rate limits each source)",
    ],
    [
      flags["idle-timeout"] !== undefined,
      "--idle-timeout: UDP has no connections to close",
    ],
    [
      flags.grace !== undefined,
      "--grace: a datagram has nothing to finish; the server stops at once",
    ],
    [flags.backlog !== undefined, "--backlog: UDP has no accept queue"],
    [
      options.faults.length > 0 || options.faultApi,
      "--fault and --fault-api: the faults are TCP's",
    ],
  ];
  refuseConflicts("--udp", conflicts);
}

/**
 * Validates each `--fault KIND[:KEY=VALUE,...]`.
 *
 * @param value The flag's texts (an array, as it may be repeated).
 * @returns The specs as written.
 * @throws {CliError} Naming the bad part of the first bad spec.
 */
function parseFaults(value: unknown): string[] {
  if (value === undefined) return [];
  const specs = (Array.isArray(value) ? value : [value]).map(String);
  for (const spec of specs) {
    try {
      parseFault(spec);
    } catch (err: unknown) {
      if (!(err instanceof FaultSpecError)) throw err;
      throw new CliError(err.message, EXIT.USAGE);
    }
  }
  return specs;
}

/**
 * Validates `--fault-seed`: an unsigned 32-bit integer.
 *
 * @param value The flag's text, or undefined when not given.
 * @returns The seed, or undefined.
 * @throws {CliError} For anything else.
 */
function parseFaultSeed(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  const seed = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
  if (!(seed >= 0 && seed <= 0xffffffff)) {
    throw new CliError(
      `Invalid --fault-seed: "${text}" is not a whole number from 0 to 4294967295`,
      EXIT.USAGE,
    );
  }
  return seed;
}

/**
 * Validates `--backlog`: the listen queue, from 1 to 65535.
 *
 * @param value The flag's text, or undefined when not given.
 * @param fallback The length when the flag is absent.
 * @returns The length.
 * @throws {CliError} For anything else.
 */
function parseBacklog(value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) {
    throw new CliError(
      `Invalid --backlog: "${text}" is not a whole number from 1 to 65535`,
      EXIT.USAGE,
    );
  }
  return n;
}

/**
 * Validates `--proxy-from CIDR[,CIDR...]`.
 *
 * @param value The flag's text, or undefined when not given.
 * @param fallback The ranges when the flag is absent.
 * @returns The ranges as written.
 * @throws {CliError} For a range that is not CIDR.
 */
function parseProxyFrom(value: unknown, fallback: string[]): string[] {
  if (value === undefined) return fallback;
  const text = String(value);
  try {
    parseCidrs(text);
  } catch (err: unknown) {
    if (!(err instanceof RangeError)) throw err;
    throw new CliError(`Invalid --proxy-from: ${err.message}`, EXIT.USAGE);
  }
  return text.split(",").map((item) => item.trim());
}

/** The addresses that mean "every interface". */
function isWildcard(hostname: string): boolean {
  return hostname === "0.0.0.0" || hostname === "::";
}

/**
 * Validates `--workers`: a count from 1 to 256, or `auto` (the CPUs).
 *
 * @param value The flag's text, or undefined when not given.
 * @param fallback The count when the flag is absent.
 * @returns The count.
 * @throws {CliError} For anything else.
 */
function parseWorkers(value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  const text = String(value);
  if (text === "auto") return navigator.hardwareConcurrency;
  const count = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
  if (!(count >= 1 && count <= MAX_WORKERS)) {
    throw new CliError(
      `Invalid --workers: "${text}" is not a whole number from 1 to ${MAX_WORKERS}, or auto`,
      EXIT.USAGE,
    );
  }
  return count;
}
