// Copyright the upcase authors. MIT license.
/**
 * The side channel's HTTP/1.1 request parser (RFC 9112), pure: bytes in, a
 * request head or a reason to refuse out, no sockets. It is strict where
 * leniency has let requests be smuggled (a space before a colon, folded
 * lines, two lengths, a length and chunked together) and bounded in what it
 * reads (see {@linkcode MAX_HEAD_BYTES}). Internal.
 *
 * @module
 */

/** The most bytes a request line and its header fields may take together. */
export const MAX_HEAD_BYTES = 8192;
/** The most header fields in one request. */
export const MAX_HEADER_FIELDS = 64;
/** The most bytes of content (a body) a request may carry. */
export const MAX_BODY_BYTES = 64 * 1024;

/** A parsed request head. */
export interface RequestHead {
  /** The method, case-sensitive as sent: `GET`, `HEAD`, ... */
  method: string;
  /** The request target as sent: `/metrics?x=1`, `http://h/metrics`, `*`. */
  target: string;
  /** The target's path, without its query: `/metrics`; `*` for `*`. */
  path: string;
  /** The HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1 (and 1.x). */
  minor: 0 | 1;
  /** Whether the connection may carry another request after this one. */
  keepAlive: boolean;
  /** The bytes of content that follow the head (`Content-Length`). */
  contentLength: number;
  /** The header fields, names lower-cased, in order. */
  fields: [name: string, value: string][];
}

/** The status codes the parser refuses a request with. */
export type RefusalStatus = 400 | 413 | 414 | 431 | 501 | 505;

/** What {@linkcode parseRequestHead} found at the start of the bytes. */
export type ParseResult =
  | {
    /** More bytes are needed (none of them wrong so far). */
    kind: "incomplete";
  }
  | {
    kind: "head";
    head: RequestHead;
    /** How many bytes the head took (empty lines before it included). */
    length: number;
  }
  | {
    /** The request is refused: answer `status` with `reason`, then close. */
    kind: "refused";
    status: RefusalStatus;
    /** One line, for the response body. */
    reason: string;
  };

const CR = 0x0d;
const LF = 0x0a;
const decoder = new TextDecoder("latin1");

/**
 * Parses the request head at the start of `bytes`: the request line and the
 * header fields up to the empty line. Empty lines before the request line
 * are skipped (RFC 9112, 2.2); a line may end in CRLF or a bare LF.
 *
 * @param bytes What the connection has received and not yet used.
 * @returns A head and its length, "incomplete", or a refusal.
 *
 * @example Usage
 * ```ts
 * import { parseRequestHead } from "./_http_request.ts";
 * import { assertEquals } from "@std/assert";
 *
 * const bytes = new TextEncoder().encode(
 *   "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
 * );
 * const result = parseRequestHead(bytes);
 * assertEquals(result.kind, "head");
 * if (result.kind === "head") assertEquals(result.head.path, "/metrics");
 * assertEquals(parseRequestHead(bytes.subarray(0, 10)).kind, "incomplete");
 * ```
 */
export function parseRequestHead(bytes: Uint8Array): ParseResult {
  let start = 0;
  // Empty lines before the request line: skipped, but counted in the bound.
  while (start < bytes.length && start < MAX_HEAD_BYTES) {
    if (bytes[start] === LF) start++;
    else if (bytes[start] === CR && bytes[start + 1] === LF) start += 2;
    else break;
  }
  const lines: string[] = [];
  let lineStart = start;
  for (let i = start; i < bytes.length; i++) {
    if (i >= MAX_HEAD_BYTES) break;
    if (bytes[i] !== LF) continue;
    const end = i > lineStart && bytes[i - 1] === CR ? i - 1 : i;
    if (end === lineStart && lines.length > 0) {
      // The empty line: the head is complete.
      return finish(lines, i + 1);
    }
    const line = decoder.decode(bytes.subarray(lineStart, end));
    if (lines.length === 0) {
      const refused = checkRequestLine(line);
      if (refused !== undefined) return refused;
    } else if (lines.length > MAX_HEADER_FIELDS) {
      return refuse(431, `more than ${MAX_HEADER_FIELDS} header fields`);
    }
    lines.push(line);
    lineStart = i + 1;
  }
  if (bytes.length >= MAX_HEAD_BYTES) {
    return lines.length === 0
      ? refuse(414, `the request line is longer than ${MAX_HEAD_BYTES} bytes`)
      : refuse(431, `the request head is longer than ${MAX_HEAD_BYTES} bytes`);
  }
  if (lines.length === 0) {
    // The request line so far: refuse early what cannot become one.
    const partial = decoder.decode(bytes.subarray(start));
    if (!PARTIAL_REQUEST_LINE.test(partial)) {
      return refuse(400, "malformed request line");
    }
  }
  return { kind: "incomplete" };
}

function refuse(status: RefusalStatus, reason: string): ParseResult {
  return { kind: "refused", status, reason };
}

/** A token (RFC 9110, 5.6.2): a method or a field name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** The start of a request line that may still become one. */
const PARTIAL_REQUEST_LINE =
  /^[!#$%&'*+\-.^_`|~0-9A-Za-z]*(?: [\x21-\x7e]*(?: (?:H(?:T(?:T(?:P(?:\/(?:\d(?:\.\d?)?)?)?)?)?)?)?)?)?\r?$/;
/** The request line: method SP request-target SP HTTP-version. */
const REQUEST_LINE = /^([^ ]+) ([^ ]+) HTTP\/(\d)\.(\d)$/;

function checkRequestLine(line: string): ParseResult | undefined {
  const match = REQUEST_LINE.exec(line);
  if (match === null) return refuse(400, "malformed request line");
  const [, method, target] = match;
  if (!TOKEN.test(method!)) return refuse(400, "malformed method");
  if (!/^[\x21-\x7e]+$/.test(target!)) {
    return refuse(400, "malformed request target");
  }
  if (match[3] !== "1") {
    return refuse(505, `HTTP/${match[3]}.${match[4]} is not supported`);
  }
  return undefined;
}

function finish(lines: string[], length: number): ParseResult {
  const [, method, target, , minorText] = REQUEST_LINE.exec(lines[0]!)!;
  const minor = minorText === "0" ? 0 : 1;
  const fields: [string, string][] = [];
  for (const line of lines.slice(1)) {
    if (line.startsWith(" ") || line.startsWith("\t")) {
      return refuse(400, "folded header line (obs-fold)");
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? "" : line.slice(0, colon);
    if (!TOKEN.test(name)) return refuse(400, "malformed header field name");
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    // deno-lint-ignore no-control-regex -- control characters are the point
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
      return refuse(400, `control character in header field ${name}`);
    }
    fields.push([name.toLowerCase(), value]);
  }
  const values = (name: string) =>
    fields.filter(([n]) => n === name).map(([, v]) => v);

  const hosts = values("host");
  if (hosts.length > 1) return refuse(400, "more than one Host field");
  if (minor === 1 && hosts.length === 0) {
    return refuse(400, "HTTP/1.1 request without a Host field");
  }
  if (hosts.length === 1 && !validHost(hosts[0]!)) {
    return refuse(400, "malformed Host field");
  }

  const path = targetPath(target!);
  if (path === undefined) return refuse(400, "malformed request target");

  if (values("transfer-encoding").length > 0) {
    return refuse(
      501,
      "Transfer-Encoding in a request is not supported: send Content-Length",
    );
  }
  const lengths = values("content-length").flatMap((v) => v.split(","))
    .map((v) => v.trim());
  let contentLength = 0;
  if (lengths.length > 0) {
    if (!lengths.every((v) => /^\d{1,15}$/.test(v) && v === lengths[0])) {
      return refuse(400, "malformed Content-Length");
    }
    contentLength = Number(lengths[0]);
    if (contentLength > MAX_BODY_BYTES) {
      return refuse(413, `content over ${MAX_BODY_BYTES} bytes`);
    }
  }

  const connection = values("connection").flatMap((v) => v.split(","))
    .map((v) => v.trim().toLowerCase());
  const keepAlive = connection.includes("close")
    ? false
    : minor === 1 || connection.includes("keep-alive");
  return {
    kind: "head",
    length,
    head: {
      method: method!,
      target: target!,
      path,
      minor,
      keepAlive,
      contentLength,
      fields,
    },
  };
}

/**
 * The path of an origin-form (`/a?b`) or absolute-form (`http://h/a?b`)
 * target, `*` for the asterisk form; undefined for anything else.
 */
function targetPath(target: string): string | undefined {
  if (target === "*") return "*";
  let rest = target;
  const absolute = /^https?:\/\/([^/?#]*)/i.exec(target);
  if (absolute !== null) {
    if (!validHost(absolute[1]!)) return undefined;
    rest = target.slice(absolute[0].length) || "/";
  }
  if (!rest.startsWith("/") || rest.includes("#")) return undefined;
  const query = rest.indexOf("?");
  const path = query < 0 ? rest : rest.slice(0, query);
  return /%(?![0-9A-Fa-f]{2})/.test(path) ? undefined : path;
}

/**
 * Whether a Host value (or a URL's authority) is `uri-host [":" port]`: a
 * bracketed IPv6 literal or a registered name (letters, digits, `-._~`,
 * sub-delims, `%XX`), and a port of at most 65535.
 */
function validHost(host: string): boolean {
  const match =
    /^(\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(?::(\d{0,5}))?$/
      .exec(host);
  if (match === null) return false;
  return match[2] === undefined || match[2] === "" ||
    Number(match[2]) <= 65535;
}
