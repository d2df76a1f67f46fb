// Copyright the upcase authors. MIT license.
// The reliability scenarios of issue 5 in quick sizes; `deno task stress`
// runs them at full size. The scenario logic lives in stress/; each scenario
// throws when an invariant breaks (a wrong byte, a connection left open, a
// bad exit code), and the tests check the figures it returns.

import { assertEquals, assertGreater, assertGreaterOrEqual } from "@std/assert";
import { serve } from "../mod.ts";
import { byteStreamProperty } from "../stress/byte_stream.ts";
import {
  descriptorExhaustion,
  descriptorExhaustionSkipReason,
} from "../stress/descriptor_exhaustion.ts";
import { logStall } from "../stress/log_stall.ts";
import { abruptResets } from "../stress/resets.ts";
import { shutdownUnderLoad } from "../stress/shutdown.ts";
import { slowReader } from "../stress/slow_reader.ts";
import { slowloris, slowlorisSkipReason } from "../stress/slowloris.ts";
import { soak } from "../stress/soak.ts";
import { unicodeByteStreamProperty } from "../stress/unicode_stream.ts";
import { tlsHandshakes } from "../stress/tls_handshakes.ts";
import { tlsIdleCutoff } from "../stress/tls_idle_cutoff.ts";
import { tlsResets } from "../stress/tls_resets.ts";
import { tlsSlowloris } from "../stress/tls_slowloris.ts";
import { tlsSlowReader } from "../stress/tls_slow_reader.ts";
import { hostile } from "../stress/hostile.ts";
import { hostileHttp } from "../stress/hostile_http.ts";
import { TLS_MODES } from "../stress/_tls.ts";
import { countSockets, MiB, resolveSeed, seedLine } from "../stress/_util.ts";
import { roundTrip, utf8 } from "./_util.ts";

const SEED = resolveSeed();
console.log(`reliability_test.ts: ${seedLine(SEED, "deno task test")}`);

const slowlorisSkip = await slowlorisSkipReason();
if (slowlorisSkip !== undefined) {
  console.warn(`reliability_test.ts: slowloris SKIPPED: ${slowlorisSkip}`);
}
const descriptorSkip = await descriptorExhaustionSkipReason();
if (descriptorSkip !== undefined) {
  console.warn(`reliability_test.ts: descriptors SKIPPED: ${descriptorSkip}`);
}

Deno.test("serve() returns exactly the upper-cased bytes for 500 random streams: any byte values, write sizes, pauses and half-close timing", async () => {
  const result = await byteStreamProperty({ seed: SEED, cases: 500 });
  assertEquals(result.cases, 500);
  assertEquals(result.errors, 0);
});

Deno.test("serve({ unicode: true }) returns exactly the Unicode upper case for 500 random UTF-8 streams mixed with invalid bytes, cut at every byte or at random", async () => {
  const result = await unicodeByteStreamProperty({
    seed: SEED,
    cases: 500,
    maxSize: 32 * 1024,
  });
  assertGreaterOrEqual(result.cases, 500);
  assertEquals(result.errors, 0);
});

Deno.test({
  name:
    "serve({ unicode: true }) sends back a U+FEFF that starts a read (it used to drop it as a byte order mark)",
  fn: async () => {
    await using server = serve({
      hostname: "127.0.0.1",
      port: 0,
      unicode: true,
    });
    // EF BB BF 62: U+FEFF and "b"; the reply was 42 alone.
    const reply = await roundTrip(server.addr.port, utf8("\ufeffb"));
    assertEquals(reply, utf8("\ufeffB"));
  },
});

Deno.test("serve() survives 1,000 clients that reset mid-stream, still serves, and has no connection left open", async () => {
  const result = await abruptResets({ seed: SEED, clients: 1000 });
  assertEquals(result.cases, 1000);
});

Deno.test("server.ts holds back a client that sends 256 MiB and never reads, in bounded memory, serving others, and frees it on close", async () => {
  const result = await slowReader({
    seed: SEED,
    target: 256 * MiB,
    seconds: 5,
    stallMs: 1000,
  });
  assertEquals(result.errors, 1, "the cut-off slow reader is logged");
});

Deno.test({
  name:
    "server.ts --idle-timeout closes 1,000 silent connections on time and --max-conns refuses the excess cleanly while admitted clients work",
  ignore: slowlorisSkip !== undefined,
  fn: async () => {
    const result = await slowloris({
      seed: SEED,
      connections: 1000,
      idleTimeout: 2,
      maxConns: 100,
    });
    assertEquals(result.cases, 2000);
  },
});

Deno.test({
  name:
    "server.ts out of file descriptors logs the accept failures, neither exits nor spins, and recovers when the flood ends",
  ignore: descriptorSkip !== undefined,
  fn: async () => {
    const result = await descriptorExhaustion({
      seed: SEED,
      limit: 256,
      flood: 512,
      holdSeconds: 2,
    });
    assertEquals(result.cases, 512);
  },
});

Deno.test("server.ts --metrics under every side-channel attack at once (floods, trickled heads, silent and bad requests, unread pages, churn) loses no byte, answers every scrape and lets go of every socket", async () => {
  // The quick size checks what must hold; the rate under the flood is a
  // figure of `deno task stress --only hostile-http` (BENCHMARKS.md).
  const result = await hostileHttp({
    seed: SEED,
    seconds: 4,
    scale: 0.25,
    minRatio: 0,
  });
  assertEquals(result.errors, 0);
});

Deno.test("server.ts TLS relay under every attack of issue 19 at once (strays on its inner port, log injection through PROXY v2, balancer checks) and client.ts against a flood: no byte lost, no line unescaped, the relay moves, descriptors come back", async () => {
  const result = await hostile({ seed: SEED, seconds: 4 });
  assertGreater(result.cases, 0, "no good exchange");
});

Deno.test("server.ts whose stdout is piped and never read serves 1,000 sequential and 100 concurrent clients exactly and exits 0 soon after SIGTERM", async () => {
  const result = await logStall({
    seed: SEED,
    sequential: 1000,
    concurrent: 100,
  });
  assertEquals(result.cases, 1100);
});

Deno.test("server.ts on SIGTERM gives 50 clients mid-transfer their whole replies, cuts off stalled ones after --grace without counting them as errors, and exits 0", async () => {
  const result = await shutdownUnderLoad({
    seed: SEED,
    clients: 50,
    stalled: 5,
    grace: 2,
    allowLongGrace: false,
  });
  assertEquals(result.cases, 50);
  assertEquals(result.errors, 0, "clients cut off at shutdown are no errors");
});

Deno.test("server.ts under 6 s of mixed load serves every client exactly, counts every connection, and its memory levels off", async () => {
  const result = await soak({ seed: SEED, seconds: 6 });
  assertGreater(result.cases, 100);
});

Deno.test("countSockets() counts a process that opens and closes descriptors all the time (ls used to fail on one closed mid-listing)", async () => {
  // A child that holds 500 descriptors at a time and cycles them as fast as
  // it can: most listings of its /proc/PID/fd race with a close.
  const churner = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `while (true) {
        const files = [];
        for (let i = 0; i < 500; i++) files.push(Deno.openSync("/dev/null"));
        for (const file of files) file.close();
      }`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  try {
    for (let i = 0; i < 10; i++) {
      assertEquals(await countSockets(churner.pid), 0);
    }
  } finally {
    churner.kill("SIGKILL");
    await churner.status;
  }
});

// TLS: the scenarios of stress/tls_*.ts in quick sizes, in both accept modes
// (relayed, and with --allow-ffi).

Deno.test("server.ts --cert --key completes 100 TLS handshakes, 50 in flight, with each payload checked, no error and no socket left, relayed and with --allow-ffi", async () => {
  for (const mode of TLS_MODES) {
    const result = await tlsHandshakes({
      mode,
      seed: SEED,
      clients: 100,
      concurrency: 50,
    });
    assertEquals(result.cases, 100);
    assertEquals(result.errors, 0, mode);
  }
});

Deno.test("server.ts --cert --key logs 60 TLS clients that reset (RST) mid-handshake and mid-stream, serves others meanwhile and keeps no connection, relayed and with --allow-ffi", async () => {
  for (const mode of TLS_MODES) {
    const result = await tlsResets({ mode, seed: SEED, clients: 60 });
    if (result.skipped !== undefined) {
      console.warn(
        `reliability_test.ts: tls-resets SKIPPED: ${result.skipped}`,
      );
      return;
    }
    assertEquals(result.cases, 60);
  }
});

Deno.test("server.ts --handshake-timeout 1 closes 60 clients that stall the TLS handshake on time (FIN or RST at the peer), gives every socket back and serves TLS clients meanwhile, relayed and with --allow-ffi", async () => {
  for (const mode of TLS_MODES) {
    const result = await tlsSlowloris({
      mode,
      seed: SEED,
      clients: 60,
      handshakeTimeout: 1,
      trickleMs: 100,
    });
    assertEquals(result.cases, 60);
    assertEquals(result.errors, 60, "each stall is a failed handshake");
  }
});

Deno.test("server.ts --cert --key holds back a TLS client that sends and never reads, in bounded memory, serving others, and frees it on close, relayed and with --allow-ffi", async () => {
  for (const mode of TLS_MODES) {
    const result = await tlsSlowReader({
      mode,
      seed: SEED,
      target: 256 * MiB,
      seconds: 3,
      stallMs: 1000,
    });
    if (result.skipped !== undefined) {
      console.warn(
        `reliability_test.ts: tls-slow-reader SKIPPED: ${result.skipped}`,
      );
      return;
    }
    assertEquals(result.cases, 1);
  }
});

Deno.test("server.ts --cert --key --idle-timeout 1 really closes a TLS client that never reads: the socket goes, relayed", async () => {
  const result = await tlsIdleCutoff({ mode: "relay", idleTimeout: 1 });
  if (result.skipped !== undefined) {
    console.warn(
      `reliability_test.ts: tls-idle-cutoff SKIPPED: ${result.skipped}`,
    );
    return;
  }
  assertEquals(result.cases, 1);
});

// Deno.TlsConn.close() with a write pending leaves the socket to rustls:
// src/_tls.ts shuts such a socket down too (it used to stay ESTABLISHED).
Deno.test({
  name:
    "server.ts --cert --key --idle-timeout 1 really closes a TLS client that never reads: the socket goes, with --allow-ffi",
  fn: async () => {
    const result = await tlsIdleCutoff({ mode: "shutdown", idleTimeout: 1 });
    assertEquals(result.cases, 1);
  },
});
