// Copyright the upcase authors. MIT license.
// Every bad input gets one line on stderr and a documented exit code: each
// case spawns the real CLI and checks both.

import { assertEquals } from "@std/assert";
import {
  denoRun,
  type Output,
  ROOT,
  runClient,
  runDeno,
  text,
  unixAllow,
} from "./_util.ts";

/** Runs server.ts with these arguments and permission flags. */
async function runServer(
  args: string[],
  allow = ["--allow-net=127.0.0.1:0"],
): Promise<Output> {
  return await runDeno([
    "run",
    "--no-prompt",
    ...allow,
    new URL("server.ts", ROOT).pathname,
    ...args,
  ]);
}

/** A port nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function assertError(out: Output, code: number, message: string): void {
  assertEquals(
    { code: out.code, stderr: out.stderr },
    { code, stderr: `error: ${message}\n` },
  );
}

Deno.test("an unknown flag is named, exit 1", async () => {
  assertError(
    await runServer(["--bogus"]),
    1,
    "Unknown flag: --bogus (see --help)",
  );
  assertError(
    await runClient(1, ["--colour=red", "hi"]),
    1,
    "Unknown flag: --colour (see --help)",
  );
});

Deno.test("a flag without its value is named, exit 1", async () => {
  assertError(await runServer(["--port"]), 1, "Missing value for --port");
  assertError(
    await runClient(1, ["hi", "--host"]),
    1,
    "Missing value for --host",
  );
});

Deno.test("a non-numeric, negative or too large port is refused, exit 1", async () => {
  for (const port of ["abc", "-1", "65536", "1.5"]) {
    assertError(
      await runServer(["--port", port]),
      1,
      `Invalid port: "${port}" is not an integer from 0 to 65535`,
    );
    assertError(
      await runClient(1, ["hi", "--port", port]),
      1,
      `Invalid port: "${port}" is not an integer from 1 to 65535`,
    );
  }
  // A client cannot connect to port 0 (it used to end in a stack trace).
  assertError(
    await runClient(1, ["--host", "0.0.0.0", "--port", "0", "x"]),
    1,
    'Invalid port: "0" is not an integer from 1 to 65535',
  );
});

Deno.test("a --unix path too long for a socket, a switch given a value, and /dev/zero as a PEM file are one line each, exit 1, without reading it all", async () => {
  const long = `/tmp/${"a".repeat(120)}.sock`;
  const unix =
    `Invalid --unix: the path is ${long.length} bytes; a Unix socket path holds at most 107 (use a shorter one, e.g. in /tmp)`;
  assertError(await runServer(["--unix", long], unixAllow(long)), 1, unix);
  assertError(
    await runClient(0, ["x"], { unix: long }),
    1,
    unix,
  );
  assertError(
    await runServer(["--once=maybe"]),
    1,
    'Invalid --once: "maybe": the flag takes no value',
  );
  assertError(
    await runClient(1, ["--quiet=no", "x"]),
    1,
    'Invalid --quiet: "no": the flag takes no value',
  );
  assertError(
    await runServer(
      ["--cert", "/dev/zero", "--key", "/dev/zero"],
      ["--allow-net=127.0.0.1:0", "--allow-read=/dev/zero"],
    ),
    1,
    "Not a PEM file: /dev/zero (--cert) is larger than 1 MiB",
  );
});

Deno.test("--workers with --port 0 and --allow-net=HOST:0 names the permission it needs; --metrics on another name of the server's own port says so", async () => {
  assertError(
    await runServer(
      ["--host", "127.0.0.1", "--port", "0", "--workers", "2"],
      [
        "--allow-net=127.0.0.1:0",
        `--allow-read=${new URL("src", ROOT).pathname}`,
      ],
    ),
    2,
    "Permission denied: --port 0 with --workers listens on the port the main thread picks, which needs --allow-net=127.0.0.1 (any port of the host)",
  );
  const port = closedPort();
  assertError(
    await runServer(
      [
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--metrics",
        `localhost:${port}`,
      ],
      [`--allow-net=127.0.0.1:${port},localhost:${port}`],
    ),
    1,
    `Conflicting flags: --metrics localhost:${port} is the port the server itself listens on (127.0.0.1:${port}): choose another port for --metrics`,
  );
});

Deno.test("bad values of the other flags are refused, exit 1", async () => {
  assertError(
    await runServer(["--idle-timeout", "soon"]),
    1,
    'Invalid --idle-timeout: "soon" is not a number of seconds from 0 to 1000000',
  );
  assertError(
    await runServer(["--max-conns", "-5"]),
    1,
    'Invalid --max-conns: "-5" is not a whole number from 0 to 999999999',
  );
  assertError(
    await runServer(["--log-format", "xml"]),
    1,
    'Invalid --log-format: "xml" is not one of text, json',
  );
  assertError(
    await runServer(["--unix", "/tmp/x.sock", "--port", "1"]),
    1,
    "Conflicting flags: --unix cannot be combined with --host or --port",
  );
  assertError(
    await runClient(1, ["--timeout", "-1", "hi"]),
    1,
    'Invalid --timeout: "-1" is not a number of seconds from 0 to 1000000',
  );
  assertError(
    await runClient(1, ["two", "words"]),
    1,
    'Too many arguments: quote the message as one argument, e.g. "two words"',
  );
});

Deno.test("a missing message prints the seed's usage line, exit 1, whatever stdin is", async () => {
  for (const stdin of [undefined, new TextEncoder().encode("piped text\n")]) {
    const out = await runClient(1, [], { stdin });
    assertEquals(out, {
      code: 1,
      stdout: "",
      stderr: "usage: ./client message\n",
    });
  }
});

Deno.test("a port already in use is reported, exit 3", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  assertError(
    await runServer(["--host", "127.0.0.1", "--port", String(port)], [
      `--allow-net=127.0.0.1:${port}`,
    ]),
    3,
    `Address in use: 127.0.0.1:${port} is taken by another process (try --port)`,
  );
});

Deno.test("a missing permission names the --allow-net flag to add, exit 2, without prompting", async () => {
  assertError(
    await runServer(["--host", "127.0.0.1", "--port", "0"], [
      "--allow-net=127.0.0.1:1",
    ]),
    2,
    "Permission denied: listening on 127.0.0.1:0 needs --allow-net=127.0.0.1:0",
  );
  // No --allow-net at all: the default address, and no prompt under --no-prompt.
  assertError(
    await runServer([], []),
    2,
    "Permission denied: listening on 0.0.0.0:6666 needs --allow-net=0.0.0.0:6666",
  );
  const port = closedPort();
  assertError(
    await runClient(port, ["hi"], { allowNet: "127.0.0.1:1" }),
    2,
    `Permission denied: connecting to 127.0.0.1:${port} needs --allow-net=127.0.0.1:${port}`,
  );
});

Deno.test("a refused connection hints that the server is not running, exit 3", async () => {
  const port = closedPort();
  assertError(
    await runClient(port, ["hi"]),
    3,
    `Connection refused: no server is listening on 127.0.0.1:${port} (start one with: deno task start)`,
  );
});

/** Whether this machine lets us run a program with no network at all. */
async function canUnshareNetwork(): Promise<boolean> {
  try {
    const { code } = await new Deno.Command("unshare", {
      args: ["-rn", "true"],
      stderr: "null",
    }).output();
    return code === 0;
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

const noNetwork = await canUnshareNetwork();
if (!noNetwork) {
  console.warn(
    "cli_errors_test.ts: SKIPPED the unknown-host test: `unshare -rn` (a private, empty network namespace, so no DNS query leaves the machine) is not available here",
  );
}

Deno.test({
  name:
    "an unknown host is reported, exit 3 (resolved in an empty network namespace: no traffic leaves)",
  ignore: !noNetwork,
  async fn() {
    const host = "no-such-host.invalid";
    const { code, stderr } = await new Deno.Command("unshare", {
      args: [
        "-rn",
        Deno.execPath(),
        ...denoRun("client.ts", `${host}:6666`, ["--host", host, "hi"]),
      ],
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    assertError(
      { code, stdout: "", stderr: text(stderr) },
      3,
      `Unknown host: "${host}" could not be resolved (temporary failure in name resolution: is DNS reachable?)`,
    );
  },
});

Deno.test("a server that never replies times out, exit 4", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const accepted = listener.accept();
  const out = await runClient(port, ["--timeout", "0.3", "hi"]);
  (await accepted).close();
  assertError(
    out,
    4,
    `Timed out: no complete reply from 127.0.0.1:${port} within 0.3 s`,
  );
  assertEquals(out.stdout, "");
});

Deno.test("a server that closes without replying is reported, exit 5", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const closing = listener.accept().then((conn) => conn.close());
  const out = await runClient(port, ["hi"]);
  await closing;
  assertError(out, 5, "Server closed the connection before replying");
});

Deno.test("a Unix socket path that is missing or not a socket is reported, exit 3", async () => {
  const dir = await Deno.makeTempDir({ prefix: "upcase_" });
  try {
    const missing = `${dir}/missing.sock`;
    assertError(
      await runClient(0, ["hi"], { unix: missing }),
      3,
      `No such socket: ${missing} does not exist (start the server with --unix ${missing})`,
    );
    const file = `${dir}/plain-file`;
    await Deno.writeTextFile(file, "not a socket");
    assertError(
      await runClient(0, ["hi"], { unix: file }),
      3,
      `Not a socket: ${file} is not a Unix socket`,
    );
    assertError(
      await runServer(["--unix", file], unixAllow(file)),
      3,
      `Not a socket: ${file} exists and is not a Unix socket (remove it or choose another path)`,
    );
    assertError(
      await runServer(["--unix", missing], ["--allow-net=127.0.0.1:0"]),
      2,
      `Permission denied: listening on ${missing} needs ${
        unixAllow(missing).join(" ")
      }`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("errors carry no colour codes when stderr is not a terminal, even without NO_COLOR", async () => {
  const out = await runClient(closedPort(), ["hi"], { env: {} });
  assertEquals(out.code, 3);
  assertEquals(out.stderr.includes("\x1b["), false);
  assertEquals(out.stderr.startsWith("error: Connection refused"), true);
});
