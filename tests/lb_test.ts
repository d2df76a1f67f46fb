// Copyright the upcase authors. MIT license.
// upcase behind real load balancers on loopback: HAProxy 2.6 running
// deploy/haproxy.cfg (PROXY v2, health checks with check-send-proxy and
// /healthz, a rolling restart) and nginx running deploy/nginx.conf (stream,
// PROXY v1). The clients are a small Python program, since Deno.connect
// cannot choose its source address: each binds its own 127.0.0.x, so the
// servers' logs can show that the address they print is the client's, not the
// balancer's (127.0.0.1). A missing balancer skips its tests, except in CI.

import { assert, assertEquals, assertGreater } from "@std/assert";
import {
  freePort,
  readToEnd,
  ROOT,
  ServerProcess,
  text,
  utf8,
  writeAll,
} from "./_util.ts";

const HAPROXY = "/usr/sbin/haproxy";
const NGINX = "/usr/sbin/nginx";
const NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so";
const PYTHON = "/usr/bin/python3";
const HAPROXY_CFG = new URL("deploy/haproxy.cfg", ROOT).pathname;
const NGINX_CONF = new URL("deploy/nginx.conf", ROOT).pathname;

/** Where the three servers listen: one address each, the same two ports. */
const SERVER_HOSTS = ["127.0.0.21", "127.0.0.22", "127.0.0.23"] as const;
/** The source addresses of the clients, one client program each. */
const CLIENT_SOURCES = ["127.0.0.5", "127.0.0.6", "127.0.0.7"] as const;
/** A peer that runs longer than this is killed, failing its test. */
const PEER_TIME_LIMIT_MS = 30_000;
/** A client program stops by itself after this long (SECONDS). */
const CLIENT_SECONDS = 25;

/**
 * The client: one-shot exchanges (connect from SOURCE, send, half-close,
 * read to EOF) one after another, COUNT of them, or with COUNT 0 until its
 * stdin ends; never longer than SECONDS. The payload sizes cycle through
 * SIZES, the bytes are random (seeded), the reply must be exactly
 * `payload.upper()` (bytes.upper() changes a-z only, like C toupper). One JSON
 * line per exchange: the source port, the size and the error, if any.
 */
const CLIENT = `
import json, random, socket, sys, threading, time
host, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
count, seconds, seed = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
sizes = [int(s) for s in sys.argv[7].split(",")]
rng = random.Random(seed)
stop = threading.Event()
if count == 0:
    def wait_for_eof():
        sys.stdin.buffer.read()
        stop.set()
    threading.Thread(target=wait_for_eof, daemon=True).start()

def exchange(payload):
    sock = socket.socket()
    sock.settimeout(10)
    local = 0
    try:
        sock.bind((source, 0))
        local = sock.getsockname()[1]
        sock.connect((host, port))
        failed = []
        def send():
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except OSError as err:
                failed.append(repr(err))
        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        sender.join()
        if failed:
            return local, "send: " + failed[0]
        reply = b"".join(chunks)
        if reply != payload.upper():
            at = next((i for i, (a, b) in enumerate(zip(reply, payload.upper())) if a != b), min(len(reply), len(payload)))
            return local, "wrong reply: %d bytes for %d, first difference at %d" % (len(reply), len(payload), at)
        return local, None
    except OSError as err:
        return local, repr(err)
    finally:
        sock.close()

deadline = time.monotonic() + seconds
done = 0
while time.monotonic() < deadline and (done < count if count else not stop.is_set()):
    payload = rng.randbytes(sizes[done % len(sizes)])
    local, error = exchange(payload)
    print(json.dumps({"port": local, "size": len(payload), "error": error}), flush=True)
    done += 1
`;

/** What one client program did. */
interface ClientReport {
  source: string;
  exchanges: { port: number; size: number; error: string | null }[];
  stderr: string;
}

/** A client program running until its stdin ends (COUNT 0). */
interface RunningClient {
  /** Ends its stdin and collects the report. */
  finish(): Promise<ClientReport>;
}

/**
 * A client program and its output, which is read from the moment it starts:
 * it prints a line per exchange, and a pipe nobody reads fills at 64 KiB and
 * stops it mid-run.
 */
interface SpawnedClient {
  child: Deno.ChildProcess;
  output: Promise<Deno.CommandOutput>;
}

/** Spawns the client program against the balancer at 127.0.0.1:`port`. */
function spawnClient(
  port: number,
  source: string,
  count: number,
  sizes: readonly number[],
): SpawnedClient {
  const child = new Deno.Command(PYTHON, {
    args: [
      "-c",
      CLIENT,
      "127.0.0.1",
      String(port),
      source,
      String(count),
      String(CLIENT_SECONDS),
      String(source.split(".").at(-1)),
      sizes.join(","),
    ],
    stdin: count === 0 ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(PEER_TIME_LIMIT_MS),
  }).spawn();
  return { child, output: child.output() };
}

async function report(
  source: string,
  client: SpawnedClient,
): Promise<ClientReport> {
  const { code, stdout, stderr } = await client.output;
  const out = text(stdout).trim();
  const exchanges = out === ""
    ? []
    : out.split("\n").map((line) =>
      JSON.parse(line) as ClientReport["exchanges"][number]
    );
  assertEquals(code, 0, `client from ${source} failed: ${text(stderr)}`);
  return { source, exchanges, stderr: text(stderr) };
}

/** Runs `count` exchanges from `source` to 127.0.0.1:`port`. */
async function runClient(
  port: number,
  source: string,
  count: number,
  sizes: readonly number[],
): Promise<ClientReport> {
  return await report(source, spawnClient(port, source, count, sizes));
}

/** Starts a client that goes on until {@linkcode RunningClient.finish}. */
function startClient(
  port: number,
  source: string,
  sizes: readonly number[],
): RunningClient {
  const client = spawnClient(port, source, 0, sizes);
  return {
    async finish() {
      await client.child.stdin.close();
      return await report(source, client);
    },
  };
}

/** The failed exchanges of the reports, as lines for a message. */
function failures(reports: readonly ClientReport[]): string[] {
  return reports.flatMap((r) =>
    r.exchanges.filter((e) => e.error !== null).map((e) =>
      `${r.source}:${e.port} (${e.size} B): ${e.error}`
    )
  );
}

/**
 * The reason to skip when one of `paths` is missing, or undefined. In CI
 * (CI=true) a missing peer is an error instead: CI installs them.
 */
async function missing(...paths: string[]): Promise<string | undefined> {
  for (const path of paths) {
    try {
      await Deno.stat(path);
    } catch (err: unknown) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      const reason =
        `${path} is not installed (PEERS_ONLY=1 bash .ci/run installs it)`;
      if (Deno.env.get("CI") === "true") throw new Error(reason);
      console.log(`SKIPPED: ${reason}`);
      return reason;
    }
  }
  return undefined;
}

/** Where a set of upcase servers listens. */
interface Ports {
  port: number;
  metricsPort: number;
}

/**
 * Starts upcase on `host` with `--proxy-protocol`, trusting 127.0.0.1 (the
 * balancers), with the README's permission for its two ports. The helper
 * passes `--port 0` first; the `--port` here comes later and wins.
 */
async function startUpcase(
  host: string,
  ports: Ports,
  extra: readonly string[] = [],
): Promise<ServerProcess> {
  return await ServerProcess.start(
    [
      "--port",
      String(ports.port),
      "--metrics",
      `${host}:${ports.metricsPort}`,
      "--proxy-protocol",
      "--proxy-from",
      "127.0.0.1/32",
      "--idle-timeout",
      "60",
      "--grace",
      "10",
      ...extra,
    ],
    host,
    undefined,
    { allowNet: `${host}:${ports.port},${host}:${ports.metricsPort}` },
  );
}

/** Three upcase servers on the same two ports of SERVER_HOSTS. */
async function startFarm(
  extra: readonly string[] = [],
): Promise<{ ports: Ports; servers: ServerProcess[] }> {
  for (let attempt = 1;; attempt++) {
    // Free on 127.0.0.1; almost surely on 127.0.0.2x too: else try again.
    const ports = { port: freePort(), metricsPort: freePort() };
    const started = await Promise.allSettled(
      SERVER_HOSTS.map((host) => startUpcase(host, ports, extra)),
    );
    const servers = started.flatMap((s) =>
      s.status === "fulfilled" ? [s.value] : []
    );
    if (servers.length === SERVER_HOSTS.length) return { ports, servers };
    await Promise.all(servers.map((s) => s[Symbol.asyncDispose]()));
    const failed = started.find((s) => s.status === "rejected");
    if (attempt === 3) throw (failed as PromiseRejectedResult).reason;
  }
}

/** A balancer (or any program) run in the foreground, its output kept. */
class Peer {
  readonly child: Deno.ChildProcess;
  /** Its stdout and stderr lines so far, as they come. */
  readonly log: string[] = [];
  /** Whether it has exited. */
  exited = false;
  readonly #pumps: Promise<void>[];
  readonly #status: Promise<Deno.CommandStatus>;

  constructor(command: string, args: string[], env: Record<string, string>) {
    this.child = new Deno.Command(command, {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(PEER_TIME_LIMIT_MS),
    }).spawn();
    this.#pumps = [this.child.stdout, this.child.stderr].map((stream) =>
      this.#pump(stream)
    );
    this.#status = this.child.status.then((status) => {
      this.exited = true;
      return status;
    });
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      this.log.push(...lines);
    }
    if (rest) this.log.push(rest);
  }

  /** Sends `signal` (if it still runs) and waits for the exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    if (!this.exited) {
      try {
        this.child.kill(signal);
      } catch (err: unknown) {
        if (!(err instanceof TypeError)) throw err; // already exited
      }
    }
    const status = await this.#status;
    await Promise.all(this.#pumps);
    return status;
  }
}

/** Polls `probe` every 50 ms until it returns a value; fails after `ms`. */
async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  while (true) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** HAProxy running deploy/haproxy.cfg in front of three servers. */
interface HAProxy {
  peer: Peer;
  port: number;
  statsPort: number;
}

async function startHAProxy(ports: Ports): Promise<HAProxy> {
  const port = freePort();
  const statsPort = freePort();
  const peer = new Peer(HAPROXY, ["-db", "-f", HAPROXY_CFG], {
    UPCASE_LB_BIND: `127.0.0.1:${port}`,
    UPCASE_SERVER1: SERVER_HOSTS[0],
    UPCASE_SERVER2: SERVER_HOSTS[1],
    UPCASE_SERVER3: SERVER_HOSTS[2],
    UPCASE_PORT: String(ports.port),
    UPCASE_METRICS_PORT: String(ports.metricsPort),
    UPCASE_HAPROXY_STATS: `ipv4@127.0.0.1:${statsPort}`,
  });
  const haproxy = { peer, port, statsPort };
  try {
    // Every server UP after a passing check of both steps (L7OK).
    await waitFor("HAProxy sees three servers UP", async () => {
      const rows = await serverStats(haproxy);
      return rows.length === 3 &&
          rows.every((r) => r.status === "UP" && r.check_status === "L7OK")
        ? rows
        : undefined;
    });
  } catch (err: unknown) {
    await peer.stop();
    throw new Error(`${err}; HAProxy said:\n${peer.log.join("\n")}`);
  }
  return haproxy;
}

/**
 * HAProxy's `show stat` rows of the servers of backend upcase, by column
 * name, from its stats socket; none while it is not listening yet. The
 * columns used: `status` (UP, DOWN, or on the way: "UP 1/2"),
 * `check_status` (L7OK: both steps passed; L7RSP: the expect failed; L4CON:
 * a refused connect), `chkfail`, `wretr`, `wredis`, `econ`.
 */
async function serverStats(
  haproxy: HAProxy,
): Promise<Record<string, string>[]> {
  if (haproxy.peer.exited) throw new Error("HAProxy exited");
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: haproxy.statsPort,
    });
  } catch (err: unknown) {
    if (err instanceof Deno.errors.ConnectionRefused) return [];
    throw err;
  }
  try {
    await writeAll(conn, utf8("show stat\n"));
    const [head = "", ...rows] = text(await readToEnd(conn)).trim().split("\n");
    const names = head.replace(/^# /, "").split(",");
    return rows
      .map((row) =>
        Object.fromEntries(row.split(",").map((v, i) => [names[i] ?? i, v]))
      )
      .filter((r) => r.pxname === "upcase" && /^s\d$/.test(r.svname ?? ""))
      // "* L7OK": the last result, while the next check is under way.
      .map((r) => ({
        ...r,
        check_status: r.check_status?.replace(/^\* /, "") ?? "",
      }));
  } finally {
    conn.close();
  }
}

async function serverStat(
  haproxy: HAProxy,
  name: string,
): Promise<Record<string, string>> {
  const row = (await serverStats(haproxy)).find((r) => r.svname === name);
  if (row === undefined) throw new Error(`No server ${name} in HAProxy stats`);
  return row;
}

/** Counts of equal strings. */
function tally(lines: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of lines) counts.set(line, (counts.get(line) ?? 0) + 1);
  return counts;
}

/** Takes one `line` from `counts`; false if there was none left. */
function take(counts: Map<string, number>, line: string): boolean {
  const n = counts.get(line) ?? 0;
  if (n > 0) counts.set(line, n - 1);
  return n > 0;
}

/** How long the servers' logs may take to show what the clients saw. */
const LOG_WAIT_MS = 30_000;

/**
 * Waits until the servers' logs together have two lines for each exchange of
 * `reports` that sent bytes: `received from SOURCE at PORT N` and `closed
 * SOURCE at PORT N: X bytes in, X bytes out`, with X the bytes it sent (a
 * client can read its EOF a moment before the server prints the second).
 * Then fails on any other `received from` line from those sources. The lines
 * are counted, not just found: a source port comes back in a long run. An
 * exchange of 0 bytes may have no line: its client's FIN can reach HAProxy
 * before HAProxy's connection to the server is up, and HAProxy then aborts
 * that connection (its log says "CC") and closes the client's, which is the
 * right reply to nothing. Returns how many `received from` lines from those
 * sources each server has.
 */
async function assertLogged(
  servers: readonly ServerProcess[],
  reports: readonly ClientReport[],
): Promise<number[]> {
  const sources = new Set(reports.map((r) => r.source));
  const at = (source: string, port: number) => `${source} at PORT ${port}`;
  const exchanges = (empty: boolean) =>
    reports.flatMap((r) =>
      r.exchanges.filter((e) => (e.size === 0) === empty).map((e) => ({
        where: at(r.source, e.port),
        size: e.size,
      }))
    );
  const expected = exchanges(false).flatMap(({ where, size }) => [
    `received from ${where}`,
    `closed ${where}: ${bytes(size)} in, ${bytes(size)} out`,
  ]);
  const notLogged = () => {
    const wanted = tally(expected);
    for (const server of servers) for (const l of server.log) take(wanted, l);
    return [...wanted].filter(([, n]) => n > 0).map(([l]) => l);
  };
  const deadline = Date.now() + LOG_WAIT_MS;
  let lost = notLogged();
  while (lost.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    lost = notLogged();
  }
  const received = (server: ServerProcess) =>
    server.log.filter((line) =>
      sources.has(/^received from (\S+) at PORT /.exec(line)?.[1] ?? "")
    );
  const wanted = tally(expected.filter((l) => l.startsWith("received ")));
  const empty = tally(exchanges(true).map((e) => `received from ${e.where}`));
  const extra = servers.flatMap(received).filter((l) =>
    !take(wanted, l) && !take(empty, l)
  );
  if (lost.length > 0 || extra.length > 0) {
    throw new Error(
      `${expected.length / 2} exchanges with bytes; not logged within ${
        LOG_WAIT_MS / 1000
      } s: ${lost.slice(0, 10).join("; ") || "none"}; logged but no exchange: ${
        extra.slice(0, 10).join("; ") || "none"
      }`,
    );
  }
  return servers.map((s) => received(s).length);
}

/** The server's words for `n` bytes. */
function bytes(n: number): string {
  return n === 1 ? "1 byte" : `${n} bytes`;
}

Deno.test("HAProxy with deploy/haproxy.cfg passes every byte to three upcase servers, which log each client's own 127.0.0.x address", async () => {
  if (await missing(HAPROXY, PYTHON)) return;
  const { ports, servers } = await startFarm();
  try {
    const haproxy = await startHAProxy(ports);
    try {
      const sizes = [0, 1, 13, 255, 4096, 65537, 300_000, 1 << 20];
      const reports = await Promise.all(
        CLIENT_SOURCES.map((source) =>
          runClient(haproxy.port, source, 2 * sizes.length, sizes)
        ),
      );
      assertEquals(failures(reports), []);
      // Each server counted the bytes of its clients, both ways.
      const counts = await assertLogged(servers, reports);
      for (const count of counts) assertGreater(count, 0);
      console.log(
        `48 exchanges (${
          reports.flatMap((r) => r.exchanges).reduce((n, e) => n + e.size, 0)
        } B), 0 failed; per server ${counts.join(", ")}`,
      );
    } finally {
      await haproxy.peer.stop();
    }
  } finally {
    await Promise.all(servers.map((s) => s[Symbol.asyncDispose]()));
  }
});

Deno.test("upcase's text log has no line for HAProxy's check-send-proxy checks, every 200 ms for 5 s", async () => {
  if (await missing(HAPROXY)) return;
  const { ports, servers } = await startFarm();
  try {
    const haproxy = await startHAProxy(ports);
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const rows = await serverStats(haproxy);
    await haproxy.peer.stop();
    for (const row of rows) {
      assertEquals([row.status, row.check_status], ["UP", "L7OK"]);
      assertEquals(row.chkfail, "0", `${row.svname} failed checks`);
    }
    for (const server of servers) {
      const { code, stdout, stderr } = await server.stop();
      assertEquals(code, 0);
      assertEquals(stderr, "");
      const lines = stdout.split("\n");
      assertEquals(
        lines.length,
        4,
        `more than the start and summary:\n${stdout}`,
      );
      assert(lines[0]!.startsWith("Accepting connections on "));
      assert(lines[1]!.startsWith("Serving metrics on "));
      assert(lines[2]!.startsWith("Shutting down: "));
      // e.g. "Served 27 connections on ...: 0 B in, 0 B out, 0 errors, 27 health checks, up 5s"
      const summary =
        /^Served (\d+) connections? on .*: 0 B in, 0 B out, 0 errors, (\d+) health checks?,/
          .exec(lines[3]!);
      if (!summary) throw new Error(`Unexpected summary: ${lines[3]}`);
      assertEquals(summary[1], summary[2], "a connection that was no check");
      // 5 s at inter 200 ms: about 25 checks; fewer than 15 means they stopped.
      assertGreater(Number(summary[2]), 15, lines[3]);
    }
  } finally {
    await Promise.all(servers.map((s) => s[Symbol.asyncDispose]()));
  }
});

Deno.test("HAProxy's most common check (send-proxy-v2 check check-send-proxy, no linger: each check ends with an RST) adds no line to upcase's text log: resets before or right after the header are counted as checks", async () => {
  if (await missing(HAPROXY)) return;
  const ports = { port: freePort(), metricsPort: freePort() };
  await using server = await startUpcase("127.0.0.1", ports);
  const dir = await Deno.makeTempDir({ prefix: "upcase_haproxy_" });
  try {
    const cfg = `${dir}/haproxy.cfg`;
    await Deno.writeTextFile(
      cfg,
      [
        "defaults",
        "    mode tcp",
        "    timeout connect 1s",
        "    timeout client 5s",
        "    timeout server 5s",
        "    timeout check 1s",
        "frontend f",
        `    bind 127.0.0.1:${freePort()}`,
        "    default_backend b",
        "backend b",
        `    server s1 127.0.0.1:${ports.port} send-proxy-v2 check check-send-proxy inter 200`,
        "",
      ].join("\n"),
    );
    const haproxy = new Peer(HAPROXY, ["-db", "-f", cfg], {});
    // HAProxy checks every 200 ms: 15 checks take about 3 s.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await haproxy.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const { code, stdout, stderr } = await server.stop();
  assertEquals([code, stderr], [0, ""]);
  const lines = stdout.split("\n");
  assertEquals(lines.length, 4, `more than the start and summary:\n${stdout}`);
  const summary = lines[3]!;
  assertEquals(/\d+ errors?/.exec(summary)?.[0], "0 errors", summary);
  const checks = Number(/(\d+) health checks?/.exec(summary)?.[1] ?? 0) +
    Number(/(\d+) reset before they were accepted/.exec(summary)?.[1] ?? 0);
  assertGreater(checks, 5, summary);
});

Deno.test("a rolling restart behind HAProxy (SIGTERM with --drain-delay, a new server on the same ports) fails no client and loses no byte", async () => {
  if (await missing(HAPROXY, PYTHON)) return;
  // --drain-delay 2 > inter 200 ms x fall 2 + a check, as deploy/haproxy.cfg says.
  const drain = ["--drain-delay", "2"];
  const { ports, servers } = await startFarm(drain);
  const everyServer = [...servers]; // s1, s2, s3, then the new s2
  try {
    const haproxy = await startHAProxy(ports);
    try {
      const sizes = [0, 1, 100, 3000, 20_000];
      const clients = CLIENT_SOURCES.map((source) =>
        startClient(haproxy.port, source, sizes)
      );
      let reports: ClientReport[];
      let down: Record<string, string>;
      try {
        await Promise.all(
          servers.map((s) => s.waitForLines(/^received from /, 20)),
        );
        const old = servers[1]!;
        old.child.kill("SIGTERM");
        await old.waitForLine(/^Draining: /);
        // HAProxy takes s2 out on the 503 of /healthz, while it still serves.
        down = await waitFor("HAProxy marks s2 DOWN", async () => {
          const row = await serverStat(haproxy, "s2");
          return row.status === "DOWN" ? row : undefined;
        }, 5_000);
        assert(
          !old.log.some((l) => l.startsWith("Shutting down")),
          "s2 closed its listener before HAProxy took it out",
        );
        assertEquals((await old.finish()).code, 0);
        const fresh = await startUpcase(SERVER_HOSTS[1], ports, drain);
        servers[1] = fresh;
        everyServer.push(fresh);
        await waitFor("HAProxy marks the new s2 UP", async () => {
          const row = await serverStat(haproxy, "s2");
          return row.status === "UP" ? row : undefined;
        }, 5_000);
        await fresh.waitForLines(/^received from /, 20);
      } finally {
        reports = await Promise.all(clients.map((c) => c.finish()));
      }
      assertEquals(failures(reports), []);
      const counts = await assertLogged(everyServer, reports);
      // Down on the expect of /healthz (L7RSP), not on a refused connect.
      assertEquals(down.check_status, "L7RSP", JSON.stringify(down));
      const log = haproxy.peer.log.join("\n");
      const downAt = log.search(/Server upcase\/s2 is DOWN/);
      const upAt = log.search(/Server upcase\/s2 is UP/);
      assert(downAt >= 0 && upAt > downAt, `HAProxy's log:\n${log}`);
      const old = everyServer[1]!.log;
      const draining = old.slice(old.findIndex((l) => l.startsWith("Draining")))
        .filter((l) => l.startsWith("received from ")).length;
      const retries = (await serverStats(haproxy)).map((r) =>
        `${r.svname} ${r.wretr}/${r.wredis}/${r.econ}`
      );
      console.log(
        `${reports.flatMap((r) => r.exchanges).length} exchanges, 0 failed; ` +
          `s1, old s2, s3, new s2 logged ${counts.join(", ")}; ` +
          `old s2 served ${draining} while draining; ` +
          `retries/redispatches/connect errors ${retries.join(", ")}`,
      );
    } finally {
      await haproxy.peer.stop();
    }
  } finally {
    await Promise.all(everyServer.map((s) => s[Symbol.asyncDispose]()));
  }
});

Deno.test("nginx stream with deploy/nginx.conf (proxy_protocol on, v1) in front of upcase: the server logs the client's own address", async () => {
  if (await missing(NGINX, NGINX_STREAM, PYTHON)) return;
  const host = "127.0.0.24";
  const source = "127.0.0.8";
  const ports = { port: freePort(), metricsPort: freePort() };
  await using server = await startUpcase(host, ports);
  const dir = await Deno.makeTempDir({ prefix: "upcase_nginx_" });
  try {
    const port = freePort();
    // The committed file with its @TOKENS@ filled in; here all three
    // upstream servers are the one server.
    const conf = (await Deno.readTextFile(NGINX_CONF))
      .replaceAll("@UPCASE_LB_BIND@", `127.0.0.1:${port}`)
      .replaceAll(/@UPCASE_SERVER\d@/g, host)
      .replaceAll("@UPCASE_PORT@", String(ports.port));
    const unfilled = conf.split("\n").filter((l) =>
      !l.trimStart().startsWith("#") && /@[A-Z0-9_]+@/.test(l)
    );
    assertEquals(unfilled, []);
    await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
    const nginx = new Peer(NGINX, [
      "-p",
      `${dir}/`,
      "-c",
      `${dir}/nginx.conf`,
      "-e",
      `${dir}/error.log`,
      "-g",
      "daemon off;",
    ], {});
    try {
      // nginx writes its pid file once it listens.
      await waitFor(`nginx starts: ${nginx.log.join("\n")}`, async () => {
        if (nginx.exited) throw new Error(nginx.log.join("\n"));
        try {
          return await Deno.readTextFile(`${dir}/nginx.pid`);
        } catch (err: unknown) {
          if (err instanceof Deno.errors.NotFound) return undefined;
          throw err;
        }
      });
      const sizes = [0, 1, 13, 4096, 65537, 300_000];
      const report = await runClient(port, source, sizes.length, sizes);
      assertEquals(failures([report]), []);
      await assertLogged([server], [report]);
      assertEquals(
        server.log.filter((l) => /^received from 127\.0\.0\.1 /.test(l)),
        [],
      );
    } finally {
      assertEquals((await nginx.stop("SIGQUIT")).code, 0);
    }
    const errors = (await Deno.readTextFile(`${dir}/error.log`)).split("\n")
      .filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
    assertEquals(errors, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
