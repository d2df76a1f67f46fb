// Copyright the upcase authors. MIT license.
/**
 * What the machine offers the benchmark: the tools found, the servers that
 * cannot run and why, and the versions for the record.
 *
 * @module
 */

import { TLS_CERT, TLS_KEY } from "./_paths.ts";
import { capture } from "./_process.ts";
import { isTls, isUdp, type ServerName, type Settings } from "./_settings.ts";
import { readClockTicks } from "./_system.ts";

/** What was found on the machine; filled in by the build and the probe. */
export interface Environment {
  /** Why the epoll reference is not measured, if it is not. */
  epollSkipped?: string;
  /** No compiler: the generator is one built earlier. */
  staleLoadgen?: boolean;
  nodeSkipped?: string;
  upcaseSkipped?: string;
  /** server.ts --help mentions --max-conns. */
  upcaseMaxConns: boolean;
  /** Why upcase-w2 is not measured (server.ts has no --workers). */
  upcaseWorkersSkipped?: string;
  /** Why upcase-metrics is not measured (server.ts has no --metrics). */
  upcaseMetricsSkipped?: string;
  /** Why no TLS row can run (no libssl, no openssl), if none can. */
  tlsSkipped?: string;
  /** Why the C TLS reference is not measured, if it is not. */
  cTlsSkipped?: string;
  /** Why upcase is not measured over TLS (server.ts rejects --cert). */
  upcaseTlsSkipped?: string;
  /** Why upcase is not measured over UDP (server.ts --help has no --udp or
   * no --udp-rate). */
  upcaseUdpSkipped?: string;
  /** Why the C UDP reference is not measured, if it is not. */
  cUdpSkipped?: string;
}

/**
 * Why a server cannot run the TLS scenarios.
 *
 * @param name The server.
 * @param env What the build and the probe found.
 * @returns The reason; undefined when it can run them.
 */
export function tlsSkipReason(
  name: ServerName,
  env: Environment,
): string | undefined {
  if (env.tlsSkipped) return env.tlsSkipped;
  switch (name) {
    case "upcase":
    case "upcase-relay":
      return env.upcaseSkipped ?? env.upcaseTlsSkipped;
    case "node-tls":
      return env.nodeSkipped;
    case "c-tls":
      return env.cTlsSkipped;
    default:
      return undefined;
  }
}

/**
 * Why a server cannot run the UDP scenario.
 *
 * @param name The server.
 * @param env What the build and the probe found.
 * @returns The reason; undefined when it can run it.
 */
export function udpSkipReason(
  name: ServerName,
  env: Environment,
): string | undefined {
  switch (name) {
    case "upcase":
      return env.upcaseSkipped ?? env.upcaseUdpSkipped;
    case "node-udp":
      return env.nodeSkipped;
    case "c-udp":
      return env.cUdpSkipped;
    default:
      return undefined;
  }
}

/**
 * Looks for node and the server's flags, and notes the versions.
 *
 * @param env Filled in with what cannot run.
 * @param s The settings: only the servers asked for are looked for.
 * @returns The machine's description for results.json.
 */
export async function probe(
  env: Environment,
  s: Settings,
): Promise<Record<string, unknown>> {
  const clockTicks = await readClockTicks();

  const wantsNode = s.servers.includes("node") ||
    (s.servers.includes("node-tls") && s.scenarios.some(isTls)) ||
    (s.servers.includes("node-udp") && s.scenarios.some(isUdp));
  const node = wantsNode ? await capture("node", ["--version"]) : undefined;
  if (wantsNode && node?.code !== 0) {
    env.nodeSkipped = "node was not found";
  }

  const help = await capture(Deno.execPath(), [
    "run",
    "--quiet",
    "server.ts",
    "--help",
  ]);
  if (help?.code !== 0) {
    env.upcaseSkipped = `server.ts --help failed: ${
      help?.stderr.trim() || "no output"
    }`;
  }
  env.upcaseMaxConns = help?.stdout.includes("--max-conns") ?? false;
  if (help?.code === 0) {
    const lacks = (flag: string) =>
      help.stdout.includes(flag) ? undefined : `server.ts has no ${flag} flag`;
    env.upcaseWorkersSkipped = lacks("--workers");
    env.upcaseMetricsSkipped = lacks("--metrics");
    // The UDP server is newer than the rest: until it lands, its row says so.
    env.upcaseUdpSkipped = lacks("--udp") ?? lacks("--udp-rate");
  }
  if (
    help?.code === 0 && s.scenarios.some(isTls) && !env.tlsSkipped &&
    s.servers.some((name) => name.startsWith("upcase"))
  ) {
    env.upcaseTlsSkipped = await upcaseTlsMissing();
  }

  const cc = await capture("cc", ["--version"]);
  return {
    deno: Deno.version.deno,
    node: node?.stdout.trim(),
    cc: cc?.stdout.split("\n")[0],
    os: Deno.osRelease(),
    cpus: navigator.hardwareConcurrency,
    loadavg: Deno.loadavg(),
    clk_tck: clockTicks,
    upcase_max_conns_flag: env.upcaseMaxConns,
    upcase_udp_flag: s.scenarios.some(isUdp)
      ? help?.code === 0 && env.upcaseUdpSkipped === undefined
      : undefined,
    openssl: s.scenarios.some(isTls)
      ? (await capture("openssl", ["version"]))?.stdout.trim()
      : undefined,
  };
}

/**
 * Whether server.ts takes `--cert FILE --key FILE`: it parses its flags
 * before it looks at `--help`, so an unknown flag fails even then.
 *
 * @returns Why upcase cannot serve TLS; undefined when it can.
 */
async function upcaseTlsMissing(): Promise<string | undefined> {
  const out = await capture(Deno.execPath(), [
    "run",
    "--quiet",
    "server.ts",
    ...["--cert", TLS_CERT, "--key", TLS_KEY, "--help"],
  ]);
  if (out?.code === 0) return undefined;
  const said = (out?.stderr.trim() || out?.stdout.trim() || "no output")
    // deno-lint-ignore no-control-regex
    .replace(/\x1b\[[0-9;]*m/g, "").split("\n")[0];
  return `server.ts rejects --cert/--key (${said})`;
}

/**
 * A digest of the upcase server's sources (the repository's top-level .ts
 * files and the library in src/), to tell whether they changed while the
 * benchmark ran.
 *
 * @returns The `cksum` line; empty when it cannot be had.
 */
export async function sourcesDigest(): Promise<string> {
  const out = await capture("sh", ["-c", "cat ./*.ts src/*.ts | cksum"]);
  return out?.stdout.trim() ?? "";
}
