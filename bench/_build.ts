// Copyright the upcase authors. MIT license.
/**
 * Compiling the C programs of the benchmark with `cc` into bench/.build/:
 * the load generator (with TLS when libssl is there), the C epoll
 * reference and, for the TLS scenarios, the C TLS reference; for the UDP
 * scenario, the C UDP reference.
 *
 * @module
 */

import type { Environment } from "./_environment.ts";
import {
  BENCH_DIR,
  EPOLL_SERVER,
  EPOLL_TLS_SERVER,
  LOADGEN,
  LOG_DIR,
  UDP_SERVER,
} from "./_paths.ts";
import { capture } from "./_process.ts";

/** What a program needs to link OpenSSL. */
const OPENSSL_LIBS = ["-lssl", "-lcrypto"];

/** Which references {@linkcode compile} builds besides the epoll one. */
export interface BuildOptions {
  /**
   * The TLS scenarios run: build the C TLS reference.
   *
   * @default {false}
   */
  tls?: boolean;
  /**
   * The UDP scenario runs: build the C UDP reference.
   *
   * @default {false}
   */
  udp?: boolean;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Compiles one program.
 *
 * @returns Why it could not be built, if it could not; "no C compiler (cc)"
 * when there is none.
 */
async function build(
  source: string,
  output: string,
  flags: string[],
  libs: string[] = [],
): Promise<string | undefined> {
  const out = await capture("cc", [
    ...flags,
    "-Wall",
    "-Wextra",
    "-o",
    output,
    `${BENCH_DIR}${source}`,
    ...libs,
  ], 60_000);
  if (out === undefined) return "no C compiler (cc)";
  if (out.code !== 0) {
    return `cc failed on bench/${source}: ${out.stderr.trim()}`;
  }
  if (out.stderr.trim()) console.error(out.stderr.trim());
  return undefined;
}

/** The first line of a compiler's complaint that says what is wrong. */
function firstError(why: string): string {
  const lines = why.replace(/^cc failed on \S+: /, "").split("\n");
  return (lines.find((line) => /error|cannot find/i.test(line)) ?? lines[0]!)
    .trim();
}

/**
 * Compiles the generator and the references. Without a compiler the
 * references are skipped and a generator built earlier is used, if there is
 * one; without libssl the generator is built without TLS and the TLS rows
 * are skipped.
 *
 * @param env Told what is skipped or stale.
 * @param options Which other references to build: TLS, UDP.
 * @returns Why nothing can be measured, if nothing can.
 */
export async function compile(
  env: Environment,
  options: BuildOptions = {},
): Promise<string | undefined> {
  const { tls = false, udp = false } = options;
  await Deno.mkdir(LOG_DIR, { recursive: true });
  let why = await build("loadgen.c", LOADGEN, ["-O2", "-DLOADGEN_TLS"], [
    ...OPENSSL_LIBS,
  ]);
  if (why !== undefined && why !== "no C compiler (cc)") {
    env.tlsSkipped = `the load generator cannot be built with libssl ` +
      `(cc -DLOADGEN_TLS … -lssl -lcrypto: ${firstError(why)})`;
    why = await build("loadgen.c", LOADGEN, ["-O2"]);
  }
  if (why === "no C compiler (cc)" && await isFile(LOADGEN)) {
    env.staleLoadgen = true;
    env.tlsSkipped ??= why;
  } else if (why !== undefined) {
    return why;
  }
  env.epollSkipped = await build("peers/epoll_server.c", EPOLL_SERVER, ["-O3"]);
  if (tls && env.tlsSkipped === undefined) {
    const cTls = await build(
      "peers/epoll_tls_server.c",
      EPOLL_TLS_SERVER,
      ["-O3"],
      OPENSSL_LIBS,
    );
    if (cTls !== undefined) env.cTlsSkipped = firstError(cTls);
  }
  if (udp) {
    const cUdp = await build("peers/udp_server.c", UDP_SERVER, ["-O3"]);
    if (cUdp !== undefined) env.cUdpSkipped = firstError(cUdp);
  }
  return undefined;
}
