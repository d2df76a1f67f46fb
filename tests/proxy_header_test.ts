// Copyright the upcase authors. MIT license.
// The PROXY header parser and builder, without sockets. Section numbers (§)
// are those of HAProxy's doc/proxy-protocol.txt.
import {
  assert,
  assertEquals,
  assertMatch,
  assertStrictEquals,
  assertThrows,
} from "@std/assert";
import {
  encodeLocalHeader,
  encodeProxyHeader,
  MAX_HEADER_LENGTH,
  MAX_V1_LENGTH,
  MAX_V2_LENGTH,
  type ProxyHeader,
  ProxyHeaderParser,
  type ProxyParseResult,
} from "../src/_proxy_header.ts";

const SIGNATURE = [
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
];
const REQUEST = utf8("hello, world\n");

function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function concat(...parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function u16(n: number): number[] {
  return [n >> 8, n & 0xff];
}

/** A v2 header built by hand: signature, two bytes, length, body. */
function v2(verCmd: number, family: number, ...body: ArrayLike<number>[]) {
  const rest = concat(...body);
  return concat(SIGNATURE, [verCmd, family], u16(rest.length), rest);
}

function tlv(type: number, value: ArrayLike<number>): Uint8Array {
  return concat([type], u16(value.length), value);
}

const TCP4_BODY = [192, 0, 2, 1, 198, 51, 100, 7, ...u16(56324), ...u16(443)];
const TCP6_BODY = [
  ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
  ...[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4],
  ...u16(1),
  ...u16(65535),
];

function unixPath(path: string): Uint8Array {
  const bytes = new Uint8Array(108);
  bytes.set(utf8(path));
  return bytes;
}

function parse(bytes: Uint8Array): ProxyParseResult {
  return new ProxyHeaderParser().push(bytes);
}

function done(
  result: ProxyParseResult,
): { header: ProxyHeader; rest: Uint8Array } {
  if (result.status !== "done") {
    throw new Error(`expected done, got ${JSON.stringify(result)}`);
  }
  return result;
}

function failure(result: ProxyParseResult): string {
  if (result.status !== "failed") {
    throw new Error(`expected failed, got ${JSON.stringify(result)}`);
  }
  return result.reason;
}

/** Pushes `bytes` one at a time; returns the result and how many it took. */
function byteByByte(bytes: Uint8Array): [ProxyParseResult, number] {
  const parser = new ProxyHeaderParser();
  for (let i = 0; i < bytes.length; i++) {
    const result = parser.push(bytes.subarray(i, i + 1));
    if (result.status !== "more") return [result, i + 1];
  }
  return [{ status: "more" }, bytes.length];
}

function tcp(hostname: string, port: number): Deno.NetAddr {
  return { transport: "tcp", hostname, port };
}

/** Mulberry32: a small seeded PRNG, so failures can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** CRC32C bit by bit (RFC 4960 appendix B), apart from the parser's table. */
function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) {
      crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    }
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// --- Version 1 (§2.1) ---

Deno.test("ProxyHeaderParser reads the spec's v1 example and keeps the HTTP request after it", () => {
  const request = "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n";
  const { header, rest } = done(
    parse(utf8(`PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n${request}`)),
  );
  assertEquals(header, {
    version: 1,
    command: "proxy",
    source: tcp("192.168.0.1", 56324),
    destination: tcp("192.168.0.11", 443),
  });
  assertEquals(new TextDecoder().decode(rest), request);
});

Deno.test("ProxyHeaderParser accepts each of the spec's longest v1 lines at its stated length", () => {
  const ffff = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  const lines: [string, number][] = [
    ["PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", 56],
    [`PROXY TCP6 ${ffff} ${ffff} 65535 65535\r\n`, 104],
    ["PROXY UNKNOWN\r\n", 15],
    [`PROXY UNKNOWN ${ffff} ${ffff} 65535 65535\r\n`, 107],
  ];
  for (const [line, length] of lines) {
    assertEquals(line.length, length);
    const { header, rest } = done(parse(utf8(line)));
    assertEquals(rest.length, 0);
    assertEquals(header.version, 1);
  }
  const { header } = done(parse(utf8(lines[1]![0])));
  assertEquals(header.source, tcp(ffff, 65535));
});

Deno.test("ProxyHeaderParser treats v1 UNKNOWN as no address and ignores the rest of its line", () => {
  for (
    const line of [
      "PROXY UNKNOWN\r\n",
      "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY UNKNOWN anything, even \x01 or \xff bytes\r\n",
    ]
  ) {
    const bytes = Uint8Array.from(line, (c) => c.charCodeAt(0));
    assertEquals(done(parse(bytes)).header, { version: 1, command: "proxy" });
  }
});

Deno.test("ProxyHeaderParser gives v1 IPv6 addresses in the form Deno.NetAddr shows", () => {
  const cases: [string, string][] = [
    ["::1", "::1"],
    ["::", "::"],
    ["2001:db8::1", "2001:db8::1"],
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["::FFFF:c000:0201", "::ffff:192.0.2.1"],
    ["fe80::fc:ff:fe00:1", "fe80::fc:ff:fe00:1"],
    ["1:0:0:1:0:0:0:1", "1:0:0:1::1"],
    ["1:0:0:2:0:0:3:4", "1::2:0:0:3:4"],
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
    ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
    ["64:ff9b::1.2.3.4", "64:ff9b::102:304"],
  ];
  for (const [text, shown] of cases) {
    const { header } = done(
      parse(utf8(`PROXY TCP6 ${text} ::1 0 65535\r\n`)),
    );
    assertEquals(header.source, tcp(shown, 0), text);
    assertEquals(header.destination, tcp("::1", 65535));
  }
});

Deno.test("ProxyHeaderParser rejects each kind of malformed v1 line with its reason", () => {
  const cases: [string, RegExp][] = [
    ["GET / HTTP/1.1\r\n", /^not a PROXY protocol header: .*0x47/],
    ["PROXZ", /^not a PROXY protocol header/],
    ["PROXY\r\n", /^not a PROXY protocol header/],
    ["PROXY TCP5 ", /does not start "PROXY TCP4"/],
    ["PROXY  TCP4", /"PROXY {2}" is not "PROXY TCP4 "/],
    ["PROXY TCP4\r\n", /is not "PROXY TCP4 "/],
    ["PROXY UNKNOWNX\r\n", /does not start/],
    ["PROXY TCP\r", /is not "PROXY TCP4 "/],
    ["PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", /single spaces/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", /single spaces/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", /single spaces/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", /single spaces/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", /CR not followed by LF/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", /LF without the CR/],
    ["PROXY UNKNOWN\n", /LF without the CR/],
    ["PROXY UNKNOWN \rx", /CR not followed by LF/],
    ["PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", /source address "01.2.3.4"/],
    ["PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", /destination address "5.6.7.256"/],
    [
      "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
      /source address "1.2.3" is not an IPv4/,
    ],
    ["PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", /not an IPv4/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", /source port "080"/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", /source port "00"/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", /destination port "65536"/],
    ["PROXY TCP4 ::1 ", /0x3a \(":"\) cannot appear in a TCP4 line/],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 -1", /0x2d \("-"\) cannot appear/],
    ["PROXY TCP6 ::g", /0x67 \("g"\) cannot appear in a TCP6 line/],
    [
      "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
      /source address "1.2.3.4" is not an IPv6/,
    ],
    ["PROXY TCP6 1:::2 ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 1::2::3 ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 1:2:3:4:5:6:7::8 ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 12345:: ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 :1::2 ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 1.2.3.4:: ::1 1 2\r\n", /not an IPv6/],
    ["PROXY TCP6 ::1 ::1.2.3 1 2\r\n", /destination address "::1.2.3"/],
  ];
  for (const [line, reason] of cases) {
    assertMatch(failure(parse(utf8(line))), reason, JSON.stringify(line));
  }
});

Deno.test("ProxyHeaderParser fails at the first byte that cannot begin either signature", () => {
  const [result, used] = byteByByte(utf8("GET / HTTP/1.1\r\n"));
  assertEquals(used, 1);
  assertEquals(
    failure(result),
    'not a PROXY protocol header: the connection starts 0x47, not "PROXY " or the v2 signature',
  );
  assertEquals(byteByByte(utf8("PROXI TCP4"))[1], 5);
  assertEquals(byteByByte(utf8("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"))[1], 31);
  assertEquals(byteByByte(utf8("PROXY TCPX"))[1], 10);
  // A TLS ClientHello and an SSH banner fail at once too.
  assertEquals(byteByByte(Uint8Array.of(0x16, 0x03, 0x01))[1], 1);
  assertEquals(byteByByte(utf8("SSH-2.0-x\r\n"))[1], 1);
});

Deno.test("ProxyHeaderParser accepts a 107-byte v1 line and fails at byte 107 of a longer one", () => {
  const pad = (n: number) => `PROXY UNKNOWN ${"x".repeat(n - 16)}\r\n`;
  assertEquals(pad(MAX_V1_LENGTH).length, 107);
  assertEquals(done(parse(utf8(pad(107)))).header, {
    version: 1,
    command: "proxy",
  });
  const [result, used] = byteByByte(utf8(pad(108)));
  assertEquals(used, 107);
  assertEquals(
    failure(result),
    "v1 line too long: no CRLF in the first 107 bytes",
  );
  // A CR as the 107th byte cannot start a CRLF within the limit.
  const crLast = utf8(`PROXY UNKNOWN ${"x".repeat(92)}\r\n`);
  assertEquals(crLast.length, 108);
  assertEquals(byteByByte(crLast)[1], 107);
  // Never a line of junk that keeps the parser asking.
  assertEquals(byteByByte(utf8(`PROXY UNKNOWN ${"y".repeat(10000)}`))[1], 107);
});

// --- Version 2 (§2.2) ---

Deno.test("ProxyHeaderParser reads a v2 TCP over IPv4 header", () => {
  const { header, rest } = done(
    parse(concat(v2(0x21, 0x11, TCP4_BODY), REQUEST)),
  );
  assertEquals(header, {
    version: 2,
    command: "proxy",
    source: tcp("192.0.2.1", 56324),
    destination: tcp("198.51.100.7", 443),
    tlvs: [],
  });
  assertEquals(rest, REQUEST);
});

Deno.test("ProxyHeaderParser reads a v2 TCP over IPv6 header, an IPv4-mapped address as Deno shows it", () => {
  const { header } = done(parse(v2(0x21, 0x21, TCP6_BODY)));
  assertEquals(header.source, tcp("2001:db8::1", 1));
  assertEquals(header.destination, tcp("::ffff:1.2.3.4", 65535));
});

Deno.test("ProxyHeaderParser reads v2 UNIX stream paths: NUL-padded, full-length and abstract", () => {
  const full = "/".repeat(108);
  const abstract = new Uint8Array(108);
  abstract.set(utf8("upcase"), 1);
  const { header } = done(
    parse(v2(0x21, 0x31, unixPath("/run/haproxy.sock"), unixPath(full))),
  );
  assertEquals(header.source, { transport: "unix", path: "/run/haproxy.sock" });
  assertEquals(header.destination, { transport: "unix", path: full });
  const second = done(parse(v2(0x21, 0x31, abstract, new Uint8Array(108))));
  assertEquals(second.header.source, { transport: "unix", path: "@upcase" });
  assertEquals(second.header.destination, { transport: "unix", path: "" });
});

Deno.test("ProxyHeaderParser serves v2 LOCAL as itself, skipping whatever block it carries", () => {
  const local = { version: 2, command: "local" };
  assertEquals(done(parse(v2(0x20, 0x00))).header, local);
  // §2.2: the length must be honoured even for LOCAL; the family is ignored.
  const { header, rest } = done(
    parse(concat(v2(0x20, 0x11, TCP4_BODY), REQUEST)),
  );
  assertEquals(header, local);
  assertEquals(rest, REQUEST);
  assertEquals(done(parse(v2(0x20, 0xff, [1, 2, 3]))).header, local);
  assertEquals(done(parse(v2(0x20, 0x12, [9, 9]))).header, local);
});

Deno.test("ProxyHeaderParser treats v2 PROXY with UNSPEC family or protocol as no address", () => {
  for (const family of [0x00, 0x01, 0x10, 0x20, 0x30]) {
    const { header, rest } = done(
      parse(concat(v2(0x21, family, [1, 2, 3, 4, 5]), REQUEST)),
    );
    assertEquals(header, { version: 2, command: "proxy" }, `0x${family}`);
    assertEquals(rest, REQUEST);
  }
});

Deno.test("ProxyHeaderParser lists v2 TLV types in order and skips their values", () => {
  const tlvs = [
    tlv(0x01, utf8("h2")),
    tlv(0x02, utf8("example.com")),
    tlv(0x04, []),
    tlv(0x20, [0x01, 0, 0, 0, 0, ...tlv(0x21, utf8("TLSv1.3"))]),
    tlv(0xe0, new Uint8Array(300)),
  ];
  const { header, rest } = done(
    parse(concat(v2(0x21, 0x21, TCP6_BODY, ...tlvs), REQUEST)),
  );
  assertEquals(header.tlvs, [0x01, 0x02, 0x04, 0x20, 0xe0]);
  assertEquals(header.source, tcp("2001:db8::1", 1));
  assertEquals(rest, REQUEST);
});

Deno.test("ProxyHeaderParser checks a v2 CRC32C TLV against the header", () => {
  assertEquals(crc32c(utf8("123456789")), 0xe3069283); // the standard check value
  const header = v2(
    0x21,
    0x11,
    TCP4_BODY,
    tlv(0x03, [0, 0, 0, 0]),
    tlv(0x05, utf8("id")),
  );
  const at = 16 + 12 + 3;
  new DataView(header.buffer).setUint32(at, crc32c(header));
  assertEquals(done(parse(header)).header.tlvs, [0x03, 0x05]);
  header[at + 3]! ^= 1;
  assertMatch(
    failure(parse(header)),
    /^v2 header CRC32C mismatch: it says 0x[0-9a-f]{8}, the header's is 0x[0-9a-f]{8}$/,
  );
  assertEquals(
    failure(parse(v2(0x21, 0x11, TCP4_BODY, tlv(0x03, [0, 0, 0])))),
    "malformed v2 header: the CRC32C TLV has 3 bytes, not 4",
  );
});

Deno.test("ProxyHeaderParser rejects truncated v2 TLVs", () => {
  assertEquals(
    failure(parse(v2(0x21, 0x11, TCP4_BODY, [0x04, 0x00]))),
    "malformed v2 header: 2 bytes after the last TLV, too few for another",
  );
  assertEquals(
    failure(
      parse(
        v2(0x21, 0x11, TCP4_BODY, tlv(0x04, []), [
          0x02,
          0x00,
          0x05,
          1,
          2,
          3,
          4,
        ]),
      ),
    ),
    "malformed v2 header: TLV 0x02 says 5 bytes, 4 are left",
  );
  assertEquals(
    failure(parse(v2(0x21, 0x21, TCP6_BODY, [0xe1, 0xff, 0xff]))),
    "malformed v2 header: TLV 0xe1 says 65535 bytes, 0 are left",
  );
});

Deno.test("ProxyHeaderParser rejects each bad v2 version, command, family and address length as soon as it arrives", () => {
  const cases: [Uint8Array, number, string][] = [
    [
      v2(0x11, 0x11, TCP4_BODY),
      13,
      "unsupported PROXY protocol version: 1 (byte 13 is 0x11; only 2 follows the v2 signature)",
    ],
    [
      v2(0x31, 0x11, TCP4_BODY),
      13,
      "unsupported PROXY protocol version: 3 (byte 13 is 0x31; only 2 follows the v2 signature)",
    ],
    [
      v2(0x22, 0x11, TCP4_BODY),
      13,
      "unknown v2 command: 0x2 (only 0x0 LOCAL and 0x1 PROXY exist)",
    ],
    [
      v2(0x2f, 0x11, TCP4_BODY),
      13,
      "unknown v2 command: 0xf (only 0x0 LOCAL and 0x1 PROXY exist)",
    ],
    [
      v2(0x21, 0x41, TCP4_BODY),
      14,
      "unknown v2 address family: 0x41 (the family must be 0 to 3)",
    ],
    [
      v2(0x21, 0x13, TCP4_BODY),
      14,
      "unknown v2 transport protocol: 0x13 (the protocol must be 0 to 2)",
    ],
    [
      v2(0x21, 0x12, TCP4_BODY),
      14,
      "unsupported v2 protocol: 0x12 is a datagram (UDP or UNIX datagram) header, and this is a TCP server",
    ],
    [
      v2(0x21, 0x22, TCP6_BODY),
      14,
      "unsupported v2 protocol: 0x22 is a datagram (UDP or UNIX datagram) header, and this is a TCP server",
    ],
    [
      v2(0x21, 0x32, new Uint8Array(216)),
      14,
      "unsupported v2 protocol: 0x32 is a datagram (UDP or UNIX datagram) header, and this is a TCP server",
    ],
    [
      v2(0x21, 0x02),
      14,
      "unsupported v2 protocol: 0x02 is a datagram (UDP or UNIX datagram) header, and this is a TCP server",
    ],
    [
      v2(0x21, 0x11, TCP4_BODY.slice(0, 11)),
      16,
      "malformed v2 header: 11 bytes of addresses for TCP over IPv4, which needs 12",
    ],
    [
      v2(0x21, 0x21, TCP4_BODY),
      16,
      "malformed v2 header: 12 bytes of addresses for TCP over IPv6, which needs 36",
    ],
    [
      v2(0x21, 0x31, new Uint8Array(215)),
      16,
      "malformed v2 header: 215 bytes of addresses for UNIX stream, which needs 216",
    ],
  ];
  for (const [bytes, at, reason] of cases) {
    const [result, used] = byteByByte(bytes);
    assertEquals(failure(result), reason);
    assertEquals(used, at, reason);
    assertEquals(failure(parse(bytes)), reason);
  }
});

Deno.test("ProxyHeaderParser fails at the first v2 signature byte that differs", () => {
  for (let i = 0; i < SIGNATURE.length; i++) {
    const bytes = v2(0x21, 0x11, TCP4_BODY);
    bytes[i]! ^= 0x40;
    const [result, used] = byteByByte(bytes);
    assertMatch(failure(result), /^not a PROXY protocol header/);
    assertEquals(used, i + 1);
  }
});

Deno.test("ProxyHeaderParser takes v2 headers up to MAX_V2_LENGTH bytes and fails longer ones at byte 16", () => {
  assertEquals(MAX_V2_LENGTH, 4096);
  assertEquals(MAX_HEADER_LENGTH, 4112);
  const filler = tlv(0x04, new Uint8Array(MAX_V2_LENGTH - 12 - 3));
  const longest = v2(0x21, 0x11, TCP4_BODY, filler);
  assertEquals(longest.length, MAX_HEADER_LENGTH);
  const { header, rest } = done(parse(concat(longest, REQUEST)));
  assertEquals(header.tlvs, [0x04]);
  assertEquals(rest, REQUEST);
  const [result, used] = byteByByte(
    v2(
      0x21,
      0x11,
      TCP4_BODY,
      tlv(0x04, new Uint8Array(MAX_V2_LENGTH - 12 - 2)),
    ),
  );
  assertEquals(used, 16);
  assertEquals(
    failure(result),
    "v2 header too long: 4097 bytes of addresses and TLVs, above this server's limit of 4096",
  );
  assertEquals(byteByByte(concat(SIGNATURE, [0x20, 0x00, 0xff, 0xff]))[1], 16);
});

// --- Splits (§2: "TCP is a streaming protocol which may be processed one byte at a time") ---

const VALID_HEADERS: [string, Uint8Array][] = [
  ["v1 TCP4", utf8("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")],
  ["v1 TCP6", utf8("PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 1 65535\r\n")],
  ["v1 UNKNOWN", utf8("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n")],
  [
    "v2 TCP4 with TLVs",
    v2(0x21, 0x11, TCP4_BODY, tlv(0x01, utf8("h2")), tlv(0x04, [])),
  ],
  ["v2 TCP6", v2(0x21, 0x21, TCP6_BODY)],
  ["v2 UNIX", v2(0x21, 0x31, unixPath("/a"), unixPath("/b"))],
  ["v2 LOCAL", v2(0x20, 0x00)],
  ["v2 UNSPEC", v2(0x21, 0x00, [7, 7, 7])],
];

Deno.test("ProxyHeaderParser gives the same header and the right rest for a split at every byte", () => {
  for (const [name, header] of VALID_HEADERS) {
    const expected = done(parse(header)).header;
    const bytes = concat(header, REQUEST);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const where = `${name} cut at ${cut}`;
      const parser = new ProxyHeaderParser();
      const first = parser.push(bytes.subarray(0, cut));
      if (cut < header.length) {
        assertEquals(first, { status: "more" }, where);
        const { header: got, rest } = done(parser.push(bytes.subarray(cut)));
        assertEquals(got, expected, where);
        assertEquals(rest, REQUEST, where);
      } else {
        // The header ended inside the first chunk: the rest of it is `rest`.
        const { header: got, rest } = done(first);
        assertEquals(got, expected, where);
        assertEquals(rest, bytes.subarray(header.length, cut), where);
      }
    }
  }
});

Deno.test("ProxyHeaderParser reports done on exactly the last header byte when fed one byte at a time", () => {
  for (const [name, header] of VALID_HEADERS) {
    const [result, used] = byteByByte(concat(header, REQUEST));
    assertEquals(used, header.length, name);
    assertEquals(done(result).rest.length, 0, name);
    assertEquals(done(result).header, done(parse(header)).header, name);
  }
});

Deno.test("ProxyHeaderParser loses no request byte over random splits", () => {
  const random = prng(0x5eed);
  for (let round = 0; round < 500; round++) {
    const [name, header] = VALID_HEADERS[round % VALID_HEADERS.length]!;
    const bytes = concat(header, REQUEST, REQUEST);
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < bytes.length;) {
      const n = 1 + Math.floor(random() * 20);
      chunks.push(bytes.subarray(at, at + n));
      at += n;
    }
    const parser = new ProxyHeaderParser();
    let i = 0;
    let result: ProxyParseResult = { status: "more" };
    while (result.status === "more") result = parser.push(chunks[i++]!);
    const { header: got, rest } = done(result);
    assertEquals(got, done(parse(header)).header, name);
    assertEquals(
      concat(rest, ...chunks.slice(i)),
      concat(REQUEST, REQUEST),
      `${name} round ${round}`,
    );
  }
});

Deno.test("ProxyHeaderParser copies what it keeps, so the caller may reuse its read buffer", () => {
  const header = utf8("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  const buffer = new Uint8Array(64);
  const parser = new ProxyHeaderParser();
  buffer.set(header.subarray(0, 20));
  assertEquals(parser.push(buffer.subarray(0, 20)), { status: "more" });
  buffer.fill(0x21);
  buffer.set(concat(header.subarray(20), REQUEST));
  const { header: got, rest } = done(
    parser.push(buffer.subarray(0, header.length - 20 + REQUEST.length)),
  );
  assertEquals(got.source, tcp("192.168.0.1", 56324));
  buffer.fill(0);
  assertEquals(rest, REQUEST);
});

Deno.test("ProxyHeaderParser.push() throws when called after done or failed", () => {
  const parser = new ProxyHeaderParser();
  parser.push(encodeLocalHeader());
  const err = assertThrows(() => parser.push(REQUEST), Error);
  assertMatch(err.message, /called after the header was done or failed/);
  const failed = new ProxyHeaderParser();
  failed.push(utf8("GET"));
  assertThrows(() => failed.push(REQUEST), Error);
});

Deno.test("ProxyHeaderParser takes an empty push as no news", () => {
  const parser = new ProxyHeaderParser();
  assertEquals(parser.push(new Uint8Array(0)), { status: "more" });
  assertEquals(parser.push(utf8("PROXY UNKNOWN\r")), { status: "more" });
  assertEquals(parser.push(new Uint8Array(0)), { status: "more" });
  assertEquals(done(parser.push(utf8("\n"))).rest.length, 0);
});

// --- Fuzz ---

/** A random valid header: v1 or v2, any family, TLVs. */
function randomHeader(random: () => number): Uint8Array {
  const int = (n: number) => Math.floor(random() * n);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  switch (int(7)) {
    case 0:
      return encodeProxyHeader(
        1,
        tcp([...bytes(4)].join("."), int(65536)),
        tcp([...bytes(4)].join("."), int(65536)),
      );
    case 1: {
      const v6 = () =>
        Array.from(
          { length: 8 },
          () => (random() < 0.4 ? 0 : int(65536)).toString(16),
        ).join(":");
      return encodeProxyHeader(1, tcp(v6(), int(65536)), tcp(v6(), int(65536)));
    }
    case 2:
      return utf8(
        `PROXY UNKNOWN${random() < 0.5 ? "" : " " + "z".repeat(int(90))}\r\n`,
      );
    case 3:
      return encodeLocalHeader();
    default: {
      const family = [0x11, 0x21, 0x31, 0x00][int(4)]!;
      const address = bytes(
        family === 0x11
          ? 12
          : family === 0x21
          ? 36
          : family === 0x31
          ? 216
          : int(40),
      );
      const tlvs = Array.from(
        { length: int(4) },
        () =>
          tlv(
            [1, 2, 4, 5, 0x20, 0xe0][int(6)]!,
            bytes(int(60)),
          ),
      );
      return v2(0x20 | int(2), family, address, ...tlvs);
    }
  }
}

/** The header length the input claims, by the spec's rules, if it has one. */
function claimedLength(input: Uint8Array): number | undefined {
  if (input[0] === 0x50) {
    for (let i = 1; i < input.length && i < MAX_V1_LENGTH; i++) {
      if (input[i - 1] === 0x0d && input[i] === 0x0a) return i + 1;
    }
    return undefined;
  }
  return input.length >= 16 ? 16 + ((input[14]! << 8) | input[15]!) : undefined;
}

Deno.test("ProxyHeaderParser survives 10,000 random, truncated and mutated headers", () => {
  const random = prng(20260427);
  const int = (n: number) => Math.floor(random() * n);
  const counts = { done: 0, failed: 0, more: 0 };
  for (let round = 0; round < 10_000; round++) {
    let input = randomHeader(random);
    const mutation = int(6);
    if (mutation === 1) input = input.slice(0, int(input.length)); // truncated
    if (mutation === 2 || mutation === 3) { // bytes changed
      for (let k = 0; k <= int(3); k++) input[int(input.length)] = int(256);
    }
    if (mutation === 4) { // a byte inserted or dropped
      const at = int(input.length);
      input = random() < 0.5
        ? concat(input.subarray(0, at), [int(256)], input.subarray(at))
        : concat(input.subarray(0, at), input.subarray(at + 1));
    }
    if (mutation === 5) { // noise after a real start
      input = concat(
        input.subarray(0, int(16)),
        Uint8Array.from({ length: int(5000) }, () => int(256)),
      );
    }
    input = concat(input, REQUEST);
    const context = `round ${round}: ${
      Array.from(input.subarray(0, 40)).join(",")
    }`;

    // Whole, then in random chunks: the same outcome both ways.
    const whole = parse(input);
    const parser = new ProxyHeaderParser();
    let pushed = 0;
    let split: ProxyParseResult = { status: "more" };
    let chunkEnd = 0;
    while (split.status === "more" && pushed < input.length) {
      const n = 1 + int(random() < 0.5 ? 4 : 300);
      const chunk = input.subarray(pushed, pushed + n);
      pushed += chunk.length;
      chunkEnd = pushed;
      split = parser.push(chunk);
      if (split.status === "more") {
        assert(
          pushed < MAX_HEADER_LENGTH,
          `asked for more after ${pushed} bytes: ${context}`,
        );
      }
    }
    counts[split.status]++;
    assertStrictEquals(split.status, whole.status, context);
    if (split.status === "failed" && whole.status === "failed") {
      assertEquals(split.reason, whole.reason, context);
      assert(
        !split.reason.includes("\n") && split.reason.length < 300,
        context,
      );
    }
    if (split.status === "done" && whole.status === "done") {
      assertEquals(split.header, whole.header, context);
      const length = claimedLength(input);
      assert(length !== undefined && length <= MAX_HEADER_LENGTH, context);
      assertEquals(whole.rest, input.subarray(length), context);
      assertEquals(split.rest, input.subarray(length, chunkEnd), context);
    }
    if (mutation === 0) assertStrictEquals(whole.status, "done", context);
  }
  // The corpus reaches every outcome, so the checks above all ran.
  assert(
    counts.done > 2000 && counts.failed > 2000 && counts.more > 100,
    JSON.stringify(counts),
  );
});

// --- The builder ---

Deno.test("encodeProxyHeader() writes v1 lines in the spec's format", () => {
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  assertEquals(
    text(
      encodeProxyHeader(1, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443)),
    ),
    "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
  );
  assertEquals(
    text(encodeProxyHeader(1, tcp("2001:0db8:0:0::1", 0), tcp("::1", 65535))),
    "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n",
  );
  // Mixed families: the IPv4 side is mapped, as HAProxy does.
  assertEquals(
    text(encodeProxyHeader(1, tcp("192.0.2.1", 1), tcp("::1", 2))),
    "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
  );
});

Deno.test("encodeProxyHeader() writes v2 PROXY STREAM headers byte for byte", () => {
  assertEquals(
    encodeProxyHeader(2, tcp("192.0.2.1", 56324), tcp("198.51.100.7", 443)),
    v2(0x21, 0x11, TCP4_BODY),
  );
  assertEquals(
    encodeProxyHeader(2, tcp("2001:db8::1", 1), tcp("::ffff:1.2.3.4", 65535)),
    v2(0x21, 0x21, TCP6_BODY),
  );
});

Deno.test("encodeLocalHeader() writes the 16-byte v2 LOCAL header", () => {
  assertEquals(encodeLocalHeader(), v2(0x20, 0x00));
});

Deno.test("encodeProxyHeader() output parses back to the same addresses", () => {
  const pairs: [Deno.NetAddr, Deno.NetAddr, Deno.NetAddr?, Deno.NetAddr?][] = [
    [tcp("127.0.0.1", 40000), tcp("127.0.0.1", 6666)],
    [tcp("0.0.0.0", 0), tcp("255.255.255.255", 65535)],
    [tcp("::1", 40000), tcp("::1", 6666)],
    [tcp("::ffff:127.0.0.1", 1), tcp("::ffff:127.0.0.1", 2)],
    [tcp("fe80::fc:ff:fe00:1", 3), tcp("fd00::2", 4)],
    [tcp("2001:DB8:0:0:0:0:0:1", 5), tcp("::", 6), tcp("2001:db8::1", 5)],
    [tcp("10.0.0.1", 7), tcp("::1", 8), tcp("::ffff:10.0.0.1", 7)],
  ];
  for (const [source, destination, shownSource, shownDestination] of pairs) {
    for (const version of [1, 2] as const) {
      const bytes = concat(
        encodeProxyHeader(version, source, destination),
        REQUEST,
      );
      const { header, rest } = done(parse(bytes));
      assertEquals(header.version, version);
      assertEquals(header.command, "proxy");
      assertEquals(header.source, shownSource ?? source);
      assertEquals(header.destination, shownDestination ?? destination);
      assertEquals(rest, REQUEST);
    }
  }
});

Deno.test("encodeProxyHeader() rejects names, bad ports and bad versions", () => {
  const ok = tcp("127.0.0.1", 1);
  const name = assertThrows(
    () => encodeProxyHeader(1, tcp("localhost", 1), ok),
    TypeError,
  );
  assertEquals(
    name.message,
    'Invalid address: "localhost" is not an IPv4 or IPv6 address',
  );
  assertThrows(
    () => encodeProxyHeader(2, ok, tcp("fe80::1%eth0", 1)),
    TypeError,
  );
  assertThrows(() => encodeProxyHeader(2, ok, tcp("01.2.3.4", 1)), TypeError);
  const port = assertThrows(
    () => encodeProxyHeader(1, ok, tcp("::1", 65536)),
    RangeError,
  );
  assertEquals(
    port.message,
    "Invalid port: 65536 is not an integer from 0 to 65535",
  );
  assertThrows(() => encodeProxyHeader(2, tcp("::1", 1.5), ok), RangeError);
  const version = assertThrows(
    () => encodeProxyHeader(3 as 1, ok, ok),
    RangeError,
  );
  assertEquals(
    version.message,
    "Invalid PROXY protocol version: 3 is not 1 or 2",
  );
});
