// Copyright the upcase authors. MIT license.
// The side channel's request parser, without sockets: heads it accepts,
// requests it refuses and why, every split of the bytes, and seeded fuzzing.

import { assert, assertEquals } from "@std/assert";
import {
  MAX_BODY_BYTES,
  MAX_HEAD_BYTES,
  MAX_HEADER_FIELDS,
  parseRequestHead,
  type ParseResult,
} from "../src/_http_request.ts";
import { Random } from "../stress/_util.ts";

const encoder = new TextEncoder();

function parse(text: string): ParseResult {
  return parseRequestHead(encoder.encode(text));
}

/** The head `text` starts with; fails the test if there is none. */
function headOf(text: string): Extract<ParseResult, { kind: "head" }> {
  const result = parse(text);
  if (result.kind !== "head") {
    throw new Error(`No head in ${JSON.stringify(text)}: ${result.kind}`);
  }
  return result;
}

function status(text: string): number | string {
  const result = parse(text);
  return result.kind === "refused" ? result.status : result.kind;
}

Deno.test("parseRequestHead() reads a GET head: method, path without the query, version, keep-alive, its length", () => {
  const text = "GET /metrics?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n" +
    "User-Agent: t\r\n\r\nGET /next";
  const result = headOf(text);
  assertEquals(result.length, text.indexOf("GET /next"));
  assertEquals(result.head, {
    method: "GET",
    target: "/metrics?x=1",
    path: "/metrics",
    minor: 1,
    keepAlive: true,
    contentLength: 0,
    fields: [["host", "127.0.0.1:9090"], ["user-agent", "t"]],
  });
});

Deno.test("parseRequestHead() follows HTTP/1.0 and Connection for keep-alive, and takes bare LF line ends", () => {
  const keepAlive = (text: string) => headOf(text).head.keepAlive;
  assertEquals(keepAlive("GET / HTTP/1.0\r\n\r\n"), false);
  assertEquals(
    keepAlive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
    true,
  );
  assertEquals(
    keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    false,
  );
  assertEquals(
    keepAlive("GET / HTTP/1.1\r\nHost: a\r\nConnection: x, Close\r\n\r\n"),
    false,
  );
  assertEquals(keepAlive("GET / HTTP/1.1\nHost: a\n\n"), true);
  // Empty lines before the request line are skipped (RFC 9112, 2.2).
  assertEquals(status("\r\n\r\nGET / HTTP/1.0\r\n\r\n"), "head");
  // An absolute-form target names the path too.
  const absolute = headOf(
    "GET http://h:1/healthz?a HTTP/1.1\r\nHost: h\r\n\r\n",
  );
  assertEquals(absolute.head.path, "/healthz");
});

Deno.test("parseRequestHead() refuses what could be read two ways or could not be read: 400, 413, 414, 431, 501, 505", () => {
  const cases: [string, number][] = [
    // The Host values that once printed a stack trace, and their kin.
    ["GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: x:999999\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: %zz\r\n\r\n", 400],
    ["GET http://x:99999/ HTTP/1.1\r\nHost: x\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\n\r\n", 400], // HTTP/1.1 needs a Host
    // Request lines.
    ["GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400],
    ["G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["GET metrics HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    ["GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505],
    ["GET / HTTP/1\r\nHost: a\r\n\r\n", 400],
    ["GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400],
    // Fields.
    ["GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400],
    [
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      400,
    ],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", 400],
    [
      `GET / HTTP/1.1\r\nHost: a\r\nContent-Length: ${
        MAX_BODY_BYTES + 1
      }\r\n\r\n`,
      413,
    ],
    ["GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501],
    [`GET /${"a".repeat(MAX_HEAD_BYTES)} HTTP/1.1\r\n\r\n`, 414],
    [
      `GET / HTTP/1.1\r\nHost: a\r\nX: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`,
      431,
    ],
    [
      `GET / HTTP/1.1\r\nHost: a\r\n${
        "X: a\r\n".repeat(MAX_HEADER_FIELDS)
      }\r\n`,
      431,
    ],
    ["\r\n".repeat(MAX_HEAD_BYTES / 2), 414],
  ];
  for (const [text, expected] of cases) {
    assertEquals(status(text), expected, JSON.stringify(text.slice(0, 80)));
  }
  // Equal lengths, said twice, are one length.
  const twice = headOf(
    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
  );
  assertEquals(twice.head.contentLength, 3);
  // A bad request line is refused before its end arrives.
  assertEquals(status("GET  /"), 400);
  assertEquals(status("\x16\x03\x01"), 400); // a TLS ClientHello
});

/** Pipelined requests, good and bad, for the split and fuzz tests. */
const SAMPLES = [
  "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
  "\r\nGET / HTTP/1.0\nUser-Agent: x\n\n",
  "GET /events HTTP/1.1\r\nHost: [::1]:9090\r\nAccept: text/event-stream\r\n\r\n",
  "PUT /faults HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n[]",
  "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: a\r\n fold\r\n\r\n",
];

Deno.test("parseRequestHead() gives the same answer however the bytes are split: every prefix is incomplete or that answer", () => {
  for (const sample of SAMPLES) {
    const bytes = encoder.encode(sample);
    const whole = parseRequestHead(bytes);
    assert(whole.kind !== "incomplete", sample);
    const end = whole.kind === "head" ? whole.length : bytes.length;
    for (let cut = 0; cut < end; cut++) {
      const part = parseRequestHead(bytes.subarray(0, cut));
      if (part.kind === "incomplete") continue;
      // A refusal may come early, but only the same refusal.
      assertEquals(part, whole, `${JSON.stringify(sample)} cut at ${cut}`);
    }
    assertEquals(parseRequestHead(bytes.subarray(0, end)), whole);
  }
});

Deno.test("parseRequestHead() on 20,000 seeded random and mutated inputs never throws and answers within its bounds", () => {
  const random = new Random(17);
  const statuses = new Set([400, 413, 414, 431, 501, 505]);
  for (let i = 0; i < 20_000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      bytes = random.bytes(random.int(0, 300));
    } else {
      bytes = encoder.encode(SAMPLES[i % SAMPLES.length]!).slice();
      for (let m = random.int(1, 4); m > 0; m--) {
        bytes[random.int(0, bytes.length - 1)] = random.int(0, 255);
      }
    }
    const result = parseRequestHead(bytes);
    if (result.kind === "refused") {
      assert(statuses.has(result.status), `status ${result.status}`);
      assert(!/[\r\n]/.test(result.reason), "a reason is one line");
    } else if (result.kind === "head") {
      assert(result.length > 0 && result.length <= bytes.length);
      assert(result.length <= MAX_HEAD_BYTES);
      assert(result.head.path.startsWith("/") || result.head.path === "*");
      // The head alone gives the same answer.
      assertEquals(parseRequestHead(bytes.subarray(0, result.length)), result);
    }
  }
});
