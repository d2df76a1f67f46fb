// Copyright the upcase authors. MIT license.
/**
 * What one invocation of the benchmark measures: the scenarios, the
 * servers, and the command line that picks them.
 *
 * @module
 */

/** A load the generator puts on a server over plain TCP. */
export type PlainScenario = "rtt" | "stream" | "oneshot" | "idle";
/** A load the generator puts on a server over TLS. */
export type TlsScenario = "tls-rtt" | "tls-stream" | "tls-oneshot";
/** A load the generator puts on a server over UDP. */
export type UdpScenario = "udp";
/** A load the generator puts on a server. */
export type Scenario = PlainScenario | TlsScenario | UdpScenario;
/** What a scenario is at heart: a TLS one is a plain one over TLS. */
export type BaseScenario = PlainScenario | UdpScenario;
/** Which servers a scenario runs, and against which reference. */
export type ScenarioKind = "plain" | "tls" | "udp";
/** A server under test. `upcase-relay` is upcase over TLS without
 * `--allow-ffi`: each client relayed to an in-process Deno.listenTls;
 * `upcase-w2` is upcase with `--workers 2`, `upcase-metrics` upcase with
 * `--metrics` on a second port. Over UDP, `node-udp` is Node's dgram,
 * `deno-udp` a plain Deno.listenDatagram loop, `deno-node-udp` node:dgram
 * under Deno and `c-udp` the C recvmmsg/sendmmsg reference. */
export type ServerName =
  | "epoll"
  | "upcase"
  | "upcase-w2"
  | "upcase-metrics"
  | "upcase-relay"
  | "node"
  | "deno-plain"
  | "node-tls"
  | "deno-tls"
  | "c-tls"
  | "node-udp"
  | "deno-udp"
  | "deno-node-udp"
  | "c-udp";

/** The scenarios over plain TCP: the default. */
export const PLAIN_SCENARIOS: readonly PlainScenario[] = [
  "rtt",
  "stream",
  "oneshot",
  "idle",
];
/** The scenarios over TLS: `--tls`. */
export const TLS_SCENARIOS: readonly TlsScenario[] = [
  "tls-rtt",
  "tls-stream",
  "tls-oneshot",
];
/** The scenarios over UDP: `--udp`. */
export const UDP_SCENARIOS: readonly UdpScenario[] = ["udp"];
/** Every scenario, in the order of the tables. */
export const ALL_SCENARIOS: readonly Scenario[] = [
  ...PLAIN_SCENARIOS,
  ...TLS_SCENARIOS,
  ...UDP_SCENARIOS,
];
/** The servers of the plain scenarios, in the order of the table rows. */
export const PLAIN_SERVERS: readonly ServerName[] = [
  "epoll",
  "upcase",
  "upcase-w2",
  "upcase-metrics",
  "node",
  "deno-plain",
];
/** upcase with another command line, against upcase itself: not in the
 * default run (`--variants` or `--only` adds them). */
export const UPCASE_VARIANTS: readonly ServerName[] = [
  "upcase-w2",
  "upcase-metrics",
];
/** The servers of the TLS scenarios, in the order of the table rows. */
export const TLS_SERVERS: readonly ServerName[] = [
  "upcase",
  "upcase-relay",
  "node-tls",
  "deno-tls",
  "c-tls",
];
/** The servers of the UDP scenarios, in the order of the table rows. */
export const UDP_SERVERS: readonly ServerName[] = [
  "upcase",
  "node-udp",
  "deno-udp",
  "deno-node-udp",
  "c-udp",
];
/** Every server. */
export const ALL_SERVERS: readonly ServerName[] = [
  ...new Set([...PLAIN_SERVERS, ...TLS_SERVERS, ...UDP_SERVERS]),
];
/** The servers of the default run: all but the variants. */
export const DEFAULT_SERVERS: readonly ServerName[] = ALL_SERVERS.filter(
  (name) => !UPCASE_VARIANTS.includes(name),
);

/**
 * Whether a scenario runs over TLS.
 *
 * @param scenario The scenario.
 * @returns True for the tls-* scenarios.
 */
export function isTls(scenario: Scenario): scenario is TlsScenario {
  return scenario.startsWith("tls-");
}

/**
 * Whether a scenario runs over UDP.
 *
 * @param scenario The scenario.
 * @returns True for the udp scenario.
 */
export function isUdp(scenario: Scenario): scenario is UdpScenario {
  return scenario === "udp";
}

/**
 * The kind of a scenario: plain TCP, TLS or UDP.
 *
 * @param scenario The scenario.
 * @returns Its kind.
 */
export function kindOf(scenario: Scenario): ScenarioKind {
  return isTls(scenario) ? "tls" : isUdp(scenario) ? "udp" : "plain";
}

/**
 * The plain scenario a TLS one repeats over TLS (`tls-rtt` is `rtt`).
 *
 * @param scenario The scenario.
 * @returns The plain scenario; itself when it is not a TLS one.
 */
export function baseScenario(scenario: Scenario): BaseScenario {
  return (isTls(scenario) ? scenario.slice(4) : scenario) as BaseScenario;
}

/**
 * The servers asked for that run a scenario, in the order of the rows.
 *
 * @param scenario The scenario.
 * @param servers The servers asked for.
 * @returns Those of them that serve the scenario's kind (plain, TLS, UDP).
 */
export function serversOf(
  scenario: Scenario,
  servers: readonly ServerName[],
): ServerName[] {
  const kind = { plain: PLAIN_SERVERS, tls: TLS_SERVERS, udp: UDP_SERVERS }[
    kindOf(scenario)
  ];
  return servers.filter((name) => kind.includes(name));
}

/** What one invocation measures. */
export interface Settings {
  quick: boolean;
  reps: number;
  warmupSeconds: number;
  rttSeconds: number;
  rttConns: number;
  rttSize: number;
  streamBytes: number;
  /** The generator gives up on a stream after this long. */
  streamLimitSeconds: number;
  oneshotSeconds: number;
  oneshotInFlight: number;
  oneshotSize: number;
  idleConns: number;
  /** udp: datagrams in flight at once. */
  udpInFlight: number;
  udpSize: number;
  udpSeconds: number;
  /** udp: a datagram not answered after this long is counted lost (and
   * replaced by a new one). */
  udpLossTimeoutMs: number;
  /** The generator gives up opening idle connections after this long. */
  idleConnectLimitSeconds: number;
  /** How long idle connections are held before RSS is read. */
  idleHoldMs: number;
  transform: boolean;
  servers: ServerName[];
  scenarios: Scenario[];
  /** A run is skipped unless it surely ends this long after the start. */
  hardLimitSeconds: number;
  /** Waits for quiet and runs done again must leave the planned runs time
   * to end by then, in seconds after the start. */
  softLimitSeconds: number;
}

/** The help text. */
export const USAGE =
  `Usage: deno task bench [--quick] [--tls] [--udp] [--variants] [--only=SERVERS] [--scenarios=LIST] [--reps=N] [--no-transform]

  --quick            1 repetition, 2 s runs, 256 MiB stream, 2,000 idle conns
  --tls              also the TLS scenarios (${TLS_SCENARIOS.join(", ")}):
                     upcase --cert/--key with --allow-ffi (upcase) and
                     without (upcase-relay) against ${
    TLS_SERVERS.filter((name) => !name.startsWith("upcase")).join(", ")
  }
                     (about 5.5 more minutes; about 1 more with --quick)
  --udp              also the UDP scenario (${UDP_SCENARIOS.join(", ")}):
                     upcase --udp against ${
    UDP_SERVERS.filter((name) => name !== "upcase").join(", ")
  }
                     (about 2.5 more minutes; half a minute with --quick;
                     --scenarios=udp runs it alone)
  --variants         also upcase's variants in the plain scenarios
                     (${UPCASE_VARIANTS.join(", ")}): upcase with --workers 2
                     (2 Worker threads, SO_REUSEPORT) and with --metrics on a
                     second port (not scraped), with their ratios to upcase,
                     which runs too (about 2.5 more minutes; about half a
                     minute more with --quick)
  --only=a,b         servers: ${ALL_SERVERS.join(", ")}
                     (default all but ${UPCASE_VARIANTS.join(", ")})
  --scenarios=a,b    scenarios: ${ALL_SCENARIOS.join(", ")}
                     (default ${PLAIN_SCENARIOS.join(", ")})
  --reps=N           repetitions (default 3, --quick 1)
  --no-transform     skip timing the transform alone

Each scenario runs the servers of --only that serve it: the plain ones
${PLAIN_SERVERS.join(", ")}; the TLS ones ${TLS_SERVERS.join(", ")};
the UDP one ${UDP_SERVERS.join(", ")}.
For example, upcase against its variants and the C reference only:
  deno task bench --only=upcase,${UPCASE_VARIANTS.join(",")},epoll

Results: markdown tables on stdout and in bench/.build/results.md, raw
numbers in bench/.build/results.json, server logs in bench/.build/logs/.
Traffic goes to 127.0.0.1 only.`;

function parseList<T extends string>(
  flag: string,
  value: string,
  allowed: readonly T[],
): T[] {
  const list = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const item of list) {
    if (!(allowed as readonly string[]).includes(item)) {
      throw new Error(
        `Invalid ${flag}: "${item}" is not one of ${allowed.join(", ")}`,
      );
    }
  }
  if (list.length === 0) throw new Error(`Invalid ${flag}: the list is empty`);
  return list as T[];
}

/**
 * Parses the command line; prints the usage for `--help`.
 *
 * @param args The arguments.
 * @returns The settings; undefined after `--help`.
 * @throws {Error} For an unknown or bad argument.
 */
export function parseSettings(args: string[]): Settings | undefined {
  let quick = false;
  let transform = true;
  let reps: number | undefined;
  let tls = false;
  let udp = false;
  let variants = false;
  let servers = [...DEFAULT_SERVERS];
  let scenarios: Scenario[] = [...PLAIN_SCENARIOS];
  for (const arg of args) {
    const [flag, value = ""] = arg.split(/=(.*)/s, 2) as [string, string?];
    if (arg === "--help" || arg === "-h") {
      console.log(USAGE);
      return undefined;
    } else if (arg === "--quick") {
      quick = true;
    } else if (arg === "--tls") {
      tls = true;
    } else if (arg === "--udp") {
      udp = true;
    } else if (arg === "--variants") {
      variants = true;
    } else if (arg === "--no-transform") {
      transform = false;
    } else if (flag === "--only") {
      servers = parseList(flag, value, ALL_SERVERS);
    } else if (flag === "--scenarios") {
      scenarios = parseList(flag, value, ALL_SCENARIOS);
    } else if (flag === "--reps" && /^[1-9]$/.test(value)) {
      reps = Number(value);
    } else {
      throw new Error(`Unknown or bad argument: "${arg}"\n\n${USAGE}`);
    }
  }
  if (variants) {
    // With upcase itself, which their ratios are taken to.
    servers = ALL_SERVERS.filter((name) =>
      name === "upcase" || UPCASE_VARIANTS.includes(name) ||
      servers.includes(name)
    );
  }
  if (tls || udp) {
    scenarios = ALL_SCENARIOS.filter((sc) =>
      (tls && isTls(sc)) || (udp && isUdp(sc)) || scenarios.includes(sc)
    );
  }
  scenarios = scenarios.filter((sc) => serversOf(sc, servers).length > 0);
  if (scenarios.length === 0) {
    throw new Error(
      `Nothing to run: no server of --only serves a scenario of --scenarios`,
    );
  }
  // The TLS scenarios get their own time on top of the plain ones': about
  // 21 s a server a repetition, 10 s with --quick. So do the variants: about
  // 25 s each a repetition, 13 s with --quick; and the UDP scenario: about
  // 8 s a server a repetition, 4 s with --quick.
  const withTls = scenarios.some(isTls);
  const withUdp = scenarios.some(isUdp);
  const repsOrDefault = reps ?? (quick ? 1 : 3);
  const variantsRun = scenarios.some((sc) => kindOf(sc) === "plain")
    ? servers.filter((name) => UPCASE_VARIANTS.includes(name)).length
    : 0;
  const extra = (withTls ? (quick ? 75 : 330) : 0) +
    (withUdp ? (quick ? 30 : 150) : 0) +
    variantsRun * repsOrDefault * (quick ? 13 : 25);
  return {
    quick,
    reps: repsOrDefault,
    warmupSeconds: quick ? 0.5 : 1,
    rttSeconds: quick ? 2 : 5,
    rttConns: 50,
    rttSize: 64,
    streamBytes: quick ? 256 << 20 : 1 << 30,
    streamLimitSeconds: quick ? 15 : 30,
    oneshotSeconds: quick ? 2 : 5,
    oneshotInFlight: 20,
    oneshotSize: 32,
    idleConns: quick ? 2000 : 10_000,
    idleConnectLimitSeconds: 20,
    idleHoldMs: quick ? 500 : 1000,
    udpInFlight: 50,
    udpSize: 64,
    udpSeconds: quick ? 2 : 5,
    udpLossTimeoutMs: 200,
    transform,
    servers,
    scenarios,
    hardLimitSeconds: (quick ? 150 : 570) + extra,
    softLimitSeconds: (quick ? 90 : 480) + extra,
  };
}
