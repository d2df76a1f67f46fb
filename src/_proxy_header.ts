// Copyright the upcase authors. MIT license.
/**
 * The PROXY protocol header (versions 1 and 2), as HAProxy's
 * `doc/proxy-protocol.txt` has it: a parser fed bytes as they arrive and a
 * builder for the client side. Pure: no sockets here. Section numbers (§) are
 * the spec's.
 *
 * ## The socket part's contract
 *
 * The PROXY layer (a `ConnLayer` of `_conn.ts` with step `"proxy"`, written
 * beside this file) runs on each accepted connection, and only where the
 * server was told to expect a header: it never guesses whether one is there
 * (§2, §5).
 *
 * 1. It starts a `--proxy-timeout` deadline at accept (§2 asks for at least
 *    3 s, to cover a TCP retransmit). On expiry it closes the connection and
 *    fails with `no PROXY header within N s (--proxy-timeout)`.
 * 2. It reads into a buffer it owns and passes each read's bytes to
 *    {@linkcode ProxyHeaderParser.push}. The parser copies what it keeps, so
 *    the buffer can be reused for the next read at once.
 * 3. `{ status: "more" }`: read again. The parser says this only while fewer
 *    than {@linkcode MAX_HEADER_LENGTH} bytes have been pushed, so the loop
 *    ends by itself within that many bytes or at the deadline. A read that
 *    returns null (the client closed) fails with `the client closed the
 *    connection before the PROXY header was complete`.
 * 4. `{ status: "failed", reason }`: it closes the connection and throws
 *    `new Error(reason)`; the server logs `PROXY header rejected from …:
 *    <reason>`. Nothing of the connection is served (§2: the receiver must
 *    not start processing before a complete and valid header).
 * 5. `{ status: "done", header, rest }`: it hands on a connection whose
 *    `remoteAddr` is `header.source` and whose `localAddr` is
 *    `header.destination` (each the socket's own when the header has none:
 *    v2 LOCAL, v2 UNSPEC, v1 UNKNOWN), whose first reads return `rest` (the
 *    start of the request; it may be empty, and a read smaller than it takes
 *    part of it) and then read the socket; writes, `closeWrite()`, `close()`
 *    and `setNoDelay()` go to the socket. `header.command === "local"` is a
 *    proxy's health check and is logged as one.
 *
 * @module
 */

/** The longest v1 line, CRLF included, the receiver must support (§2.1). */
export const MAX_V1_LENGTH = 107;

/**
 * The most bytes of addresses and TLVs accepted after the 16-byte fixed part
 * of a v2 header. The spec's length field allows 65535 (§2.2); this server
 * caps it so that a header costs at most about 4 KiB per connection. Real
 * headers are 12 to 216 bytes of addresses plus a few small TLVs; a client
 * certificate TLV (§2.2.6) is the one that may need more.
 */
export const MAX_V2_LENGTH = 4096;

/** The most bytes a header accepted here can have: a v2 one at the cap. */
export const MAX_HEADER_LENGTH: number = 16 + MAX_V2_LENGTH;

/** What a PROXY header says about the connection it starts. */
export interface ProxyHeader {
  /** 1: the text line (§2.1); 2: the binary header (§2.2). */
  version: 1 | 2;
  /**
   * `"proxy"`: relayed for a client, whose addresses `source` and
   * `destination` are when the header has them. `"local"` (v2 only): the
   * proxy's own connection, such as a health check; serve it as itself.
   */
  command: "proxy" | "local";
  /**
   * The client's address. Undefined for LOCAL, v1 UNKNOWN and v2 UNSPEC:
   * serve the connection with its own addresses.
   */
  source?: Deno.NetAddr | Deno.UnixAddr;
  /** The address the client connected to; undefined whenever `source` is. */
  destination?: Deno.NetAddr | Deno.UnixAddr;
  /**
   * The types of the v2 TLVs after the addresses, in order (for the log);
   * only when the header has addresses. LOCAL and UNSPEC headers are skipped
   * whole, as §2.2 says to, so theirs are not read.
   */
  tlvs?: number[];
}

/** What {@linkcode ProxyHeaderParser.push} found so far. */
export type ProxyParseResult =
  /** Not decided yet: push the next read's bytes. */
  | { status: "more" }
  /**
   * The header is complete and valid. `rest` holds the bytes pushed after it
   * (the start of the request; a copy, possibly empty).
   */
  | { status: "done"; header: ProxyHeader; rest: Uint8Array }
  /** Not a valid PROXY header; `reason` says why in one line. */
  | { status: "failed"; reason: string };

const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;
/** "PROXY " (§2.1). */
const V1_PREFIX = new TextEncoder().encode("PROXY ");
/** §2.2: the 12 bytes every v2 header starts with; a NUL at the 5th, never a string. */
export const V2_SIGNATURE: Uint8Array = Uint8Array.of(
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
);
const V1_KEYWORDS = ["TCP4", "TCP6", "UNKNOWN"] as const;
type V1Keyword = typeof V1_KEYWORDS[number];
const COMMAND_LOCAL = 0x0;
const COMMAND_PROXY = 0x1;
const FAMILY_UNSPEC = 0x0;
const FAMILY_INET = 0x1;
const FAMILY_INET6 = 0x2;
const FAMILY_UNIX = 0x3;
const TRANSPORT_UNSPEC = 0x0;
const TRANSPORT_STREAM = 0x1;
const TRANSPORT_DGRAM = 0x2;
/** Address block lengths by family (§2.2). */
const ADDRESS_LENGTHS: Record<number, number> = {
  [FAMILY_INET]: 12,
  [FAMILY_INET6]: 36,
  [FAMILY_UNIX]: 216,
};
const FAMILY_NAMES: Record<number, string> = {
  [FAMILY_INET]: "TCP over IPv4",
  [FAMILY_INET6]: "TCP over IPv6",
  [FAMILY_UNIX]: "UNIX stream",
};
const UNIX_PATH_LENGTH = 108;
const TLV_HEADER_LENGTH = 3;
const PP2_TYPE_CRC32C = 0x03;
const MORE: ProxyParseResult = Object.freeze({ status: "more" });
/** The reflected Castagnoli polynomial's byte table (RFC 4960 appendix B). */
const CRC32C_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/**
 * Reads a PROXY protocol header, v1 or v2, from bytes pushed as they arrive:
 * all at once, split anywhere, or one byte at a time.
 *
 * It decides as early as the bytes allow: the first byte that cannot start
 * either signature, a bad command or family, a length above
 * {@linkcode MAX_V2_LENGTH} or a v1 line without CRLF in its first
 * {@linkcode MAX_V1_LENGTH} bytes fails at once. It never throws on any
 * input, and it asks for more only while fewer than
 * {@linkcode MAX_HEADER_LENGTH} bytes have been pushed.
 *
 * @example Usage
 * ```ts
 * import { ProxyHeaderParser } from "./_proxy_header.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const parser = new ProxyHeaderParser();
 * const bytes = new TextEncoder().encode(
 *   "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nhello",
 * );
 * assertEquals(parser.push(bytes.subarray(0, 10)), { status: "more" });
 * const result = parser.push(bytes.subarray(10));
 * assertEquals(result.status, "done");
 * if (result.status === "done") {
 *   assertEquals(result.header.source, {
 *     transport: "tcp",
 *     hostname: "192.168.0.1",
 *     port: 56324,
 *   });
 *   assertEquals(new TextDecoder().decode(result.rest), "hello");
 * }
 * ```
 */
export class ProxyHeaderParser {
  /** The header bytes so far; grown once a v2 length asks for more. */
  #buf = new Uint8Array(MAX_V1_LENGTH + 1);
  #length = 0;
  /** v2: the whole header's length, once its length field is in. */
  #total = 0;
  /** v1: the keyword, once the space or CR after it is in. */
  #keyword: V1Keyword | undefined;
  #finished = false;

  /**
   * Takes the next bytes of the connection.
   *
   * @param chunk The bytes one read returned; copied, not kept.
   * @returns `more` (push the next read), `done` with the header and the
   *   bytes after it, or `failed` with the reason.
   * @throws {Error} When called again after `done` or `failed`: the bytes
   *   pushed then belong to the request, which the caller already has.
   */
  push(chunk: Uint8Array): ProxyParseResult {
    if (this.#finished) {
      throw new Error(
        "ProxyHeaderParser.push() called after the header was done or failed",
      );
    }
    for (let i = 0; i < chunk.length; i++) {
      this.#buf[this.#length++] = chunk[i]!;
      const outcome = this.#step();
      if (outcome === undefined) continue;
      this.#finished = true;
      return typeof outcome === "string"
        ? { status: "failed", reason: outcome }
        : { status: "done", header: outcome, rest: chunk.slice(i + 1) };
    }
    return MORE;
  }

  /** Looks at the byte just added: undefined to go on, else the outcome. */
  #step(): ProxyHeader | string | undefined {
    const p = this.#length - 1;
    const b = this.#buf[p]!;
    if (p === 0 && b !== V1_PREFIX[0] && b !== V2_SIGNATURE[0]) {
      return notHeader(this.#buf.subarray(0, 1));
    }
    return this.#buf[0] === V1_PREFIX[0]
      ? this.#stepV1(p, b)
      : this.#stepV2(p, b);
  }

  #stepV1(p: number, b: number): ProxyHeader | string | undefined {
    if (p < V1_PREFIX.length) {
      return b === V1_PREFIX[p]
        ? undefined
        : notHeader(this.#buf.subarray(0, p + 1));
    }
    const previous = this.#buf[p - 1]!;
    if (b === LF) {
      return previous === CR
        ? parseV1Line(this.#buf.subarray(V1_PREFIX.length, p - 1))
        : "malformed v1 line: a LF without the CR before it";
    }
    if (previous === CR) {
      return "malformed v1 line: a CR not followed by LF";
    }
    if (this.#keyword === undefined) {
      const word = ascii(this.#buf.subarray(V1_PREFIX.length, p));
      if (b === SPACE || b === CR) {
        const keyword = V1_KEYWORDS.find((k) => k === word);
        if (keyword === undefined || (b === CR && keyword !== "UNKNOWN")) {
          return `malformed v1 line: ${
            JSON.stringify(ascii(this.#buf.subarray(0, p + 1)))
          } is not "PROXY TCP4 ", "PROXY TCP6 " or "PROXY UNKNOWN"`;
        }
        this.#keyword = keyword;
      } else if (!V1_KEYWORDS.some((k) => k.startsWith(word + ascii([b])))) {
        return `malformed v1 line: ${
          JSON.stringify(ascii(this.#buf.subarray(0, p + 1)))
        } does not start "PROXY TCP4", "PROXY TCP6" or "PROXY UNKNOWN"`;
      }
    } else if (b !== CR && !allowedInV1(this.#keyword, b)) {
      return `malformed v1 line: byte 0x${hex2(b)} ${
        b >= 0x21 && b < 0x7f ? `("${String.fromCharCode(b)}") ` : ""
      }cannot appear in a ${this.#keyword} line`;
    }
    if (p + 1 === MAX_V1_LENGTH) {
      return `v1 line too long: no CRLF in the first ${MAX_V1_LENGTH} bytes`;
    }
    return undefined;
  }

  #stepV2(p: number, b: number): ProxyHeader | string | undefined {
    if (p < V2_SIGNATURE.length) {
      return b === V2_SIGNATURE[p]
        ? undefined
        : notHeader(this.#buf.subarray(0, p + 1));
    }
    if (p === 12) {
      if (b >> 4 !== 2) {
        return `unsupported PROXY protocol version: ${b >> 4} (byte 13 is 0x${
          hex2(b)
        }; only 2 follows the v2 signature)`;
      }
      const command = b & 0xf;
      if (command !== COMMAND_LOCAL && command !== COMMAND_PROXY) {
        return `unknown v2 command: 0x${
          command.toString(16)
        } (only 0x0 LOCAL and 0x1 PROXY exist)`;
      }
      return undefined;
    }
    if (p === 13) {
      // §2.2: for LOCAL the family is ignored.
      return this.#command() === COMMAND_LOCAL ? undefined : checkFamily(b);
    }
    if (p === 14) return undefined;
    if (p === 15) {
      const length = (this.#buf[14]! << 8) | b;
      if (length > MAX_V2_LENGTH) {
        return `v2 header too long: ${length} bytes of addresses and TLVs, above this server's limit of ${MAX_V2_LENGTH}`;
      }
      const family = this.#buf[13]!;
      const needed = this.#command() === COMMAND_PROXY
        ? ADDRESS_LENGTHS[family >> 4] ?? 0
        : 0;
      if ((family & 0xf) === TRANSPORT_STREAM && length < needed) {
        return `malformed v2 header: ${length} bytes of addresses for ${
          FAMILY_NAMES[family >> 4]
        }, which needs ${needed}`;
      }
      this.#total = 16 + length;
      if (this.#total > this.#buf.length) {
        const grown = new Uint8Array(this.#total);
        grown.set(this.#buf.subarray(0, this.#length));
        this.#buf = grown;
      }
    }
    return this.#length === this.#total
      ? parseV2(this.#buf.subarray(0, this.#total))
      : undefined;
  }

  #command(): number {
    return this.#buf[12]! & 0xf;
  }
}

/** The failure for bytes that cannot begin either signature. */
function notHeader(bytes: Uint8Array): string {
  const shown = Array.from(bytes, (b) => `0x${hex2(b)}`).join(" ");
  return `not a PROXY protocol header: the connection starts ${shown}, not "PROXY " or the v2 signature`;
}

/** Which bytes a v1 line may hold after its keyword (CR aside). */
function allowedInV1(keyword: V1Keyword, b: number): boolean {
  if (keyword === "UNKNOWN") return true; // §2.1: the rest is ignored
  const digit = b >= 0x30 && b <= 0x39;
  if (keyword === "TCP4") return digit || b === 0x2e || b === SPACE;
  const letter = (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
  return digit || letter || b === 0x2e || b === 0x3a || b === SPACE;
}

/** Parses the v1 line between "PROXY " and its CRLF (§2.1). */
function parseV1Line(line: Uint8Array): ProxyHeader | string {
  const text = ascii(line);
  if (text === "UNKNOWN" || text.startsWith("UNKNOWN ")) {
    return { version: 1, command: "proxy" };
  }
  const fields = text.split(" ");
  const [keyword, src, dst, sport, dport] = fields;
  if (fields.length !== 5 || fields.includes("")) {
    return `malformed v1 line: ${
      JSON.stringify(`PROXY ${text}`)
    } is not "PROXY ${keyword} SOURCE DESTINATION SPORT DPORT" with single spaces`;
  }
  const family = keyword === "TCP4" ? 4 : 6;
  const source = v1Address(src!, family, "source");
  if (typeof source === "string") return source;
  const destination = v1Address(dst!, family, "destination");
  if (typeof destination === "string") return destination;
  const sourcePort = v1Port(sport!, "source");
  if (typeof sourcePort === "string") return sourcePort;
  const destinationPort = v1Port(dport!, "destination");
  if (typeof destinationPort === "string") return destinationPort;
  return {
    version: 1,
    command: "proxy",
    source: { transport: "tcp", ...source, port: sourcePort },
    destination: { transport: "tcp", ...destination, port: destinationPort },
  };
}

/** A v1 address as Deno shows it, or why it is not one. */
function v1Address(
  text: string,
  family: 4 | 6,
  which: string,
): { hostname: string } | string {
  if (family === 4) {
    return parseIpv4(text) === undefined
      ? `malformed v1 line: ${which} address ${
        JSON.stringify(text)
      } is not an IPv4 address (four numbers 0 to 255, no leading zeros)`
      : { hostname: text };
  }
  const bytes = parseIpv6(text);
  return bytes === undefined
    ? `malformed v1 line: ${which} address ${
      JSON.stringify(text)
    } is not an IPv6 address`
    : { hostname: formatIpv6(bytes) };
}

/** A v1 port, or why it is not one (§2.1: 0 to 65535, no leading zeros). */
function v1Port(text: string, which: string): number | string {
  const port = parseDecimal(text, 65535);
  return port ??
    `malformed v1 line: ${which} port ${
      JSON.stringify(text)
    } is not a number from 0 to 65535 without leading zeros`;
}

/** Why a v2 family and transport byte of a PROXY header is refused, if so. */
function checkFamily(b: number): string | undefined {
  const family = b >> 4;
  const transport = b & 0xf;
  if (family > FAMILY_UNIX) {
    return `unknown v2 address family: 0x${
      hex2(b)
    } (the family must be 0 to 3)`;
  }
  if (transport > TRANSPORT_DGRAM) {
    return `unknown v2 transport protocol: 0x${
      hex2(b)
    } (the protocol must be 0 to 2)`;
  }
  if (transport === TRANSPORT_DGRAM) {
    return `unsupported v2 protocol: 0x${
      hex2(b)
    } is a datagram (UDP or UNIX datagram) header, and this is a TCP server`;
  }
  return undefined;
}

/** Parses a whole v2 header, fixed part included (§2.2). */
function parseV2(header: Uint8Array): ProxyHeader | string {
  const command = header[12]! & 0xf;
  const family = header[13]! >> 4;
  const transport = header[13]! & 0xf;
  // §2.2: LOCAL discards the whole block; UNSPEC (family or protocol)
  // falls back to the connection's own addresses.
  if (command === COMMAND_LOCAL) return { version: 2, command: "local" };
  if (family === FAMILY_UNSPEC || transport === TRANSPORT_UNSPEC) {
    return { version: 2, command: "proxy" };
  }
  const body = header.subarray(16);
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  let source: Deno.NetAddr | Deno.UnixAddr;
  let destination: Deno.NetAddr | Deno.UnixAddr;
  if (family === FAMILY_UNIX) {
    source = { transport: "unix", path: unixPath(body.subarray(0, 108)) };
    destination = {
      transport: "unix",
      path: unixPath(body.subarray(UNIX_PATH_LENGTH, 2 * UNIX_PATH_LENGTH)),
    };
  } else {
    const size = family === FAMILY_INET ? 4 : 16;
    const format = size === 4 ? formatIpv4 : formatIpv6;
    source = {
      transport: "tcp",
      hostname: format(body.subarray(0, size)),
      port: view.getUint16(2 * size),
    };
    destination = {
      transport: "tcp",
      hostname: format(body.subarray(size, 2 * size)),
      port: view.getUint16(2 * size + 2),
    };
  }
  const tlvs = readTlvs(header, 16 + ADDRESS_LENGTHS[family]!);
  if (typeof tlvs === "string") return tlvs;
  return { version: 2, command: "proxy", source, destination, tlvs };
}

/**
 * The TLV types from `offset` to the end of `header` (§2.2), each length
 * checked against what remains; a CRC32C TLV is checked too (§2.2.3).
 */
function readTlvs(header: Uint8Array, offset: number): number[] | string {
  const types: number[] = [];
  let at = offset;
  while (at < header.length) {
    const left = header.length - at;
    if (left < TLV_HEADER_LENGTH) {
      return `malformed v2 header: ${left} bytes after the last TLV, too few for another`;
    }
    const type = header[at]!;
    const length = (header[at + 1]! << 8) | header[at + 2]!;
    if (length > left - TLV_HEADER_LENGTH) {
      return `malformed v2 header: TLV 0x${hex2(type)} says ${length} bytes, ${
        left - TLV_HEADER_LENGTH
      } are left`;
    }
    if (type === PP2_TYPE_CRC32C) {
      const problem = checkCrc32c(header, at + TLV_HEADER_LENGTH, length);
      if (problem !== undefined) return problem;
    }
    types.push(type);
    at += TLV_HEADER_LENGTH + length;
  }
  return types;
}

/** Why the CRC32C TLV whose value is at `at` is wrong, if it is (§2.2.3). */
function checkCrc32c(
  header: Uint8Array,
  at: number,
  length: number,
): string | undefined {
  if (length !== 4) {
    return `malformed v2 header: the CRC32C TLV has ${length} bytes, not 4`;
  }
  const view = new DataView(header.buffer, header.byteOffset);
  const stated = view.getUint32(at);
  const zeroed = header.slice();
  zeroed.fill(0, at, at + 4);
  const computed = crc32c(zeroed);
  return stated === computed
    ? undefined
    : `v2 header CRC32C mismatch: it says 0x${
      stated.toString(16).padStart(8, "0")
    }, the header's is 0x${computed.toString(16).padStart(8, "0")}`;
}

/** CRC32C (Castagnoli), as RFC 4960 appendix B computes it. */
function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) crc = CRC32C_TABLE[(crc ^ b) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * A 108-byte NUL-padded AF_UNIX path as text. An abstract address (first
 * byte NUL, Linux) is shown `@name`, the way `ss` shows it.
 */
function unixPath(bytes: Uint8Array): string {
  const decoder = new TextDecoder();
  if (bytes[0] === 0) {
    let end = bytes.length;
    while (end > 1 && bytes[end - 1] === 0) end--;
    return end > 1 ? "@" + decoder.decode(bytes.subarray(1, end)) : "";
  }
  const nul = bytes.indexOf(0);
  return decoder.decode(bytes.subarray(0, nul === -1 ? bytes.length : nul));
}

/**
 * Builds the PROXY header a client sends first to say whom it relays
 * (§2.1, §2.2): TCP4 when both addresses are IPv4, else TCP6, an IPv4 one
 * mapped to `::ffff:a.b.c.d` (as HAProxy does). Version 2 uses the PROXY
 * command over STREAM and no TLVs. The addresses' `transport` is not read:
 * the header is for TCP.
 *
 * @param version 1 for the text line, 2 for the binary header.
 * @param source The client's address, as its socket shows it.
 * @param destination The address the client connected to.
 * @returns The header bytes, to send before anything else.
 * @throws {TypeError} When a hostname is not an IPv4 or IPv6 address (names
 *   are not resolved).
 * @throws {RangeError} When a port is not an integer from 0 to 65535, or the
 *   version is not 1 or 2.
 *
 * @example Usage
 * ```ts
 * import { encodeProxyHeader } from "./_proxy_header.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const header = encodeProxyHeader(
 *   1,
 *   { transport: "tcp", hostname: "192.168.0.1", port: 56324 },
 *   { transport: "tcp", hostname: "192.168.0.11", port: 443 },
 * );
 * assertEquals(
 *   new TextDecoder().decode(header),
 *   "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
 * );
 * ```
 */
export function encodeProxyHeader(
  version: 1 | 2,
  source: Deno.NetAddr,
  destination: Deno.NetAddr,
): Uint8Array {
  if (version !== 1 && version !== 2) {
    throw new RangeError(
      `Invalid PROXY protocol version: ${version} is not 1 or 2`,
    );
  }
  let src = addressBytes(source.hostname);
  let dst = addressBytes(destination.hostname);
  const sport = checkedPort(source.port);
  const dport = checkedPort(destination.port);
  if (src.length !== dst.length) {
    src = mapToIpv6(src);
    dst = mapToIpv6(dst);
  }
  const ipv4 = src.length === 4;
  if (version === 1) {
    const format = ipv4 ? formatIpv4 : formatIpv6;
    return new TextEncoder().encode(
      `PROXY ${ipv4 ? "TCP4" : "TCP6"} ${format(src)} ${
        format(dst)
      } ${sport} ${dport}\r\n`,
    );
  }
  const addressLength = 2 * src.length + 4;
  const header = new Uint8Array(16 + addressLength);
  const view = new DataView(header.buffer);
  header.set(V2_SIGNATURE);
  header[12] = 0x20 | COMMAND_PROXY;
  header[13] = ((ipv4 ? FAMILY_INET : FAMILY_INET6) << 4) | TRANSPORT_STREAM;
  view.setUint16(14, addressLength);
  header.set(src, 16);
  header.set(dst, 16 + src.length);
  view.setUint16(16 + 2 * src.length, sport);
  view.setUint16(18 + 2 * src.length, dport);
  return header;
}

/**
 * Builds the v2 header of a connection a proxy makes for itself, such as a
 * health check: the LOCAL command, family UNSPEC, no addresses (§2.2).
 *
 * @returns The 16 header bytes.
 *
 * @example Usage
 * ```ts
 * import { encodeLocalHeader, ProxyHeaderParser } from "./_proxy_header.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const result = new ProxyHeaderParser().push(encodeLocalHeader());
 * assertEquals(result, {
 *   status: "done",
 *   header: { version: 2, command: "local" },
 *   rest: new Uint8Array(0),
 * });
 * ```
 */
export function encodeLocalHeader(): Uint8Array {
  const header = new Uint8Array(16);
  header.set(V2_SIGNATURE);
  header[12] = 0x20 | COMMAND_LOCAL;
  header[13] = (FAMILY_UNSPEC << 4) | TRANSPORT_UNSPEC;
  return header;
}

/** The 4 or 16 bytes of an IP address in text. */
function addressBytes(hostname: string): Uint8Array {
  const bytes = parseIpv4(hostname) ?? parseIpv6(hostname);
  if (bytes === undefined) {
    throw new TypeError(
      `Invalid address: ${
        JSON.stringify(hostname)
      } is not an IPv4 or IPv6 address`,
    );
  }
  return bytes;
}

function checkedPort(port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Invalid port: ${port} is not an integer from 0 to 65535`,
    );
  }
  return port;
}

/** `a.b.c.d` as `::ffff:a.b.c.d`; IPv6 as it is. */
function mapToIpv6(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 16) return bytes;
  const mapped = new Uint8Array(16);
  mapped[10] = mapped[11] = 0xff;
  mapped.set(bytes, 12);
  return mapped;
}

/** A decimal from 0 to `max` without leading zeros (§2.1), else undefined. */
function parseDecimal(text: string, max: number): number | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= max ? n : undefined;
}

/** Dotted-quad IPv4 (§2.1: 0 to 255, no leading zeros) to 4 bytes. */
function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const n = parseDecimal(parts[i]!, 255);
    if (n === undefined) return undefined;
    bytes[i] = n;
  }
  return bytes;
}

/**
 * Textual IPv6 to 16 bytes, as `inet_pton` reads it: eight groups of one to
 * four hex digits, at most one `::` for one or more zero groups, and an
 * optional dotted-quad IPv4 address as the last 32 bits.
 */
function parseIpv6(text: string): Uint8Array | undefined {
  if (text.length > 45) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = ipv6Groups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? ipv6Groups(halves[1]!, true) : [];
  if (head === undefined || tail === undefined) return undefined;
  const gap = 8 - head.length - tail.length;
  if (halves.length === 1 ? gap !== 0 : gap < 1) return undefined;
  const groups = [
    ...head,
    ...new Array<number>(halves.length === 1 ? 0 : gap).fill(0),
    ...tail,
  ];
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  groups.forEach((group, i) => view.setUint16(2 * i, group));
  return bytes;
}

/** The 16-bit groups of one side of `::`; a last IPv4 part makes two. */
function ipv6Groups(text: string, last: boolean): number[] | undefined {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
      groups.push(parseInt(part, 16));
      continue;
    }
    const ipv4 = last && i === parts.length - 1 ? parseIpv4(part) : undefined;
    if (ipv4 === undefined) return undefined;
    groups.push((ipv4[0]! << 8) | ipv4[1]!, (ipv4[2]! << 8) | ipv4[3]!);
  }
  return groups;
}

function formatIpv4(bytes: Uint8Array): string {
  return bytes.join(".");
}

/**
 * 16 bytes as Deno shows an IPv6 `hostname` (Rust's `Ipv6Addr` display):
 * lowercase, no leading zeros, the first longest run of two or more zero
 * groups as `::`, and IPv4-mapped addresses as `::ffff:a.b.c.d`.
 */
function formatIpv6(bytes: Uint8Array): string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, 16);
  const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(2 * i));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIpv4(bytes.subarray(12, 16))}`;
  }
  let bestStart = 0;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLength < 2) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${
    hex.slice(bestStart + bestLength).join(":")
  }`;
}

function ascii(bytes: ArrayLike<number>): string {
  return String.fromCharCode(...Array.from(bytes));
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, "0");
}
