// Copyright the upcase authors. MIT license.
// The CLIs end to end: server.ts and client.ts spawned with Deno.execPath()
// and the permission flags README.md documents.

import { assertEquals, assertMatch, assertStringIncludes } from "@std/assert";
import { MAXLINE } from "../mod.ts";
import {
  expectedUpper,
  randomBytes,
  runClient,
  ServerProcess,
  text,
  utf8,
  writeAll,
} from "./_util.ts";

Deno.test("client.ts prints the seed's response line and the upper-cased message", async () => {
  await using server = await ServerProcess.start();
  const out = await runClient(server.port, ["hello, world"]);
  assertEquals(out, {
    code: 0,
    stdout: "Response from server:\nHELLO, WORLD\n",
    stderr: "",
  });
});

Deno.test("server.ts logs each connection like the seed, then its byte counts", async () => {
  await using server = await ServerProcess.start();
  const out = await runClient(server.port, ["abc"]);
  assertEquals(out.code, 0);
  await server.waitForLine(/^received from 127\.0\.0\.1 at PORT \d+$/);
  await server.waitForLine(
    /^closed 127\.0\.0\.1 at PORT \d+: 3 bytes in, 3 bytes out$/,
  );
});

Deno.test("client.ts without a message prints the seed's usage line and exits 1", async () => {
  const out = await runClient(1, []);
  assertEquals(out, {
    code: 1,
    stdout: "",
    stderr: "usage: ./client message\n",
  });
});

Deno.test("server.ts exits 0 on SIGTERM with a one-line summary", async () => {
  await using server = await ServerProcess.start();
  assertEquals((await runClient(server.port, ["one"])).code, 0);
  assertEquals((await runClient(server.port, ["two"])).code, 0);
  await server.waitForLine(/^closed .* 3 bytes out$/);
  const out = await server.stop("SIGTERM");
  assertEquals(out.code, 0);
  assertMatch(
    out.stdout,
    /\nServed 2 connections on 127\.0\.0\.1:\d+: 6 B in, 6 B out, 0 errors, up \S+/,
  );
  assertEquals(out.stderr, "");
});

Deno.test("client.ts against server.ts --once prints the first MAXLINE bytes and warns of the truncation", async () => {
  await using server = await ServerProcess.start(["--once"]);
  const message = "x".repeat(200);
  const out = await runClient(server.port, [message]);
  assertEquals(out.code, 0);
  assertEquals(
    out.stdout,
    `Response from server:\n${"X".repeat(MAXLINE)}\n`,
  );
  assertEquals(
    out.stderr,
    `warning: Reply truncated: got ${MAXLINE} of 200 bytes; the server closed early (the seed's server.c reads at most ${MAXLINE})\n`,
  );
});

Deno.test("server.ts answers a seed-style client: one write, one read of at most MAXLINE bytes, close", async () => {
  await using server = await ServerProcess.start();
  const message = utf8("seed client says hi");
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await writeAll(conn, message);
  // The seed's client reads once; the reply may arrive in pieces, so read
  // until this message's length (still at most MAXLINE) has come back.
  const buf = new Uint8Array(MAXLINE);
  let n = 0;
  while (n < message.length) {
    const got = await conn.read(buf.subarray(n));
    if (got === null) break;
    n += got;
  }
  assertEquals(text(buf.subarray(0, n)), "SEED CLIENT SAYS HI");
});

Deno.test("server.ts --once serves a seed-style client exactly as the seed does", async () => {
  await using server = await ServerProcess.start(["--once"]);
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const message = randomBytes(MAXLINE);
  await writeAll(conn, message);
  const buf = new Uint8Array(2 * MAXLINE);
  let n = 0;
  while (true) {
    const got = await conn.read(buf.subarray(n));
    if (got === null) break;
    n += got;
  }
  // Whatever arrived in the one read comes back, then the server closes.
  assertEquals(
    buf.subarray(0, n),
    expectedUpper(message.subarray(0, n)),
  );
  assertEquals(n > 0 && n <= MAXLINE, true);
});

Deno.test("client.ts without --allow-net for the address exits 2 and names the flag", async () => {
  await using server = await ServerProcess.start();
  const out = await runClient(server.port, ["hi"], {
    allowNet: "127.0.0.1:1",
  });
  assertEquals(out, {
    code: 2,
    stdout: "",
    stderr:
      `error: Permission denied: connecting to 127.0.0.1:${server.port} needs --allow-net=127.0.0.1:${server.port}\n`,
  });
});

Deno.test("client.ts exits 3 with a hint when no server is listening", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const out = await runClient(port, ["hi"]);
  assertEquals(out.code, 3);
  assertEquals(
    out.stderr,
    `error: Connection refused: no server is listening on 127.0.0.1:${port} (start one with: deno task start)\n`,
  );
});

Deno.test("server.ts --help and client.ts --help list the exit codes", async () => {
  for (const script of ["server.ts", "client.ts"] as const) {
    const { code, stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `--allow-net=127.0.0.1:1`, script, "--help"],
      cwd: new URL("../", import.meta.url),
      stdout: "piped",
    }).output();
    assertEquals(code, 0);
    const help = text(stdout);
    assertStringIncludes(help, "--port PORT");
    assertStringIncludes(help, "Exit codes:");
  }
});
