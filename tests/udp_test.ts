// Copyright the upcase authors. MIT license.
// --udp on both sides, with README's permissions, checked from the peer's
// side: exact sizes up to the largest datagram on IPv4 and IPv6, real peers
// (socat, ncat, Python), the guards that make the server safe to expose (a
// looping source port, a forged broadcast source, the rate per source), and
// the client's timeouts, retries and the replies it ignores.

import {
  assert,
  assertEquals,
  assertGreater,
  assertLessOrEqual,
  assertMatch,
  assertStringIncludes,
} from "@std/assert";
import {
  serveUdp,
  UDP_RECEIVE_BUFFER_BYTES,
  type UdpEvent,
} from "../src/serve_udp.ts";
import { Receiver } from "../src/_udp_socket.ts";
import { REFLECTING_PORTS } from "../src/_udp_guard.ts";
import {
  CHILD_TIME_LIMIT_MS,
  ChildLines,
  denoRun,
  expectedUpper,
  freePort,
  isRoot,
  randomBytes,
  runClient,
  runDeno,
  ServerProcess,
  text,
  utf8,
} from "./_util.ts";

/** How long a test socket waits for a reply that should come. */
const REPLY_MS = 5_000;
/** How long a test socket listens for a reply that must not come. */
const SILENCE_MS = 500;

/** A UDP socket of the test's own, with a receiver that has a time limit. */
type TestSocket = Deno.DatagramConn & Disposable & { receiver: Receiver };

/** A UDP socket of the test's own on `hostname` (and `port`: any). */
function socketOn(hostname = "127.0.0.1", port = 0): TestSocket {
  const socket = Deno.listenDatagram({ transport: "udp", hostname, port });
  const receiver = new Receiver(socket, UDP_RECEIVE_BUFFER_BYTES);
  return Object.assign(socket, {
    receiver,
    [Symbol.dispose]: () => receiver.close(),
  });
}

/**
 * The next datagram on `socket` (a copy), or undefined after `ms`; one that
 * comes later is the next call's.
 */
async function receiveWithin(
  socket: TestSocket,
  ms: number,
): Promise<[Uint8Array, Deno.NetAddr] | undefined> {
  const got = await socket.receiver.next(ms);
  return got && [got[0].slice(), got[1]];
}

/** Starts server.ts --udp with README's permission for local clients. */
function startUdp(args: string[] = [], hostname = "127.0.0.1") {
  return ServerProcess.start(["--udp", ...args], hostname, undefined, {
    allowNet: hostname.includes(":") ? `[${hostname}]` : hostname,
  });
}

/** Runs a Python snippet to its end; its stdout. */
async function python(code: string): Promise<string> {
  const out = await new Deno.Command("python3", {
    args: ["-c", code],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  return new TextDecoder().decode(out.stdout);
}

/** Waits until a UDP socket is bound to `port` on this machine (ss). */
async function waitForUdpPort(port: number): Promise<void> {
  const deadline = Date.now() + CHILD_TIME_LIMIT_MS;
  while (Date.now() < deadline) {
    const { stdout } = await new Deno.Command("ss", {
      args: ["-Hunl", `sport = :${port}`],
      stdout: "piped",
    }).output();
    if (new TextDecoder().decode(stdout).trim() !== "") return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`nothing bound UDP port ${port}`);
}

/**
 * A UDP server of the test's own in Python: `code` runs after `s`, a
 * socket bound to `host` and `port`, and a "ready" line.
 */
async function fakeServer(
  host: string,
  port: number,
  code: string,
): Promise<ChildLines> {
  const fake = new ChildLines(
    new Deno.Command("python3", {
      args: [
        "-c",
        `import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("${host}", ${port}))
print("ready", flush=True)
${code}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  await fake.waitForLine(/^ready$/);
  return fake;
}

/** Whether this process may bind ports below 1024 and send raw packets
 * (root, as in CI). */
const ROOT_USER = await isRoot();

Deno.test("server --udp answers datagrams of 0, 1, 1472, 8192 and 65507 bytes over IPv4, each exactly, from its own port", async () => {
  await using server = await startUdp();
  using socket = socketOn();
  const to = {
    transport: "udp" as const,
    hostname: "127.0.0.1",
    port: server.port,
  };
  for (const size of [0, 1, 1472, 8192, 65_507]) {
    const sent = randomBytes(size);
    await socket.send(sent, to);
    const got = await receiveWithin(socket, REPLY_MS);
    assert(got !== undefined, `no reply to ${size} bytes`);
    assertEquals(got![0], expectedUpper(sent), `${size} bytes`);
    assertEquals(got![1].port, server.port);
  }
  const { stdout } = await server.stop("SIGINT");
  assertMatch(
    stdout,
    /Answered 5 of 5 datagrams on 127\.0\.0\.1:\d+ \(UDP\) from 1 source: 75\.2 kB in, 75\.2 kB out, up /,
  );
});

Deno.test("server --udp answers the largest IPv6 datagram, 65527 bytes, on ::1", async () => {
  await using server = await startUdp([], "::1");
  using socket = socketOn("::1");
  const sent = randomBytes(65_527);
  await socket.send(sent, {
    transport: "udp",
    hostname: "::1",
    port: server.port,
  });
  const got = await receiveWithin(socket, REPLY_MS);
  assert(got !== undefined, "no reply");
  assertEquals(got![0], expectedUpper(sent));
});

Deno.test("server --udp --once answers the first 80 bytes of a datagram and drops the rest of it, as read(fd, buf, MAXLINE) does", async () => {
  await using server = await startUdp(["--once", "--trace"]);
  using socket = socketOn();
  const sent = utf8("x".repeat(100));
  await socket.send(sent, {
    transport: "udp",
    hostname: "127.0.0.1",
    port: server.port,
  });
  const got = await receiveWithin(socket, REPLY_MS);
  assertEquals(text(got![0]), "X".repeat(80));
  await server.waitForLine(
    /^\[udp\] recvfrom\(\): 100 bytes from 127\.0\.0\.1:\d+, one datagram, its edges kept; --once keeps 80: read\(fd, buf, 80\)/,
  );
});

Deno.test("server --udp answers socat, ncat -u and a Python socket", async () => {
  await using server = await startUdp();
  const port = String(server.port);
  const socat = await new Deno.Command("socat", {
    args: ["-t", "2", "-", `UDP:127.0.0.1:${port}`],
    stdin: "piped",
    stdout: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  const writer = socat.stdin.getWriter();
  await writer.write(utf8("from socat\n"));
  await writer.close();
  assertEquals(text((await socat.output()).stdout), "FROM SOCAT\n");
  // ncat -u stops at stdin's end: stdin stays open until the reply is in.
  const child = new Deno.Command("ncat", {
    args: ["-u", "127.0.0.1", port],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  await using ncat = new ChildLines(child);
  const input = child.stdin.getWriter();
  await input.write(utf8("from ncat\n"));
  await ncat.waitForLine(/^FROM NCAT$/);
  await input.close();

  const py = await python(`
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"from python", ("127.0.0.1", ${port}))
data, addr = s.recvfrom(65536)
print(data.decode(), addr[1])
`);
  assertEquals(py.trim(), `FROM PYTHON ${port}`);
});

Deno.test(
  "server --udp never answers a datagram from the source port of a service that answers (echo 7, chargen 19), and says so once",
  {
    ignore: !ROOT_USER,
  },
  async () => {
    await using server = await startUdp();
    const out = await python(`
import socket
for port in (7, 19, 7):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.settimeout(${SILENCE_MS / 1000})
    s.sendto(b"loop", ("127.0.0.1", ${server.port}))
    try:
        s.recvfrom(100)
        print("answered", port)
    except socket.timeout:
        print("silent", port)
    s.close()
`);
    assertEquals(out, "silent 7\nsilent 19\nsilent 7\n");
    await server.waitForLine(
      /^dropped a datagram from 127\.0\.0\.1 at PORT 7: port 7 is echo's, a service that answers, so a reply could start a loop/,
    );
    const { stdout } = await server.stop("SIGINT");
    assertStringIncludes(stdout, "dropped 3 reflecting-port");
    assertEquals(stdout.match(/^dropped a datagram/gm)?.length, 1);
  },
);

Deno.test(
  "server --udp drops datagrams from forged broadcast and multicast sources (a raw socket as root), and answers the next honest one",
  {
    ignore: !ROOT_USER,
  },
  async () => {
    await using server = await startUdp();
    using socket = socketOn();
    await python(`
import socket, struct
def checksum(b):
    s = sum(struct.unpack("!10H", b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for source in ("255.255.255.255", "224.0.0.1", "239.1.2.3", "127.255.255.255"):
    udp = struct.pack("!HHHH", 40000, ${server.port}, 13, 0) + b"spoof"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(source), socket.inet_aton("127.0.0.1"))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    raw.sendto(ip + udp, ("127.0.0.1", 0))
`);
    await socket.send(utf8("honest"), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: server.port,
    });
    const got = await receiveWithin(socket, REPLY_MS);
    assertEquals(text(got![0]), "HONEST");
    const { stdout } = await server.stop("SIGINT");
    assertMatch(
      stdout,
      /Answered 1 of 5 datagrams .* dropped 4 broadcast-source/,
    );
    assertMatch(
      stdout,
      /^dropped a datagram from 255\.255\.255\.255 at PORT 40000: a broadcast or multicast address sends no datagrams/m,
    );
  },
);

Deno.test("server --udp-rate: a flood from one source gets at most the rate back, while another source is served", async () => {
  // Two local sources: the server's grant names both hosts.
  await using server = await ServerProcess.start(
    ["--udp", "--udp-rate", "20", "-q"],
    "127.0.0.1",
    undefined,
    { allowNet: "127.0.0.1,127.0.0.2" },
  );
  using flooder = socketOn("127.0.0.1");
  using other = socketOn("127.0.0.2");
  const to = {
    transport: "udp" as const,
    hostname: "127.0.0.1",
    port: server.port,
  };
  const started = performance.now();
  let answered = 0;
  const counting = (async () => {
    while (await receiveWithin(flooder, SILENCE_MS * 2)) answered++;
  })();
  for (let i = 0; i < 500; i++) await flooder.send(utf8(`flood ${i}`), to);
  await other.send(utf8("other"), to);
  const got = await receiveWithin(other, REPLY_MS);
  assertEquals(text(got![0]), "OTHER");
  await counting;
  const seconds = (performance.now() - started) / 1000;
  // A burst of 20, then 20 a second.
  assertGreater(answered, 0);
  assertLessOrEqual(answered, 20 + Math.ceil(20 * seconds));
  // The kernel may drop some of the flood itself (a full receive buffer:
  // UDP has no flow control); what the server got, it answered or counted.
  const { stdout } = await server.stop("SIGINT");
  const [, sent, received, dropped] = stdout.match(
    /Answered (\d+) of (\d+) datagrams .* dropped (\d+) rate/,
  ) ?? [];
  assertEquals(Number(sent), answered + 1, stdout);
  assertEquals(Number(dropped), Number(received) - Number(sent), stdout);
});

Deno.test("server --udp: the source table is capped and forgets the least recently seen source first", async () => {
  const events: UdpEvent[] = [];
  await using server = serveUdp({
    hostname: "127.0.0.1",
    port: 0,
    rate: 1,
    maxSources: 2,
    onEvent: (e) => events.push(e),
  });
  const sockets = ["127.0.0.1", "127.0.0.2", "127.0.0.3"].map(socketOn);
  try {
    const send = async (s: TestSocket) => {
      await s.send(utf8("x"), server.addr);
      return await receiveWithin(s, SILENCE_MS);
    };
    assert(await send(sockets[0]!)); // .1: its one token
    assert(await send(sockets[1]!)); // .2
    assertEquals(await send(sockets[0]!), undefined); // .1: past its rate
    assert(await send(sockets[2]!)); // .3 evicts .2, the least recent
    assert(await send(sockets[1]!)); // .2 again: new, a full bucket
    assertEquals(
      events.filter((e) => e.type === "udp-source").length,
      4,
    );
  } finally {
    for (const s of sockets) s[Symbol.dispose]();
  }
});

Deno.test("server --udp says in one line, exit 2, that it needs --allow-net for its clients' host with any port", async () => {
  const port = freePort();
  const out = await runDeno(denoRun("server.ts", `127.0.0.1:${port}`, [
    "--udp",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
  ]));
  assertEquals(out.code, 2);
  assertEquals(
    out.stderr,
    "error: Permission denied: a UDP server sends each reply to its client's address and port, and Deno checks every one: grant --allow-net=127.0.0.1 (any port: local clients), or --allow-net to answer anyone\n",
  );
  const wildcard = await runDeno(
    denoRun("server.ts", `0.0.0.0:${port}`, ["--udp", "--port", String(port)]),
  );
  assertEquals(wildcard.code, 2);
  assertStringIncludes(wildcard.stderr, "grant --allow-net (any host)");
});

Deno.test("server --udp with a flag that means nothing for datagrams is a usage error naming it", async () => {
  for (
    const [flags, says] of [
      [["--unicode"], "--unicode: a Unicode reply can be longer"],
      [["--workers", "2"], "--workers: Deno's UDP socket has no SO_REUSEPORT"],
      [["--proxy-protocol"], "--proxy-protocol"],
      [["--max-conns", "5"], "--max-conns: UDP has no connections"],
      [["--idle-timeout", "5"], "--idle-timeout"],
      [["--grace", "5"], "--grace"],
      [["--backlog", "5"], "--backlog"],
    ] as const
  ) {
    const out = await runDeno(
      denoRun("server.ts", "127.0.0.1", ["--udp", ...flags]),
    );
    assertEquals(out.code, 1, flags.join(" "));
    assertStringIncludes(
      out.stderr,
      `error: Conflicting flags: --udp cannot be combined with ${says}`,
    );
    assertEquals(out.stderr.split("\n").length, 2, out.stderr);
  }
  const rate = await runDeno(
    denoRun("server.ts", "127.0.0.1", ["--udp-rate", "5"]),
  );
  assertEquals(rate.code, 1);
  assertStringIncludes(rate.stderr, "--udp-rate goes with --udp");
});

Deno.test("client --udp sends one datagram and prints the reply, against upcase and against socat's tr", async () => {
  await using server = await startUdp(["-q"]);
  const upcase = await runClient(server.port, ["--udp", "hello, udp"], {
    allowNet: "127.0.0.1",
  });
  assertEquals(upcase.code, 0, upcase.stderr);
  assertEquals(upcase.stdout, "Response from server:\nHELLO, UDP\n");
  const port = freePort();
  await using _socat = new ChildLines(
    new Deno.Command("socat", {
      args: [`UDP-RECVFROM:${port},bind=127.0.0.1,fork`, "EXEC:tr a-z A-Z"],
      stdout: "piped",
      stderr: "piped",
    }).spawn(),
  );
  await waitForUdpPort(port);
  const out = await runClient(
    port,
    ["--udp", "--timeout", "5", "hello, socat"],
    {
      allowNet: "127.0.0.1",
    },
  );
  assertEquals(out.code, 0, out.stderr);
  assertEquals(out.stdout, "Response from server:\nHELLO, SOCAT\n");
});

Deno.test("client --udp over IPv6 with --allow-net=[::1]", async () => {
  await using server = await startUdp(["-q"], "::1");
  const out = await runClient(server.port, ["--udp", "--host", "::1", "v6"], {
    allowNet: "[::1]",
  });
  assertEquals(out.code, 0, out.stderr);
  assertEquals(out.stdout, "Response from server:\nV6\n");
});

Deno.test("client --udp - cuts stdin into datagrams of --size bytes, each answered in turn, every byte back in order", async () => {
  await using server = await startUdp(["--udp-rate", "0", "-q"]);
  const input = "abcdefghijklmnopqrstuvwxyz0123456789\n".repeat(270).slice(
    0,
    10_000,
  );
  const out = await runClient(
    server.port,
    ["--udp", "--size", "1000", "-q", "-"],
    { allowNet: "127.0.0.1", stdin: utf8(input) },
  );
  assertEquals(out.code, 0, out.stderr);
  assertEquals(out.stdout, input.toUpperCase());
  const { stdout } = await server.stop("SIGINT");
  assertMatch(stdout, /Answered 10 of 10 datagrams/);
});

Deno.test("client --udp -i sends one datagram per line", async () => {
  await using server = await startUdp(["-q"]);
  const out = await runClient(server.port, ["--udp", "-i"], {
    allowNet: "127.0.0.1",
    stdin: utf8("one\ntwo\nthree"),
  });
  assertEquals(out.code, 0, out.stderr);
  assertEquals(out.stdout, "ONE\nTWO\nTHREE");
});

Deno.test("client --udp with no server: retries, then one line and exit 6 naming the datagram", async () => {
  const port = freePort();
  const out = await runClient(
    port,
    ["--udp", "--timeout", "0.2", "--retries", "1", "--trace", "-"],
    { allowNet: "127.0.0.1", stdin: utf8("lost") },
  );
  assertEquals(out.code, 6);
  assertEquals(out.stderr.match(/^\[udp\] sendto\(\)/gm)?.length, 2);
  assertStringIncludes(
    out.stderr,
    `error: No reply: datagram 1 (bytes 1 to 4) to 127.0.0.1:${port} got no answer in 2 tries, 0.2 s each`,
  );
});

Deno.test("client --udp ignores a reply from another port, and accepts one from another address of the server's port", async () => {
  // A server on 0.0.0.0 answers a datagram sent to 127.0.0.2 from
  // 127.0.0.1; a stranger's datagram from another port comes first.
  const port = freePort();
  await using _fake = await fakeServer(
    "0.0.0.0",
    port,
    `
data, addr = s.recvfrom(65536)
other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
other.sendto(b"STRANGER", addr)
s.sendto(data.upper(), addr)
`,
  );
  const out = await runClient(
    port,
    ["--udp", "--host", "127.0.0.2", "--trace", "hi"],
    { allowNet: "127.0.0.2,127.0.0.1" },
  );
  assertEquals(out.code, 0, out.stderr);
  assertEquals(out.stdout, "Response from server:\nHI\n");
  assertMatch(
    out.stderr,
    /from 127\.0\.0\.1:\d+: not the server's port \d+, ignored/,
  );
  assertMatch(
    out.stderr,
    new RegExp(
      `recvfrom\\(\\): 2 bytes from 127\\.0\\.0\\.1:${port} \\(not 127\\.0\\.0\\.2, where it was sent`,
    ),
  );
});

Deno.test("client --udp with a port-scoped --allow-net says the grant it needs, exit 2", async () => {
  const out = await runClient(6666, ["--udp", "hi"]);
  assertEquals(out.code, 2);
  assertEquals(
    out.stderr,
    "error: Permission denied: a UDP client sends from a socket of its own on 127.0.0.1 (a port the kernel picks), and Deno checks that port too: grant --allow-net=127.0.0.1 (any port), not only 127.0.0.1:6666\n",
  );
});

Deno.test("the ports never answered are the well-known services that reply", () => {
  for (const port of [7, 13, 17, 19, 37, 53, 123]) {
    assert(REFLECTING_PORTS.has(port), String(port));
  }
});

Deno.test("client --bench rtt --udp checks every reply byte and counts no loss on loopback against --udp-rate 0", async () => {
  await using server = await startUdp(["--udp-rate", "0", "-q"]);
  const out = await runClient(server.port, [
    "--udp",
    "--bench",
    "rtt",
    "--connections",
    "4",
    "--duration",
    "0.5",
    "--json",
  ], { allowNet: "127.0.0.1" });
  assertEquals(out.code, 0, out.stderr);
  const report = JSON.parse(out.stdout);
  assertGreater(report.requests, 0);
  assertEquals(report.errors, 0);
  assertEquals(report.lost, 0);
  const { stdout } = await server.stop("SIGINT");
  const [, answered] = stdout.match(/Answered (\d+) of/) ?? [];
  // Each verified round trip is a datagram the server answered.
  assert(Number(answered) >= report.requests, stdout);
});

Deno.test("client --udp with --bench stream, --tls or --unix is a usage error naming it", async () => {
  for (
    const [flags, says] of [
      [["--bench", "stream"], "--bench stream: only rtt has a UDP form"],
      [["--tls"], "--tls: DTLS is not supported"],
      [["--proxy-protocol", "v1", "x"], "--proxy-protocol"],
    ] as const
  ) {
    const out = await runClient(6666, ["--udp", ...flags], {
      allowNet: "127.0.0.1",
    });
    assertEquals(out.code, 1, flags.join(" "));
    assertStringIncludes(
      out.stderr,
      `error: Conflicting flags: --udp cannot be combined with ${says}`,
    );
  }
});

Deno.test("server --udp --log-format json: one record for the listen, the new source and the summary, each valid JSON", async () => {
  await using server = await ServerProcess.start(
    ["--udp", "--log-format", "json"],
    "127.0.0.1",
    undefined,
    { allowNet: "127.0.0.1" },
  );
  using socket = socketOn();
  await socket.send(utf8("json"), {
    transport: "udp",
    hostname: "127.0.0.1",
    port: server.port,
  });
  assertEquals(text((await receiveWithin(socket, REPLY_MS))![0]), "JSON");
  const { stdout } = await server.stop("SIGINT");
  const records = stdout.trim().split("\n").map((line) => JSON.parse(line));
  assertEquals(records.map((r) => r.event), [
    "listen",
    "udp-source",
    "summary",
  ]);
  assertEquals(records[1].remote.startsWith("127.0.0.1:"), true);
  assertEquals(records[2].received, 1);
  assertEquals(records[2].sent, 1);
});

Deno.test("server --udp on a terminal never stops to ask for a permission: a datagram from a host it may not answer is dropped, the next client is served", async () => {
  // `script` gives the server a terminal, where Deno would prompt.
  const port = freePort();
  const command = [
    Deno.execPath(),
    ...denoRun("server.ts", "127.0.0.1", [
      "--udp",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
    ]).filter((arg) => arg !== "--no-prompt"),
  ].map((arg) => `'${arg}'`).join(" ");
  await using server = new ChildLines(
    new Deno.Command("script", {
      args: ["-qfec", command, "/dev/null"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn(),
  );
  await server.waitForLine(/Answering datagrams on/);
  using stranger = socketOn("127.0.0.2");
  using honest = socketOn("127.0.0.1");
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  await stranger.send(utf8("let me in"), to);
  await server.waitForLine(/could not answer 127\.0\.0\.2 at PORT \d+/);
  await honest.send(utf8("honest"), to);
  assertEquals(text((await receiveWithin(honest, REPLY_MS))![0]), "HONEST");
  assertEquals(await receiveWithin(stranger, SILENCE_MS), undefined);
  await server.stop("SIGKILL");
});

Deno.test("server --udp never answers a datagram from its own port (another upcase on the same port) or from upcase's 6666", async () => {
  await using server = await ServerProcess.start(
    ["--udp"],
    "127.0.0.1",
    undefined,
    { allowNet: "127.0.0.1,127.0.0.2" },
  );
  {
    using twin = socketOn("127.0.0.2", server.port);
    await twin.send(utf8("loop?"), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: server.port,
    });
    assertEquals(await receiveWithin(twin, SILENCE_MS), undefined);
  }
  const { stdout } = await server.stop("SIGINT");
  assertMatch(stdout, /Answered 0 of 1 datagrams .* dropped 1 reflecting-port/);
  assertMatch(stdout, /port \d+ is upcase's, a service that answers/);
});

Deno.test("client --udp -i skips late replies to earlier datagrams and sends each line's bytes as they are", async () => {
  // A server that, before each right reply, sends again every reply it
  // sent before (late duplicates), from the right port.
  const port = freePort();
  await using _fake = await fakeServer(
    "127.0.0.1",
    port,
    `
sent = []
while True:
    data, addr = s.recvfrom(65536)
    for old in sent:
        s.sendto(old, addr)
    reply = bytes(b - 32 if 97 <= b <= 122 else b for b in data)
    s.sendto(reply, addr)
    sent.append(reply)
`,
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: denoRun("client.ts", "127.0.0.1", [
      "--port",
      String(port),
      "--udp",
      "-i",
    ]),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).spawn();
  const input = new Uint8Array([
    ...utf8("one\ncaf"),
    0xe9,
    0xff,
    ...utf8("\nthree\n"),
  ]);
  const [result] = await Promise.all([
    out.output(),
    (async () => {
      const w = out.stdin.getWriter();
      await w.write(input);
      await w.close();
    })(),
  ]);
  assertEquals(result.code, 0, new TextDecoder().decode(result.stderr));
  assertEquals(
    result.stdout,
    new Uint8Array([...utf8("ONE\nCAF"), 0xe9, 0xff, ...utf8("\nTHREE\n")]),
  );
});

Deno.test("client --udp - | head -c 1: a reader that stops is not an error", async () => {
  await using server = await startUdp(["--udp-rate", "0", "-q"]);
  const client = denoRun("client.ts", "127.0.0.1", [
    "--port",
    String(server.port),
    "--udp",
    "--size",
    "100",
    "-",
  ]).map((arg) => `'${arg}'`).join(" ");
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      `head -c 100000 /dev/zero | '${Deno.execPath()}' ${client} | head -c 1 >/dev/null; echo "\${PIPESTATUS[1]}"`,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CHILD_TIME_LIMIT_MS),
  }).output();
  assertEquals(text(out.stdout).trim(), "0", text(out.stderr));
  assertEquals(text(out.stderr), "");
});
