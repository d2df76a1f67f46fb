// Copyright the upcase authors. MIT license.
// TLS end to end on loopback: serve({ cert, key }) and connect({ tls }) in
// the library, server.ts --cert/--key and client.ts --tls as README runs
// them, both ways of freeing stalled handshakes (relay; shutdown(2) with
// --allow-ffi), checked from the peer's side, and real TLS peers (openssl,
// ncat, socat).

import { assert, assertEquals, assertMatch } from "@std/assert";
import {
  connect,
  exchange,
  request,
  serve,
  type ServeOptions,
} from "../mod.ts";
import { makeTestCerts, type TestCerts } from "./_certs.ts";
import { closeQuietly } from "../src/_io.ts";
import {
  countDescriptors,
  countSockets,
  delay,
  setOpenFileLimit,
  waitUntil,
} from "../stress/_util.ts";
import {
  assertSameBytes,
  CHILD_TIME_LIMIT_MS,
  ChildLines,
  concat,
  denoRun,
  establishedOn,
  expectedUpper,
  expectedUpperUnicode,
  freePort,
  randomBytes,
  runClient,
  runDeno,
  ServerProcess,
  text,
  utf8,
  writeStdin,
} from "./_util.ts";

let made: Promise<TestCerts> | undefined;
/** One set of certificates for the whole file (removed at exit). */
function certs(): Promise<TestCerts> {
  made ??= makeTestCerts().then((c) => {
    globalThis.addEventListener("unload", () => {
      Deno.removeSync(c.dir, { recursive: true });
    });
    return c;
  });
  return made;
}

async function pem(path: string): Promise<string> {
  return await Deno.readTextFile(path);
}

/** serve() with the test certificate on a free loopback port. */
async function tlsServer(options: ServeOptions = {}) {
  const c = await certs();
  return serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await pem(c.cert),
    key: await pem(c.key),
    ...options,
  });
}

async function caCerts(): Promise<string[]> {
  return [await pem((await certs()).ca)];
}

/**
 * Whether the real peer `name` (a Debian package) is here. Without it the
 * test is skipped with a printed reason, except in CI (CI=true), which
 * installs it: there its absence fails the test.
 */
async function have(name: string, pkg = name): Promise<boolean> {
  const { code } = await new Deno.Command("sh", {
    args: ["-c", `command -v ${name}`],
    stdout: "null",
  }).output();
  if (code === 0) return true;
  const reason = `${name} is not installed (apt-get install ${pkg})`;
  if (Deno.env.get("CI") === "true") throw new Error(reason);
  console.log(`SKIPPED: ${reason}`);
  return false;
}

/** Runs a peer program, feeding it `input`; resolves with its output. */
async function runPeer(
  cmd: string,
  args: string[],
  input: Uint8Array,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  const writer = child.stdin.getWriter();
  const [out] = await Promise.all([
    child.output(),
    writer.write(input).then(() => writer.close()),
  ]);
  return {
    code: out.code,
    stdout: out.stdout,
    stderr: text(out.stderr),
  };
}

/** Sends SIGTERM to `child`, unless it has exited. */
function terminate(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGTERM");
  } catch (err: unknown) {
    if (!(err instanceof TypeError)) throw err; // it has exited
  }
}

/** Whether a TCP socket listens on `port`, as `ss` sees it. */
async function listeningOn(port: number): Promise<boolean> {
  const { stdout } = await new Deno.Command("ss", {
    args: ["-Htln", `( sport = :${port} )`],
    stdout: "piped",
  }).output();
  return text(stdout).trim() !== "";
}

/**
 * Opens `count` TCP connections that send `bytes` (nothing, or part of a
 * ClientHello) and then stay silent; resolves with the milliseconds after
 * which each saw the server close (FIN or RST), or -1 if none did in time.
 */
async function silentClients(
  port: number,
  count: number,
  bytes: Uint8Array,
  waitMs: number,
): Promise<number[]> {
  const started = performance.now();
  return await Promise.all(
    Array.from({ length: count }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        if (bytes.length > 0) await conn.write(bytes);
        const timer = setTimeout(() => conn.close(), waitMs);
        try {
          const n = await conn.read(new Uint8Array(16));
          clearTimeout(timer);
          return n === null ? performance.now() - started : -1;
        } catch (err: unknown) {
          clearTimeout(timer);
          if (err instanceof Deno.errors.ConnectionReset) {
            return performance.now() - started;
          }
          if (err instanceof Deno.errors.BadResource) return -1; // our timer
          throw err;
        }
      } finally {
        closeQuietly(conn);
      }
    }),
  );
}

/** The first 40 bytes of a TLS 1.3 ClientHello record: a handshake cut short. */
const PARTIAL_CLIENT_HELLO = new Uint8Array([
  0x16,
  0x03,
  0x01,
  0x01,
  0x00,
  0x01,
  0x00,
  0x00,
  0xfc,
  0x03,
  0x03,
  ...new Uint8Array(29),
]);

Deno.test("serve({ cert, key }) gives 100 concurrent TLS clients their random binary payloads (0 B to 1 MiB) back upper-cased, byte for byte", async () => {
  await using server = await tlsServer();
  const tls = { caCerts: await caCerts() };
  const sizes = Array.from(
    { length: 100 },
    (_, i) => i === 0 ? 0 : Math.floor(2 ** (Math.random() * 20)),
  );
  await Promise.all(sizes.map(async (size) => {
    const payload = randomBytes(size);
    const reply = await request(payload, { port: server.addr.port, tls });
    assertSameBytes(reply, expectedUpper(payload));
  }));
  assertEquals(server.stats.accepted, 100);
  assertEquals(server.stats.errors, 0);
});

Deno.test("serve({ cert, key }) streams 64 MiB through one TLS connection and answers after close_notify (Deno's closeWrite)", async () => {
  await using server = await tlsServer();
  using conn = await connect({
    port: server.addr.port,
    tls: { caCerts: await caCerts(), serverName: "localhost" },
  });
  const block = randomBytes(1 << 20);
  const expected = expectedUpper(block);
  let received = 0;
  const result = await exchange(
    conn,
    (function* () {
      for (let i = 0; i < 64; i++) yield block;
    })(),
    (bytes) => {
      for (let i = 0; i < bytes.length; i++, received++) {
        if (bytes[i] !== expected[received % block.length]) {
          throw new Error(`reply differs at byte ${received}`);
        }
      }
    },
  );
  assertEquals(result, { sent: 64 << 20, received: 64 << 20, reset: false });
});

Deno.test("serve({ cert, key }) treats a bare FIN without close_notify (ncat --ssl) as the end of the request and sends the whole reply", async () => {
  if (!await have("ncat")) return;
  const c = await certs();
  const events: string[] = [];
  await using server = await tlsServer({
    onEvent: (e) => {
      if (e.type === "close") events.push(e.error ?? "clean");
    },
  });
  const payload = randomBytes(300_000);
  const out = await runPeer("ncat", [
    "--ssl",
    "--ssl-verify",
    "--ssl-trustfile",
    c.ca,
    "--ssl-servername",
    "localhost",
    "127.0.0.1",
    String(server.addr.port),
  ], payload);
  assertEquals(out.code, 0, out.stderr);
  assertSameBytes(out.stdout, expectedUpper(payload));
  await server.shutdown({ grace: 1000 });
  assertEquals(events, ["clean"]);
});

Deno.test("serve({ cert, key }) serves a TLS 1.2 client (openssl s_client -tls1_2)", async () => {
  const c = await certs();
  await using server = await tlsServer();
  // -ign_eof: s_client keeps reading after its stdin ends (without it, it
  // quits at once); it is killed once the reply is in.
  const child = new Deno.Command("openssl", {
    args: [
      "s_client",
      "-tls1_2",
      "-brief",
      "-ign_eof",
      "-verify_return_error",
      "-CAfile",
      c.ca,
      "-servername",
      "localhost",
      "-connect",
      `127.0.0.1:${server.addr.port}`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  const stderr = new Response(child.stderr).text(); // read from the start
  await writeStdin(child, utf8("tls one point two\n"));
  let reply = "";
  for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
    reply += chunk;
    if (reply.endsWith("\n")) break;
  }
  child.kill("SIGTERM");
  await child.status;
  assertEquals(reply, "TLS ONE POINT TWO\n");
  assertMatch(await stderr, /Protocol version: TLSv1\.2/);
});

Deno.test("serve({ cert, key }) logs a plaintext client on the TLS port as one failed handshake and goes on serving TLS clients", async () => {
  const failures: string[] = [];
  await using server = await tlsServer({
    onEvent: (e) => {
      if (e.type === "open-error") failures.push(e.error);
    },
  });
  const plain = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await plain.write(utf8("hello, plaintext\n"));
  // The server closes it; whatever it sends first is no upper-cased echo.
  const buf = new Uint8Array(64);
  let got = "";
  try {
    let n: number | null;
    while ((n = await plain.read(buf)) !== null) {
      got += text(buf.subarray(0, n));
    }
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
  } finally {
    plain.close();
  }
  assert(!got.includes("HELLO"), got);
  const reply = await request("still served", {
    port: server.addr.port,
    tls: { caCerts: await caCerts() },
  });
  assertEquals(text(reply), "STILL SERVED");
  // The client saw the close; the event follows once the handshake fails.
  await waitUntil(() => failures.length > 0, 10_000, "the failed handshake");
  assertEquals(failures.length, 1);
  assertMatch(failures[0]!, /^Not TLS: the client sent bytes that are not TLS/);
  assertEquals(server.stats.handshakeErrors, 1);
});

Deno.test("serve({ cert, key, unicode: true }) upper-cases characters split across TLS records", async () => {
  await using server = await tlsServer({ unicode: true });
  using conn = await connect({
    port: server.addr.port,
    tls: { caCerts: await caCerts() },
  });
  const message = utf8("straße, ǆemal, ﬁn, Ωmega");
  // One byte per write: every multi-byte character spans TLS records.
  const chunks = Array.from(message, (b) => new Uint8Array([b]));
  const reply: Uint8Array[] = [];
  await exchange(conn, chunks, (bytes) => {
    reply.push(bytes.slice());
  });
  assertSameBytes(concat(reply), expectedUpperUnicode(message));
});

Deno.test("serve({ cert, key, once: true }) reads once over TLS, at most MAXLINE bytes, like the seed", async () => {
  await using server = await tlsServer({ once: true });
  const reply = await request("x".repeat(200), {
    port: server.addr.port,
    tls: { caCerts: await caCerts() },
  });
  assertEquals(text(reply), "X".repeat(80));
});

Deno.test("serve({ cert, key }) closes clients that never finish the handshake at handshakeTimeout and at idleTimeout: the peer gets its FIN, ss shows them gone", async () => {
  for (
    const options of [{ handshakeTimeout: 500 }, {
      handshakeTimeout: 0,
      idleTimeout: 500,
    }]
  ) {
    const failures: string[] = [];
    await using server = await tlsServer({
      ...options,
      onEvent: (e) => {
        if (e.type === "open-error") failures.push(e.error);
      },
    });
    const { port } = server.addr;
    const silent = silentClients(port, 20, new Uint8Array(0), 5000);
    const partial = silentClients(port, 20, PARTIAL_CLIENT_HELLO, 5000);
    const closedAfter = [...await silent, ...await partial];
    assert(
      closedAfter.every((ms) => ms >= 400 && ms < 3000),
      `closed after ${closedAfter.map(Math.round).join(", ")} ms`,
    );
    assertEquals(await establishedOn(port), 0);
    // Each client saw its close; each event follows once the handshake fails.
    await waitUntil(() => failures.length >= 40, 10_000, "40 failures");
    assertEquals(failures.length, 40);
    const reply = await request("after the stalls", {
      port,
      tls: { caCerts: await caCerts() },
    });
    assertEquals(text(reply), "AFTER THE STALLS");
  }
});

// The CLIs, with README's permissions.

/** server.ts --cert/--key with README's flags: relay, or --allow-ffi. */
async function startTlsServer(
  args: string[] = [],
  mode: "relay" | "shutdown" = "relay",
): Promise<ServerProcess> {
  const c = await certs();
  return await ServerProcess.start(
    ["--cert", c.cert, "--key", c.key, ...args],
    "127.0.0.1",
    undefined,
    mode === "relay"
      ? { allowNet: "127.0.0.1", flags: [`--allow-read=${c.cert},${c.key}`] }
      : { flags: [`--allow-read=${c.cert},${c.key}`, "--allow-ffi"] },
  );
}

/** client.ts with --allow-net for the port and --allow-read for the certificates. */
async function tlsClient(
  port: number,
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const c = await certs();
  const child = new Deno.Command(Deno.execPath(), {
    args: denoRun(
      "client.ts",
      `127.0.0.1:${port}`,
      ["--port", String(port), "--tls", ...args],
      [`--allow-read=${c.dir}`],
    ),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  // Its output is read while stdin is written: the reply comes back as the
  // payload goes out, and would stop the client at a full stdout pipe.
  const [out] = await Promise.all([
    child.output(),
    stdin === undefined ? undefined : writeStdin(child, stdin),
  ]);
  return { code: out.code, stdout: out.stdout, stderr: text(out.stderr) };
}

Deno.test("server.ts --cert --key and client.ts --tls --ca: the seed's exchange, stdin streaming, -i and --bench over TLS, relayed and with --allow-ffi", async () => {
  const c = await certs();
  for (const mode of ["relay", "shutdown"] as const) {
    await using server = await startTlsServer([], mode);
    assertEquals(
      server.log[0],
      `Accepting TLS connections on 127.0.0.1:${server.port} ...`,
    );
    const seed = await tlsClient(server.port, ["--ca", c.ca, "hello, tls"]);
    assertEquals(seed.stderr, "");
    assertEquals(text(seed.stdout), "Response from server:\nHELLO, TLS\n");
    const payload = randomBytes(4 << 20);
    const streamed = await tlsClient(server.port, ["--ca", c.ca, "-"], payload);
    assertEquals(streamed.stderr, "");
    assertSameBytes(streamed.stdout, expectedUpper(payload));
    const lines = await tlsClient(
      server.port,
      ["--ca", c.ca, "-i"],
      utf8("one\ntwo\n"),
    );
    assertEquals(text(lines.stdout), "ONE\nTWO\n", lines.stderr);
    for (const bench of ["rtt", "stream", "oneshot"]) {
      const out = await tlsClient(server.port, [
        "--ca",
        c.ca,
        "--bench",
        bench,
        "--duration",
        "0.5",
        "--json",
      ]);
      assertEquals(out.code, 0, out.stderr);
      const report = JSON.parse(text(out.stdout));
      assertEquals(report.errors, 0);
      assert(report.bytesReceived > 0);
    }
    // Without the read permission: exit 2, naming the flag.
    const denied = await runClient(server.port, ["--tls", "--ca", c.ca, "hi"]);
    assertEquals(denied.code, 2);
    assertEquals(
      denied.stderr,
      `error: Permission denied: reading ${c.ca} (--ca) needs --allow-read=${c.ca}\n`,
    );
    const out = await server.stop();
    assertMatch(
      out.stdout,
      /^Served \d+ connections on 127\.0\.0\.1:\d+: .* 0 errors,/m,
    );
  }
});

Deno.test("client.ts --tls explains an untrusted certificate, a name mismatch, an expired certificate, a server that is not TLS and a silent server in one line each", async () => {
  const c = await certs();
  async function client(port: number, args: string[]) {
    const out = await tlsClient(port, [...args, "hello"]);
    return { ...out, stdout: text(out.stdout) };
  }
  async function withServer(
    cert: string,
    key: string,
    check: (port: number) => Promise<void>,
  ) {
    await using server = serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: await pem(cert),
      key: await pem(key),
    });
    await check(server.addr.port);
  }
  await withServer(c.cert, c.key, async (port) => {
    const out = await client(port, []);
    assertEquals(out.code, 3);
    assertEquals(
      out.stderr,
      `error: Untrusted certificate: 127.0.0.1:${port}: no trusted CA signed the server's certificate (use --ca FILE to trust its CA)\n`,
    );
    const wrongName = await client(port, [
      "--ca",
      c.ca,
      "--servername",
      "example.test",
    ]);
    assertEquals(wrongName.code, 3);
    assertEquals(
      wrongName.stderr,
      `error: Certificate name mismatch: 127.0.0.1:${port}: the server's certificate is for localhost, 127.0.0.1, ::1, not "example.test" (use --servername NAME)\n`,
    );
  });
  await withServer(c.otherNameCert, c.otherNameKey, async (port) => {
    const out = await client(port, ["--ca", c.ca]);
    assertEquals(out.code, 3);
    assertMatch(
      out.stderr,
      /^error: Certificate name mismatch: .*: the server's certificate is for other\.test, not "127\.0\.0\.1" \(use --servername NAME\)\n$/,
    );
    const named = await client(port, [
      "--ca",
      c.ca,
      "--servername",
      "other.test",
    ]);
    assertEquals(named.stdout, "Response from server:\nHELLO\n", named.stderr);
  });
  await withServer(c.expiredCert, c.expiredKey, async (port) => {
    const out = await client(port, ["--ca", c.ca]);
    assertEquals(out.code, 3);
    assertEquals(
      out.stderr,
      `error: Expired certificate: 127.0.0.1:${port}: the server's certificate expired on 2020-01-01 (renew it, or check this machine's clock)\n`,
    );
  });
  {
    await using plain = serve({ hostname: "127.0.0.1", port: 0 });
    const out = await client(plain.addr.port, ["--ca", c.ca]);
    assertEquals(out.code, 3);
    assertEquals(
      out.stderr,
      `error: Not TLS: 127.0.0.1:${plain.addr.port}: the server answered the handshake with bytes that are not TLS (leave out --tls for a plaintext server)\n`,
    );
  }
  {
    // A server that accepts and says nothing: the handshake limit, exit 4.
    using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const conn of silent) held.push(conn);
    })();
    const out = await client(silent.addr.port, [
      "--ca",
      c.ca,
      "--handshake-timeout",
      "0.5",
      "--timeout",
      "0",
    ]);
    assertEquals(out.code, 4);
    assertEquals(
      out.stderr,
      `error: Timed out: no TLS handshake with 127.0.0.1:${silent.addr.port} within 0.5 s (is it a TLS server? see --handshake-timeout)\n`,
    );
    silent.close();
    await accepting.catch(() => {});
    for (const conn of held) conn.close();
  }
});

Deno.test("server.ts with --allow-ffi frees 100 stalled handshakes with shutdown(2): each peer gets its FIN at --handshake-timeout, and the descriptors come back", async () => {
  await using server = await startTlsServer(
    ["--handshake-timeout", "1", "-q"],
    "shutdown",
  );
  const fds = () => countSockets(server.child.pid);
  const before = await fds();
  const closedAfter = [
    ...await Promise.all([
      silentClients(server.port, 50, new Uint8Array(0), 6000),
      silentClients(server.port, 50, PARTIAL_CLIENT_HELLO, 6000),
    ]).then((r) => r.flat()),
  ];
  assert(
    closedAfter.every((ms) => ms >= 900 && ms < 4000),
    `closed after ${closedAfter.map(Math.round).join(", ")} ms`,
  );
  assertEquals(await establishedOn(server.port), 0);
  // shutdown(2) sends the FIN at once; the descriptor goes when the server
  // next sees to it.
  const deadline = Date.now() + 10_000;
  let after = await fds();
  while (after > before + 2 && Date.now() < deadline) {
    await delay(50);
    after = await fds();
  }
  assert(after <= before + 2, `descriptors: ${before} -> ${after}`);
  const out = await server.stop();
  assertMatch(out.stdout, /100 failed the TLS handshake/);
});

/** The TCP ports process `pid` listens on, as `ss -p` sees them. */
async function listeningPorts(pid: number): Promise<number[]> {
  const { stdout } = await new Deno.Command("ss", {
    args: ["-Htlnp"],
    stdout: "piped",
  }).output();
  return text(stdout).split("\n")
    .filter((line) => line.includes(`pid=${pid},`))
    .map((line) => Number(/:(\d+)\s/.exec(line)?.[1]));
}

/** Opens `count` TCP connections to `port` that send nothing. */
async function openSilent(port: number, count: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i++) {
    conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
  }
  return conns;
}

Deno.test("server.ts TLS relay lives through a descriptor shortage: its inner accept loop logs and retries, handshakes that time out give back their --max-conns slots, TLS clients are served after, and SIGTERM prints the summary", async () => {
  const c = await certs();
  await using server = await startTlsServer(
    ["--handshake-timeout", "1", "--max-conns", "40"],
  );
  const pid = server.child.pid;
  // Each relayed client takes three descriptors (its socket, the relay's,
  // the inner listener's): a few clients, and the next inner accept fails.
  const before = await countDescriptors(pid);
  await setOpenFileLimit(pid, before + 16);
  const silent = await openSilent(server.port, 40);
  try {
    await server.waitForLine(
      /^TLS relay: inner accept failed: Too many open files.*; retrying$/,
    );
    // Every one of them is closed at --handshake-timeout, the ones stuck
    // behind the shortage too.
    await server.waitForLines(/^TLS handshake failed from /, 40, 20_000);
  } finally {
    silent.forEach(closeQuietly);
  }
  // The descriptors come back (a client before that could fail, rightly).
  await waitUntil(
    async () => await countDescriptors(pid) <= before + 2,
    10_000,
    "descriptors back",
  );
  // Each slot came back: more clients than --max-conns, one at a time.
  for (let i = 0; i < 3; i++) {
    const out = await tlsClient(server.port, ["--ca", c.ca, "hello"]);
    assertEquals(out.stderr, "");
    assertEquals(out.code, 0);
    assertMatch(text(out.stdout), /HELLO/);
  }
  const out = await server.stop();
  assertEquals(out.code, 0);
  assertMatch(
    out.stdout,
    /^Served 3 connections on .*, 40 failed the TLS handshake, up /m,
  );
  // Deno's own warning where SSL_CERT_FILE is set (it reads that file
  // lazily, and may find no descriptor to do it with): not upcase's.
  assertEquals(
    out.stderr.split("\n").filter((line) =>
      line !== "" && !line.startsWith("Warning: Ignoring extra certs from")
    ),
    [],
  );
});

Deno.test("server.ts TLS relay bounds connections made straight to its inner port: the first is logged, every one counted (summary, /metrics), and at 64 the relay moves to a fresh inner port and goes on serving", async () => {
  const c = await certs();
  const metricsPort = freePort();
  await using server = await startTlsServer(
    ["--metrics", `127.0.0.1:${metricsPort}`],
  );
  await server.waitForLine(/^Serving metrics on /);
  const pid = server.child.pid;
  const others = (ports: number[]) =>
    ports.filter((p) => p !== server.port && p !== metricsPort);
  const listed = others(await listeningPorts(pid));
  assertEquals(listed.length, 1, `inner ports: ${listed}`);
  const inner = listed[0]!;
  const strays = await openSilent(inner, 64);
  try {
    const moved = await server.waitForLine(/^TLS relay: the inner port /);
    assertMatch(
      moved,
      new RegExp(
        `^TLS relay: the inner port ${inner} took 64 strays: moved to \\d+$`,
      ),
    );
    // One line for the burst, not 64.
    assertEquals(
      server.log.filter((line) => line.includes("connected straight to"))
        .length,
      1,
    );
    // The old inner port is closed (it had no handshake under way) ...
    await waitUntil(
      async () => !(await listeningPorts(pid)).includes(inner),
      10_000,
      `inner port ${inner} still listening`,
    );
    const next = Number(/moved to (\d+)$/.exec(moved)![1]);
    assertEquals(others(await listeningPorts(pid)), [next]);
    // ... and TLS clients are served through the new one.
    const out = await tlsClient(server.port, ["--ca", c.ca, "hello"]);
    assertEquals([out.code, out.stderr], [0, ""]);
    assertMatch(text(out.stdout), /HELLO/);
    const metrics = await (await fetch(
      `http://127.0.0.1:${metricsPort}/metrics`,
    )).text();
    assertMatch(metrics, /^upcase_tls_relay_strays_total 64$/m);
    assertMatch(metrics, /^upcase_tls_relay_moves_total 1$/m);
  } finally {
    strays.forEach(closeQuietly);
  }
  const out = await server.stop();
  assertEquals(out.code, 0);
  assertMatch(out.stdout, /, 64 strays on the TLS relay's inner port/);
});

Deno.test("server.ts --cert --key: bad set-up is one line and an exit code before listening", async () => {
  const c = await certs();
  async function server(args: string[], flags: string[]) {
    const out = await runDeno(denoRun("server.ts", "127.0.0.1", [
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      ...args,
    ], flags));
    return {
      code: out.code,
      stdout: out.stdout,
      stderr: out.stderr,
    };
  }
  const read = `--allow-read=${c.dir}`;
  const cases: [string[], string[], number, string][] = [
    [
      ["--cert", `${c.dir}/missing.pem`, "--key", c.key],
      [read],
      1,
      `error: No such file: ${c.dir}/missing.pem (--cert) does not exist\n`,
    ],
    [
      ["--cert", c.key, "--key", c.key],
      [read],
      1,
      `error: Wrong PEM: ${c.key} (--cert) holds no "-----BEGIN CERTIFICATE-----" block\n`,
    ],
    [
      ["--cert", `${c.dir}/index.txt`, "--key", c.key],
      [read],
      1,
      `error: Not PEM: ${c.dir}/index.txt (--cert) is not a PEM file (no "-----BEGIN CERTIFICATE-----" block)\n`,
    ],
    [
      ["--cert", c.cert, "--key", c.otherNameKey],
      [read],
      1,
      `error: Key mismatch: the key in ${c.otherNameKey} does not belong to the certificate in ${c.cert}\n`,
    ],
    [
      ["--cert", c.cert],
      [read],
      1,
      "error: Missing flag: --key goes with --cert\n",
    ],
    [
      ["--cert", c.cert, "--key", c.key],
      [],
      2,
      `error: Permission denied: reading ${c.cert} (--cert) needs --allow-read=${c.cert}\n`,
    ],
    [
      ["--handshake-timeout", "3"],
      [],
      1,
      "error: Conflicting flags: --handshake-timeout goes with --cert and --key\n",
    ],
  ];
  for (const [args, flags, code, stderr] of cases) {
    const out = await server(args, flags);
    assertEquals(
      [out.code, out.stderr, out.stdout],
      [code, stderr, ""],
      args.join(" "),
    );
  }
});

Deno.test("client.ts --tls --cert --key presents a client certificate (socat OPENSSL-LISTEN with verify=1), and without one says the server wants it", async () => {
  if (!await have("socat")) return;
  const c = await certs();
  const combined = `${c.dir}/socat-server.pem`;
  await Deno.writeTextFile(
    combined,
    await pem(`${c.dir}/server.pem`) + await pem(c.key),
  );
  using probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const socat = new Deno.Command("socat", {
    args: [
      `OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,cert=${combined},cafile=${c.ca},verify=1`,
      "EXEC:tr a-z A-Z",
    ],
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  let exited = false;
  const status = socat.status.finally(() => {
    exited = true;
  });
  try {
    // socat listens a moment after it starts (if it fails, the client says).
    await waitUntil(
      async () => exited || await listeningOn(port),
      15_000,
      "socat to listen",
    );
    const read = `--allow-read=${c.dir}`;
    const client = async (args: string[]) => {
      const out = await runDeno(denoRun("client.ts", `127.0.0.1:${port}`, [
        "--port",
        String(port),
        "--tls",
        "--ca",
        c.ca,
        ...args,
        "mutual tls",
      ], [read]));
      return {
        code: out.code,
        stdout: out.stdout,
        stderr: out.stderr,
      };
    };
    const ok = await client(["--cert", c.clientCert, "--key", c.clientKey]);
    assertEquals(ok, {
      code: 0,
      stdout: "Response from server:\nMUTUAL TLS\n",
      stderr: "",
    });
    const without = await client([]);
    assertEquals(without.code, 3);
    assertMatch(
      without.stderr,
      /^error: TLS handshake failed: 127\.0\.0\.1:\d+: the server sent the alert CertificateRequired \(it wants a client certificate: use --cert FILE --key FILE\)\n$/,
    );
  } finally {
    terminate(socat);
    await status;
  }
});

Deno.test("README.md's TLS commands work as written: the openssl steps make a CA and a certificate, the narrow and the --allow-ffi server commands serve the client command", async () => {
  const readme = await Deno.readTextFile(
    new URL("../README.md", import.meta.url),
  );
  const section = readme.split("\n## TLS\n")[1]!.split("\n## ")[0]!;
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) =>
    m[1]!
  );
  assertEquals(blocks.length, 3, "three sh blocks in README's TLS section");
  const [make, serveAndAsk, narrow] = blocks as [string, string, string];
  const dir = await Deno.makeTempDir();
  try {
    const sh = await new Deno.Command("sh", {
      args: ["-ec", make],
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    assertEquals(sh.code, 0, text(sh.stderr));
    const [ffiServer, client] = serveAndAsk.trim().split("\n");
    for (const server of [ffiServer!, narrow.trim()]) {
      // README's command on a free port of 127.0.0.1 instead of 0.0.0.0:6666.
      using probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = probe.addr.port;
      probe.close();
      // README's line, run by sh in the folder of the certificates.
      const shell = (line: string, extra: string) =>
        new Deno.Command("sh", {
          args: [
            "-c",
            line.replaceAll("0.0.0.0:6666", `127.0.0.1:${port}`)
              .replaceAll("127.0.0.1:6666", `127.0.0.1:${port}`)
              .replace(/^deno run/, `"${Deno.execPath()}" run --no-prompt`)
              .replace(
                / (server|client)\.ts /,
                (_, name) =>
                  ` ${new URL(`../${name}.ts`, import.meta.url).pathname} `,
              ) + extra,
          ],
          cwd: dir,
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
        });
      // Its log and stderr are read from the start and all the time.
      await using child = new ChildLines(
        shell(`exec ${server}`, ` --host 127.0.0.1 --port ${port}`).spawn(),
      );
      assertEquals(
        await child.waitForLine(/^/),
        `Accepting TLS connections on 127.0.0.1:${port} ...`,
      );
      const ask = await shell(client!, ` --port ${port}`).output();
      assertEquals(text(ask.stderr), "");
      assertEquals(text(ask.stdout), "Response from server:\nHELLO, TLS\n");
      assertEquals((await child.stop("SIGTERM")).code, 0);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
