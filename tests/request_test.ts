// Copyright the upcase authors. MIT license.
import { assertEquals, assertRejects } from "@std/assert";
import { connect, exchange, MAXLINE, request, serve } from "../mod.ts";
import {
  assertSameBytes,
  expectedUpper,
  randomBytes,
  text,
  utf8,
} from "./_util.ts";

const LOOPBACK = { hostname: "127.0.0.1", port: 0 };

Deno.test("request() sends a string and resolves with the upper-cased reply", async () => {
  await using server = serve(LOOPBACK);
  const reply = await request("hello, world", { port: server.addr.port });
  assertEquals(text(reply), "HELLO, WORLD");
});

Deno.test("request() round-trips 8 MiB of binary data without deadlock", async () => {
  await using server = serve(LOOPBACK);
  const payload = randomBytes(8 << 20);
  const reply = await request(payload, { port: server.addr.port });
  assertSameBytes(reply, expectedUpper(payload));
});

Deno.test("request() against a --once server returns the first MAXLINE bytes", async () => {
  await using server = serve({ ...LOOPBACK, once: true });
  const reply = await request("a".repeat(500), { port: server.addr.port });
  assertEquals(text(reply), "A".repeat(MAXLINE));
});

Deno.test("request() rejects with ConnectionRefused when nothing listens", async () => {
  const listener = Deno.listen(LOOPBACK);
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await assertRejects(
    () => request("x", { port }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("request() rejects with the signal's reason when aborted", async () => {
  // A listener that accepts but never answers.
  const listener = Deno.listen(LOOPBACK);
  const accepted = listener.accept();
  const controller = new AbortController();
  const pending = request("x", {
    port: (listener.addr as Deno.NetAddr).port,
    signal: controller.signal,
  });
  const conn = await accepted;
  controller.abort(new Error("enough"));
  const err = await assertRejects(() => pending, Error);
  assertEquals(err.message, "enough");
  conn.close();
  listener.close();
});

Deno.test("exchange() streams an async source and reports the byte counts", async () => {
  await using server = serve(LOOPBACK);
  using conn = await connect({ port: server.addr.port });
  async function* source() {
    for (let i = 0; i < 100; i++) yield utf8(`line ${i}\n`);
  }
  let reply = "";
  const result = await exchange(conn, source(), (bytes) => {
    reply += text(bytes);
  });
  const expected = Array.from({ length: 100 }, (_, i) => `LINE ${i}\n`).join(
    "",
  );
  assertEquals(reply, expected);
  assertEquals(result, {
    sent: expected.length,
    received: expected.length,
    reset: false,
  });
});
