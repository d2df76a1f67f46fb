// Copyright the upcase authors. MIT license.
// Command-line plumbing shared by server.ts and client.ts: flag parsing,
// validation, exit codes and one-line error messages. Internal.

import { parseArgs } from "@std/cli/parse-args";
import { bold, red, stripAnsiCode, yellow } from "@std/fmt/colors";
import { errorMessage } from "./_io.ts";
import { escapeLine } from "./_escape.ts";

/** Exit codes of both tools; README.md and `--help` list the same. */
export const EXIT = {
  /** Success. */
  OK: 0,
  /** Bad or missing arguments (the seed's usage line included). */
  USAGE: 1,
  /** A permission (network, or reading a file) was not granted. */
  PERMISSION: 2,
  /** Cannot listen or connect: address in use, refused, unknown host. */
  NETWORK: 3,
  /** A timeout ran out. */
  TIMEOUT: 4,
  /** The peer closed or reset before the reply was complete, or sent too much. */
  CONNECTION_LOST: 5,
  /** UDP: no reply to a datagram after its retries. */
  NO_REPLY: 6,
  /** A bug: the stack trace follows. */
  INTERNAL: 70,
} as const;

/** The signals that stop a server gracefully (a second one: at once). */
export const STOP_SIGNALS: readonly Deno.Signal[] = [
  "SIGINT",
  "SIGTERM",
  "SIGHUP",
];

/** The exit-code table printed at the end of both tools' `--help`. */
export const EXIT_CODES_HELP = `Exit codes:
  0   success
  1   usage: bad or missing arguments, or unusable files (--cert, --key, --ca)
  2   a permission was not granted (the message names the --allow-... flag)
  3   cannot listen or connect: address in use, connection refused, unknown
      host, a TLS handshake that failed
  4   timed out
  5   connection lost: closed or reset before the reply was complete, or a
      reply longer than upcase sends
  6   UDP: no reply to a datagram after --retries (lost, or no server there)
  70  internal error (a bug: please report the stack trace)`;

/** An error the user can fix: one line on stderr and a known exit code. */
export class CliError extends Error {
  /** The process exit code for this error. */
  readonly code: number;

  /**
   * @param message One line: capitalised, detail after a colon, no full stop.
   * @param code An {@linkcode EXIT} code.
   */
  constructor(message: string, code: number) {
    super(message);
    this.name = "CliError";
    this.code = code;
  }
}

/**
 * Refuses the first flag that cannot go with `flag`.
 *
 * @param flag The flag the others conflict with, e.g. `--udp`.
 * @param conflicts Each: whether the other flag was given, and its name
 *   with the reason.
 * @throws {CliError} "Conflicting flags: FLAG cannot be combined with ...",
 *   exit 1.
 */
export function refuseConflicts(
  flag: string,
  conflicts: readonly (readonly [boolean, string])[],
): void {
  const conflict = conflicts.find(([given]) => given);
  if (conflict !== undefined) {
    throw new CliError(
      `Conflicting flags: ${flag} cannot be combined with ${conflict[1]}`,
      EXIT.USAGE,
    );
  }
}

/** Flags a tool accepts, as `@std/cli` `parseArgs` wants them. */
export interface FlagSpec {
  string: string[];
  boolean: string[];
  /** String flags that may be given more than once: arrays. */
  collect?: string[];
  alias?: Record<string, string>;
}

/** Parsed flags: every value is still unvalidated. */
export interface RawFlags {
  /** Positional arguments. */
  _: string[];
  [flag: string]: unknown;
}

/**
 * Parses `args` with `@std/cli`, rejecting unknown flags and string flags
 * given without a value.
 *
 * @param args The command-line arguments.
 * @param spec The flags the tool accepts.
 * @returns The flags, still to be validated.
 * @throws {CliError} For an unknown flag or a missing value.
 */
export function parseFlags(args: string[], spec: FlagSpec): RawFlags {
  const unknown: string[] = [];
  // "--port -1": keep a value that looks like a negative number with its
  // flag, so it is reported as a bad value rather than a missing one.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (
      next !== undefined && /^-\d/.test(next) && arg.startsWith("--") &&
      spec.string.includes(arg.slice(2))
    ) {
      joined.push(`${arg}=${next}`);
      i++;
    } else joined.push(arg);
  }
  // "--once=maybe": a switch takes no value (parseArgs would take it as on).
  for (const arg of joined) {
    const match = /^--([^=]+)=(.*)$/s.exec(arg);
    const name = match?.[1];
    if (
      name !== undefined &&
      (spec.boolean.includes(name) ||
        spec.boolean.includes(spec.alias?.[name] ?? ""))
    ) {
      throw new CliError(
        `Invalid --${name}: "${match![2]}": the flag takes no value`,
        EXIT.USAGE,
      );
    }
  }
  const flags = parseArgs(joined, {
    string: spec.string,
    boolean: spec.boolean,
    collect: spec.collect ?? [],
    alias: spec.alias ?? {},
    unknown: (arg: string, key?: string) => {
      if (key === undefined) return true; // a positional argument
      unknown.push(arg.replace(/=.*$/s, ""));
      return false;
    },
  }) as RawFlags;
  if (unknown.length > 0) {
    throw new CliError(
      `Unknown flag: ${unknown[0]} (see --help)`,
      EXIT.USAGE,
    );
  }
  for (const name of spec.string) {
    const value = flags[name];
    if (value === "" || (Array.isArray(value) && value.includes(""))) {
      throw new CliError(`Missing value for --${name}`, EXIT.USAGE);
    }
  }
  flags._ = flags._.map(String);
  return flags;
}

/**
 * Validates a `--port` value.
 *
 * @param value The flag's text, or undefined when not given.
 * @param fallback The port when the flag is absent.
 * @param min The lowest port allowed: 0 (any free port) for a listener, 1
 *   for a client, which cannot connect to port 0.
 * @returns The port number.
 * @throws {CliError} Unless it is an integer from `min` to 65535.
 */
export function parsePort(
  value: unknown,
  fallback: number,
  min: 0 | 1 = 0,
): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const port = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(port >= min && port <= 65535)) {
    throw new CliError(
      `Invalid port: "${text}" is not an integer from ${min} to 65535`,
      EXIT.USAGE,
    );
  }
  return port;
}

/** The longest Unix socket path, in bytes (108 in `sun_path`, less a NUL). */
export const MAX_UNIX_PATH_BYTES = 107;

/**
 * Validates a `--unix` path: Linux keeps it in 108 bytes with its NUL.
 *
 * @param value The flag's text, or undefined when not given.
 * @returns The path, or undefined.
 * @throws {CliError} When the path is longer than
 *   {@linkcode MAX_UNIX_PATH_BYTES} bytes.
 */
export function parseUnixPath(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const path = String(value);
  const bytes = new TextEncoder().encode(path).length;
  if (bytes > MAX_UNIX_PATH_BYTES) {
    throw new CliError(
      `Invalid --unix: the path is ${bytes} bytes; a Unix socket path holds at most ${MAX_UNIX_PATH_BYTES} (use a shorter one, e.g. in /tmp)`,
      EXIT.USAGE,
    );
  }
  return path;
}

/**
 * Validates a number of seconds (`--timeout`, `--grace`, `--idle-timeout`).
 *
 * @param name The flag, for the message.
 * @param value The flag's text, or undefined when not given.
 * @param fallback The result when the flag is absent, in milliseconds.
 * @returns The time in milliseconds.
 * @throws {CliError} Unless it is a number of seconds, 0 or more.
 */
export function parseSeconds(
  name: string,
  value: unknown,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const seconds = /^\d+(\.\d+)?$|^\.\d+$/.test(text) ? Number(text) : NaN;
  if (!(seconds >= 0 && seconds <= 1e6)) {
    throw new CliError(
      `Invalid --${name}: "${text}" is not a number of seconds from 0 to 1000000`,
      EXIT.USAGE,
    );
  }
  return Math.round(seconds * 1000);
}

/**
 * Validates a count (`--max-conns`).
 *
 * @param name The flag, for the message.
 * @param value The flag's text, or undefined when not given.
 * @param fallback The result when the flag is absent.
 * @returns The count.
 * @throws {CliError} Unless it is a whole number, 0 or more.
 */
export function parseCount(
  name: string,
  value: unknown,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  const text = String(value);
  const count = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
  if (!(count >= 0)) {
    throw new CliError(
      `Invalid --${name}: "${text}" is not a whole number from 0 to 999999999`,
      EXIT.USAGE,
    );
  }
  return count;
}

/**
 * Validates a flag with a fixed set of values.
 *
 * @param name The flag, for the message.
 * @param value The flag's text, or undefined when not given.
 * @param choices The values allowed; the first is the default.
 * @returns The value.
 * @throws {CliError} For any other value.
 */
export function parseChoice<T extends string>(
  name: string,
  value: unknown,
  choices: readonly [T, ...T[]],
): T {
  if (value === undefined) return choices[0];
  const text = String(value);
  if (!(choices as readonly string[]).includes(text)) {
    throw new CliError(
      `Invalid --${name}: "${text}" is not one of ${choices.join(", ")}`,
      EXIT.USAGE,
    );
  }
  return text as T;
}

/**
 * Checks that two flags that only work together (`--cert` and `--key`) are
 * both given or both left out.
 *
 * @param options The options, by flag name.
 * @param a One flag.
 * @param b The other.
 * @throws {CliError} Naming the one that is missing.
 */
export function requirePair<T extends object>(
  options: T,
  a: keyof T & string,
  b: keyof T & string,
): void {
  const [hasA, hasB] = [options[a] !== undefined, options[b] !== undefined];
  if (hasA === hasB) return;
  const [missing, given] = hasA ? [b, a] : [a, b];
  throw new CliError(
    `Missing flag: --${missing} goes with --${given}`,
    EXIT.USAGE,
  );
}

/**
 * A string flag's value, if it was given.
 *
 * @param value The flag's text, or undefined when not given.
 * @returns The text, or undefined.
 */
export function optionalString(value: unknown): string | undefined {
  return value === undefined ? undefined : String(value);
}

/**
 * Validates a `--host` value.
 *
 * @param value The flag's text, or undefined when not given.
 * @param fallback The host when the flag is absent.
 * @returns The host, without the brackets of `[::1]`.
 */
export function parseHost(value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  return String(value).replace(/^\[(.*)\]$/, "$1");
}

/**
 * Validates a `HOST:PORT` flag (`--metrics`): IPv6 addresses in brackets,
 * `[::1]:9090`; the port as for `--port`.
 *
 * @param name The flag, for the message.
 * @param value The flag's text, or undefined when not given.
 * @param fallback The result when the flag is absent.
 * @returns The host (without brackets) and port.
 * @throws {CliError} Unless it is HOST:PORT.
 */
export function parseHostPort<T>(
  name: string,
  value: unknown,
  fallback: T,
): { hostname: string; port: number } | T {
  if (value === undefined) return fallback;
  const text = String(value);
  const match = /^(?:\[([^\]]+)\]|([^:\[\]]+)):([^:]*)$/.exec(text);
  if (match === null) {
    throw new CliError(
      `Invalid --${name}: "${text}" is not HOST:PORT (an IPv6 address as [::1]:9090)`,
      EXIT.USAGE,
    );
  }
  return {
    hostname: match[1] ?? match[2]!,
    port: parsePort(match[3], 0),
  };
}

/**
 * `host:port` as people write it, with brackets around IPv6 addresses.
 *
 * @param hostname A host name or address.
 * @param port A port.
 * @returns The joined address.
 */
export function joinHostPort(hostname: string, port: number): string {
  return hostname.includes(":")
    ? `[${hostname}]:${port}`
    : `${hostname}:${port}`;
}

/**
 * An address as people write it: `host:port`, `[::1]:port`, or a Unix
 * socket's path.
 *
 * @param addr A listener's or connection's address.
 * @returns The address as text.
 */
export function formatAddr(addr: Deno.Addr): string {
  if ("hostname" in addr) return joinHostPort(addr.hostname, addr.port);
  return "path" in addr ? addr.path : addr.transport;
}

/** Where a tool was going when a network call failed, for the message. */
export type NetworkContext =
  & {
    /** "listen" for the server, "connect" for the client. */
    action: "listen" | "connect";
  }
  & (
    | { hostname: string; port: number; path?: undefined }
    | { path: string }
  );

/**
 * Turns an error from `Deno.listen` or `Deno.connect` into a {@linkcode
 * CliError} with a one-line explanation, or returns the error unchanged when it
 * is not one a user can fix.
 *
 * @param err What was thrown.
 * @param context The address and what was being done.
 * @returns A CliError, or `err`.
 */
export function explainNetworkError(
  err: unknown,
  context: NetworkContext,
): unknown {
  if (context.path !== undefined) return explainUnixError(err, context);
  const address = joinHostPort(context.hostname, context.port);
  const permission = `--allow-net=${address}`;
  if (err instanceof Deno.errors.NotCapable) {
    return new CliError(
      `Permission denied: ${
        context.action === "listen" ? "listening on" : "connecting to"
      } ${address} needs ${permission}`,
      EXIT.PERMISSION,
    );
  }
  if (err instanceof Deno.errors.AddrInUse) {
    return new CliError(
      `Address in use: ${address} is taken by another process (try --port)`,
      EXIT.NETWORK,
    );
  }
  if (err instanceof Deno.errors.AddrNotAvailable) {
    return new CliError(
      `Address not available: ${address} is not an address of this machine`,
      EXIT.NETWORK,
    );
  }
  if (err instanceof Deno.errors.ConnectionRefused) {
    return new CliError(
      `Connection refused: no server is listening on ${address} (start one with: deno task start)`,
      EXIT.NETWORK,
    );
  }
  if (err instanceof Error && /failed to lookup address/.test(err.message)) {
    return new CliError(
      /Temporary failure/.test(err.message)
        ? `Unknown host: "${context.hostname}" could not be resolved (temporary failure in name resolution: is DNS reachable?)`
        : `Unknown host: "${context.hostname}" does not resolve`,
      EXIT.NETWORK,
    );
  }
  if (err instanceof URIError && /invalid host/.test(err.message)) {
    return new CliError(
      `Invalid host: "${context.hostname}" is not a host name or address`,
      EXIT.USAGE,
    );
  }
  if (err instanceof Deno.errors.TimedOut) {
    return new CliError(
      `Timed out: no answer from ${address}`,
      EXIT.TIMEOUT,
    );
  }
  if (
    err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.BrokenPipe
  ) {
    return new CliError(
      `Connection lost: ${errorMessage(err)}`,
      EXIT.CONNECTION_LOST,
    );
  }
  if (
    err instanceof Error && /Network is unreachable|No route to host/.test(
      err.message,
    )
  ) {
    return new CliError(
      `Cannot ${context.action}: ${address}: ${errorMessage(err)}`,
      EXIT.NETWORK,
    );
  }
  return err;
}

function explainUnixError(
  err: unknown,
  context: { action: "listen" | "connect"; path: string },
): unknown {
  const { path } = context;
  if (err instanceof Deno.errors.NotCapable) {
    return new CliError(
      `Permission denied: ${
        context.action === "listen" ? "listening on" : "connecting to"
      } ${path} needs ${unixPermissions(path)}`,
      EXIT.PERMISSION,
    );
  }
  if (err instanceof Deno.errors.NotFound) {
    return new CliError(
      context.action === "listen"
        ? `No such directory: cannot create the socket ${path}`
        : `No such socket: ${path} does not exist (start the server with --unix ${path})`,
      EXIT.NETWORK,
    );
  }
  if (err instanceof Deno.errors.AddrInUse) {
    return new CliError(
      isSocket(path)
        ? `Address in use: another server is listening on ${path}`
        : `Not a socket: ${path} exists and is not a Unix socket (remove it or choose another path)`,
      EXIT.NETWORK,
    );
  }
  if (err instanceof Deno.errors.ConnectionRefused) {
    return new CliError(
      isSocket(path)
        ? `Connection refused: no server is listening on ${path} (start one with: deno run ${
          unixPermissions(path)
        } server.ts --unix ${path})`
        : `Not a socket: ${path} is not a Unix socket`,
      EXIT.NETWORK,
    );
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new CliError(
      `Permission denied: ${path}: ${errorMessage(err)}`,
      EXIT.NETWORK,
    );
  }
  return err;
}

/**
 * The flags `deno run` needs to use a Unix socket at `path`.
 *
 * @param path The socket's path.
 * @returns The three flags, space-separated.
 */
export function unixPermissions(path: string): string {
  return `--allow-net=unix:${path} --allow-read=${path} --allow-write=${path}`;
}

function isSocket(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/**
 * Runs a tool's main function: a {@linkcode CliError} becomes one line on
 * stderr and its exit code; anything else is a bug and shows its stack.
 *
 * @param main The tool; resolves with the exit code.
 */
export async function run(main: () => Promise<number>): Promise<void> {
  let code: number;
  try {
    code = await main();
  } catch (err: unknown) {
    if (err instanceof CliError) {
      printError(err.message);
      code = err.code;
    } else {
      console.error(err);
      code = EXIT.INTERNAL;
    }
  }
  Deno.exit(code);
}

/**
 * Prints `error: message` on stderr, in colour on a terminal.
 *
 * @param message One line.
 */
export function printError(message: string): void {
  console.error(`${colorize(bold(red("error")))}: ${escapeLine(message)}`);
}

/**
 * Prints `warning: message` on stderr, in colour on a terminal.
 *
 * @param message One line.
 */
export function printWarning(message: string): void {
  console.error(
    `${colorize(bold(yellow("warning")))}: ${escapeLine(message)}`,
  );
}

/** Colour only on a terminal; `@std/fmt/colors` itself honours NO_COLOR. */
function colorize(styled: string): string {
  return Deno.stderr.isTerminal() ? styled : stripAnsiCode(styled);
}

/** The most a PEM file (`--cert`, `--key`, `--ca`) may hold. */
export const MAX_PEM_BYTES = 1024 * 1024;

/**
 * Reads a file as UTF-8 text, at most `max` bytes: `/dev/zero` or a huge
 * file is refused, not read into memory.
 *
 * @throws {RangeError} When the file holds more than `max` bytes.
 */
async function readBounded(path: string, max: number): Promise<string> {
  using file = await Deno.open(path);
  const buffer = new Uint8Array(max + 1);
  let filled = 0;
  while (filled < buffer.length) {
    const n = await file.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  if (filled > max) throw new RangeError(`${path} is larger than ${max} B`);
  return new TextDecoder().decode(buffer.subarray(0, filled));
}

/**
 * Reads a PEM file named by a flag: certificates for `--cert` and `--ca`, a
 * private key for `--key`.
 *
 * @param flag The flag, for the message.
 * @param path The file.
 * @returns The file's text.
 * @throws {CliError} When it is missing (exit 1), not PEM (exit 1), or the
 *   read permission was not granted (exit 2, naming `--allow-read=path`).
 */
export async function readPemFile(
  flag: "cert" | "key" | "ca",
  path: string,
): Promise<string> {
  let text: string;
  try {
    text = await readBounded(path, MAX_PEM_BYTES);
  } catch (err: unknown) {
    if (err instanceof RangeError) {
      throw new CliError(
        `Not a PEM file: ${path} (--${flag}) is larger than ${
          MAX_PEM_BYTES / 1024 / 1024
        } MiB`,
        EXIT.USAGE,
      );
    }
    if (err instanceof Deno.errors.NotCapable) {
      throw new CliError(
        `Permission denied: reading ${path} (--${flag}) needs --allow-read=${path}`,
        EXIT.PERMISSION,
      );
    }
    if (err instanceof Deno.errors.NotFound) {
      throw new CliError(
        `No such file: ${path} (--${flag}) does not exist`,
        EXIT.USAGE,
      );
    }
    if (err instanceof Deno.errors.IsADirectory) {
      throw new CliError(
        `Not a file: ${path} (--${flag}) is a directory`,
        EXIT.USAGE,
      );
    }
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new CliError(
        `Cannot read ${path} (--${flag}): ${errorMessage(err)}`,
        EXIT.USAGE,
      );
    }
    throw err;
  }
  const [label, what] = flag === "key"
    ? [/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/, "PRIVATE KEY"]
    : [/-----BEGIN CERTIFICATE-----/, "CERTIFICATE"];
  if (!label.test(text)) {
    throw new CliError(
      /-----BEGIN [A-Z0-9 ]+-----/.test(text)
        ? `Wrong PEM: ${path} (--${flag}) holds no "-----BEGIN ${what}-----" block`
        : `Not PEM: ${path} (--${flag}) is not a PEM file (no "-----BEGIN ${what}-----" block)`,
      EXIT.USAGE,
    );
  }
  return text;
}
