// Copyright the upcase authors. MIT license.
// The PROXY protocol on real sockets: serve({ proxyProtocol }) and
// server.ts --proxy-protocol / --proxy-from / --drain-delay, client.ts
// --proxy-protocol v1|v2, headers split over many writes, bad input, a fuzz
// of random and truncated headers, and TLS behind a header. The real
// balancers (HAProxy, nginx) are in lb_test.ts.

import { assert, assertEquals, assertMatch } from "@std/assert";
import { request, serve, type ServeOptions, type ServerEvent } from "../mod.ts";
import { encodeLocalHeader, encodeProxyHeader } from "../src/_proxy_header.ts";
import { closeQuietly } from "../src/_io.ts";
import { makeTestCerts } from "./_certs.ts";
import {
  assertSameBytes,
  concat,
  denoRun,
  expectedUpper,
  randomBytes,
  readToEnd,
  runClient,
  runDeno,
  ServerProcess,
  text,
  utf8,
  writeAll,
} from "./_util.ts";
import { waitUntil } from "../stress/_util.ts";

const CLIENT: Deno.NetAddr = {
  transport: "tcp",
  hostname: "203.0.113.7",
  port: 40123,
};
const CLIENT6: Deno.NetAddr = {
  transport: "tcp",
  hostname: "2001:db8::7",
  port: 40124,
};

function destination(port: number): Deno.NetAddr {
  return { transport: "tcp", hostname: "198.51.100.1", port };
}

/** A server expecting headers, with its events. */
function proxiedServer(options: ServeOptions = {}) {
  const events: ServerEvent[] = [];
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    proxyProtocol: { timeout: 500 },
    onEvent: (e) => events.push(e),
    ...options,
  });
  return { server, events };
}

/**
 * Sends `chunks` (header and request) one write each, half-closes, and reads
 * the reply; a server that closes early gives a short (or empty) reply.
 */
async function send(
  port: number,
  chunks: Uint8Array[],
  pauseMs = 0,
): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reply = readToEnd(conn).catch((err: unknown) => {
    if (err instanceof Deno.errors.ConnectionReset) return new Uint8Array(0);
    throw err;
  });
  try {
    for (const chunk of chunks) {
      await writeAll(conn, chunk);
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
    await conn.closeWrite();
  } catch (err: unknown) {
    const gone = err instanceof Deno.errors.BrokenPipe ||
      err instanceof Deno.errors.ConnectionReset ||
      err instanceof Deno.errors.NotConnected;
    if (!gone) throw err;
  }
  try {
    return await reply;
  } finally {
    closeQuietly(conn);
  }
}

Deno.test("serve({ proxyProtocol }) takes the client from a v1 or v2 header (IPv4 and IPv6) and serves the request that follows it", async () => {
  const { server, events } = proxiedServer();
  await using _ = server;
  const { port } = server.addr;
  for (const version of [1, 2] as const) {
    for (const client of [CLIENT, CLIENT6]) {
      const payload = randomBytes(5000);
      const header = encodeProxyHeader(version, client, destination(port));
      // The request's first bytes in the same write as the header.
      const reply = await send(port, [concat([header, payload])]);
      assertSameBytes(reply, expectedUpper(payload));
    }
  }
  await waitUntil(
    () => events.filter((e) => e.type === "close").length === 4,
    5000,
    "four closes",
  );
  const remotes = events.filter((e) => e.type === "connect").map((e) =>
    e.type === "connect" && "hostname" in e.remote
      ? `${e.remote.hostname}:${e.remote.port}`
      : ""
  );
  assertEquals(remotes, [
    "203.0.113.7:40123",
    "2001:db8::7:40124",
    "203.0.113.7:40123",
    "2001:db8::7:40124",
  ]);
});

Deno.test("serve({ proxyProtocol }) reads a header that arrives one byte at a time, and loses no request byte", async () => {
  const { server } = proxiedServer({ proxyProtocol: { timeout: 5000 } });
  await using _ = server;
  const { port } = server.addr;
  for (const version of [1, 2] as const) {
    const header = encodeProxyHeader(version, CLIENT, destination(port));
    const payload = utf8("split across many reads");
    const bytes = concat([header, payload]);
    const chunks = Array.from(bytes, (b) => new Uint8Array([b]));
    const reply = await send(port, chunks, 1);
    assertEquals(text(reply), "SPLIT ACROSS MANY READS");
  }
});

Deno.test("serve({ proxyProtocol }) serves a v2 LOCAL header (a balancer's health check) as itself and marks it a check", async () => {
  const { server, events } = proxiedServer();
  await using _ = server;
  const reply = await send(server.addr.port, [
    encodeLocalHeader(),
    utf8("ok?"),
  ]);
  assertEquals(text(reply), "OK?");
  await waitUntil(
    () => events.some((e) => e.type === "close"),
    5000,
    "the close",
  );
  const close = events.find((e) => e.type === "close")!;
  assert(close.type === "close");
  assertEquals([close.reason, close.check], ["check", true]);
  assertEquals(server.stats.closed.check, 1);
});

Deno.test("serve({ proxyProtocol }) closes a connection with a bad or late header with one event each, and goes on serving", async () => {
  const { server, events } = proxiedServer();
  await using _ = server;
  const { port } = server.addr;
  const v2 = encodeProxyHeader(2, CLIENT, destination(port));
  const long = utf8(`PROXY TCP4 ${"1".repeat(120)}\r\n`);
  const bigV2 = v2.slice(0, 16);
  new DataView(bigV2.buffer).setUint16(14, 60000);
  const badVersion = v2.slice();
  badVersion[12] = 0x31;
  const badCommand = v2.slice();
  badCommand[12] = 0x2f;
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "no header",
      utf8("hello without a header"),
      /^not a PROXY protocol header/,
    ],
    ["malformed v1", utf8("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), /./],
    ["a v1 line over 107 bytes", long, /107/],
    ["a v2 length over the cap", bigV2, /4096/],
    ["an unknown version", badVersion, /version/],
    ["an unknown command", badCommand, /command/],
    [
      "nothing: the timeout",
      new Uint8Array(0),
      /no PROXY header within 0\.5 s/,
    ],
  ];
  for (const [what, bytes, reason] of cases) {
    const before = events.length;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    if (bytes.length > 0) await writeAll(conn, bytes);
    // Closed unanswered: EOF (or a reset), never a reply.
    let got: Uint8Array;
    try {
      got = await readToEnd(conn);
    } catch (err: unknown) {
      if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
      got = new Uint8Array(0);
    } finally {
      closeQuietly(conn);
    }
    assertEquals(got.length, 0, what);
    await waitUntil(
      () => events.slice(before).some((e) => e.type === "open-error"),
      5000,
      what,
    );
    const error = events.slice(before).find((e) => e.type === "open-error")!;
    assert(error.type === "open-error");
    assertEquals([error.step, error.reason], ["proxy", "header"], what);
    assertMatch(error.error, reason, what);
    // Another client is served.
    const ok = encodeProxyHeader(1, CLIENT, destination(port));
    assertEquals(text(await send(port, [ok, utf8("next")])), "NEXT");
  }
  assertEquals(server.stats.headerErrors, cases.length);
});

Deno.test("serve({ proxyProtocol }) survives 600 random, truncated and mutated headers: each closed, good clients served, nothing left open", async () => {
  const { server } = proxiedServer({ proxyProtocol: { timeout: 300 } });
  await using _ = server;
  const { port } = server.addr;
  let seed = 0x5eed;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
  const good = [
    encodeProxyHeader(1, CLIENT, destination(port)),
    encodeProxyHeader(2, CLIENT6, destination(port)),
  ];
  function mutant(): Uint8Array {
    const base = good[Math.floor(random() * 2)]!.slice();
    switch (Math.floor(random() * 4)) {
      case 0: // truncated
        return base.subarray(0, Math.floor(random() * base.length));
      case 1: // a byte changed
        base[Math.floor(random() * base.length)] = Math.floor(random() * 256);
        return base;
      case 2: // noise
        return Uint8Array.from(
          { length: Math.floor(random() * 300) },
          () => Math.floor(random() * 256),
        );
      default: // noise after the v2 signature
        return concat([
          base.subarray(0, 12),
          Uint8Array.from({ length: 40 }, () => Math.floor(random() * 256)),
        ]);
    }
  }
  for (let batch = 0; batch < 6; batch++) {
    await Promise.all(Array.from({ length: 100 }, async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await writeAll(conn, mutant());
        await conn.closeWrite();
        await readToEnd(conn);
      } catch (err: unknown) {
        if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
      } finally {
        closeQuietly(conn);
      }
    }));
    const reply = await send(port, [good[batch % 2]!, utf8("still here")]);
    assertEquals(text(reply), "STILL HERE");
  }
  await waitUntil(() => server.stats.active === 0, 5000, "all closed");
});

Deno.test("serve({ proxyProtocol: { from } }) closes peers outside the ranges unanswered and serves those inside", async () => {
  {
    const { server, events } = proxiedServer({
      proxyProtocol: { from: ["10.0.0.0/8", "::1/128"] },
    });
    await using _ = server;
    const header = encodeProxyHeader(1, CLIENT, destination(server.addr.port));
    const reply = await send(server.addr.port, [header, utf8("hi")]);
    assertEquals(reply.length, 0);
    await waitUntil(
      () => events.some((e) => e.type === "open-error"),
      5000,
      "the refusal",
    );
    const error = events.find((e) => e.type === "open-error")!;
    assert(error.type === "open-error");
    assertEquals(
      error.error,
      "127.0.0.1 is not in --proxy-from: closed unanswered",
    );
  }
  {
    const { server } = proxiedServer({
      proxyProtocol: { from: ["127.0.0.0/8"] },
    });
    await using _ = server;
    const header = encodeProxyHeader(2, CLIENT, destination(server.addr.port));
    assertEquals(
      text(await send(server.addr.port, [header, utf8("hi")])),
      "HI",
    );
  }
});

Deno.test("server.ts --proxy-protocol logs the client the header names; client.ts --proxy-protocol v1|v2 sends one in every mode", async () => {
  await using server = await ServerProcess.start(["--proxy-protocol"]);
  for (const version of ["v1", "v2"]) {
    const out = await runClient(server.port, [
      "--proxy-protocol",
      version,
      "hi",
    ]);
    assertEquals(out, {
      code: 0,
      stdout: "Response from server:\nHI\n",
      stderr: "",
    });
  }
  const stdin = await runClient(server.port, ["--proxy-protocol", "v2", "-"], {
    stdin: utf8("streamed"),
  });
  assertEquals(stdin.stdout, "STREAMED");
  const bench = await runClient(server.port, [
    "--proxy-protocol",
    "v1",
    "--bench",
    "oneshot",
    "--duration",
    "0.5",
    "--json",
  ]);
  assertEquals(JSON.parse(bench.stdout).errors, 0);
  // A raw header naming another client: the log says that client.
  const header = encodeProxyHeader(1, CLIENT, destination(server.port));
  assertEquals(text(await send(server.port, [header, utf8("x")])), "X");
  await server.waitForLine(/^received from 203\.0\.113\.7 at PORT 40123$/);
  const plain = await runClient(server.port, ["no header"]);
  assertEquals(plain.code, 5);
  await server.waitForLine(
    /^PROXY header rejected from 127\.0\.0\.1 at PORT \d+: not a PROXY protocol header/,
  );
});

Deno.test("server.ts --proxy-protocol --once reads the header first, then its one read of at most 80 bytes", async () => {
  await using server = await ServerProcess.start([
    "--proxy-protocol",
    "--once",
  ]);
  const header = encodeProxyHeader(2, CLIENT, destination(server.port));
  const reply = await send(server.port, [
    concat([header, utf8("z".repeat(200))]),
  ]);
  assertEquals(text(reply), "Z".repeat(80));
});

Deno.test("server.ts --proxy-from and --proxy-timeout: usage errors are one line, exit 1", async () => {
  async function server(args: string[]) {
    const out = await runDeno(
      denoRun("server.ts", "127.0.0.1", ["--port", "0", ...args]),
    );
    return { code: out.code, stderr: out.stderr };
  }
  const cases: [string[], string][] = [
    [
      ["--proxy-from", "10.0.0.0/8"],
      "error: Conflicting flags: --proxy-from goes with --proxy-protocol\n",
    ],
    [
      ["--proxy-timeout", "3"],
      "error: Conflicting flags: --proxy-timeout goes with --proxy-protocol\n",
    ],
    [
      ["--proxy-protocol", "--proxy-from", "10.0.0.0/33"],
      'error: Invalid --proxy-from: "10.0.0.0/33" is not an address range like 10.0.0.0/8\n',
    ],
    [
      ["--proxy-protocol", "--proxy-timeout", "0"],
      'error: Invalid --proxy-timeout: "0": the header needs some time to arrive\n',
    ],
  ];
  for (const [args, stderr] of cases) {
    assertEquals(await server(args), { code: 1, stderr }, args.join(" "));
  }
  const unix = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      new URL("../server.ts", import.meta.url).pathname,
      "--unix",
      "/tmp/upcase-x.sock",
      "--proxy-protocol",
      "--proxy-from",
      "10.0.0.0/8",
    ],
    stderr: "piped",
    stdout: "null",
    env: { NO_COLOR: "1" },
  }).output();
  assertEquals(
    [unix.code, text(unix.stderr)],
    [
      1,
      "error: Conflicting flags: --proxy-from cannot be combined with --unix (a Unix socket peer has no address)\n",
    ],
  );
});

Deno.test("server.ts --cert --key --proxy-protocol reads the header before the TLS handshake; client.ts --tls --proxy-protocol v2 talks to it", async () => {
  const certs = await makeTestCerts();
  try {
    await using server = await ServerProcess.start(
      ["--cert", certs.cert, "--key", certs.key, "--proxy-protocol"],
      "127.0.0.1",
      undefined,
      { allowNet: "127.0.0.1", flags: [`--allow-read=${certs.dir}`] },
    );
    const out = await runDeno(
      denoRun("client.ts", `127.0.0.1:${server.port}`, [
        "--port",
        String(server.port),
        "--tls",
        "--ca",
        certs.ca,
        "--proxy-protocol",
        "v2",
        "tls behind a header",
      ], [`--allow-read=${certs.dir}`]),
    );
    assertEquals(out.stderr, "");
    assertEquals(
      out.stdout,
      "Response from server:\nTLS BEHIND A HEADER\n",
    );
    // And through the library, naming another client.
    const reply = await request("lib", {
      port: server.port,
      proxyHeader: 1,
      tls: { caCerts: [await Deno.readTextFile(certs.ca)] },
    });
    assertEquals(text(reply), "LIB");
  } finally {
    await Deno.remove(certs.dir, { recursive: true });
  }
});

Deno.test("server.ts --drain-delay: /healthz answers 503 at once while the server keeps serving, then the listener closes and the grace period starts", async () => {
  using probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const metricsPort = probe.addr.port;
  probe.close();
  await using server = await ServerProcess.start(
    [
      "--metrics",
      `127.0.0.1:${metricsPort}`,
      "--drain-delay",
      "1",
      "--log-format",
      "json",
    ],
    "127.0.0.1",
    undefined,
    { allowNet: `127.0.0.1` },
  );
  await server.waitForLine(/"event":"metrics"/);
  const health = async () => {
    const r = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
    await r.body?.cancel();
    return r.status;
  };
  assertEquals(await health(), 200);
  server.child.kill("SIGTERM");
  await server.waitForLine(/"event":"drain","delayMs":1000/);
  assertEquals(await health(), 503);
  // Still accepting and serving during the drain.
  const reply = await request("during the drain", { port: server.port });
  assertEquals(text(reply), "DURING THE DRAIN");
  await server.waitForLine(/"event":"shutdown"/);
  const out = await server.finish();
  assertEquals(out.code, 0);
  const summary = JSON.parse(out.stdout.trim().split("\n").at(-1)!);
  const drained = Date.parse(summary.closeStarted) -
    Date.parse(summary.drainStarted);
  assert(drained >= 950 && drained < 3000, `drained ${drained} ms`);
});

/**
 * Runs Python: connect to `port`, send `first`, read `reply` bytes back,
 * wait until `unread()` says the server has taken the bytes, then close with
 * SO_LINGER 0 (an RST), which Deno cannot send.
 */
async function resetAfter(
  port: number,
  first: Uint8Array,
  reply: number,
): Promise<void> {
  const script = `
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", ${port}))
s.sendall(bytes.fromhex(sys.argv[1]))
got = b""
while len(got) < ${reply}:
    got += s.recv(65536)
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
`;
  const hex = Array.from(first, (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const child = new Deno.Command("python3", {
    args: ["-c", script, hex],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const output = child.stderr.pipeThrough(new TextDecoderStream()).getReader()
    .read();
  const clientPort = Number((await lines.read()).value?.trim());
  // The server's side of it has nothing left unread: the server took it.
  await waitUntil(
    async () => {
      const { stdout } = await new Deno.Command("ss", {
        args: ["-Htn", "state", "established", `( dport = :${clientPort} )`],
        stdout: "piped",
      }).output();
      return /^0\s/.test(text(stdout).trim());
    },
    5000,
    "the server reading the bytes",
  );
  const writer = child.stdin.getWriter();
  await writer.write(utf8("go\n"));
  await writer.close();
  await lines.cancel();
  const status = await child.status;
  assert(status.success, (await output).value ?? "");
}

Deno.test("serve({ proxyProtocol }) counts a reset before any byte as a check, but logs a reset after part of a header, and a LOCAL connection that sent a request and then reset", async () => {
  const { server, events } = proxiedServer();
  await using _ = server;
  const { port } = server.addr;
  const local = encodeLocalHeader();
  // A header cut short, then an RST: a broken header, not a check.
  await resetAfter(port, utf8("PROXY TCP4 1.2.3.4 "), 0);
  await waitUntil(
    () => events.some((e) => e.type === "open-error"),
    5000,
    "the open-error of the half header",
  );
  const half = events.find((e) => e.type === "open-error")!;
  assert(half.type === "open-error");
  assertEquals(half.reason, "header");
  // A LOCAL header, a request and its reply, then an RST: served as itself,
  // and its reset is an error, not a passing check.
  await resetAfter(port, concat([local, utf8("hello")]), 5);
  await waitUntil(
    () => events.some((e) => e.type === "close"),
    5000,
    "the close of the LOCAL connection",
  );
  const close = events.find((e) => e.type === "close")!;
  assert(close.type === "close");
  assertEquals([close.check, close.reason, close.bytesIn], [true, "reset", 5]);
  assert(close.error !== undefined);
  assertEquals(server.stats.closed.check, 0);
  assertEquals(server.stats.errors, 1);
});
