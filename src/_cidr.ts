// Copyright the upcase authors. MIT license.
// Address ranges in CIDR notation (--proxy-from 10.0.0.0/8,::1/128): parsed
// once, matched per connection. IPv4-mapped IPv6 peers (::ffff:a.b.c.d, as a
// dual-stack listener sees IPv4 clients) match IPv4 ranges. Internal.

/** A parsed range: the address's bits and how many of them must match. */
export interface Cidr {
  /** The range as written, for messages. */
  text: string;
  /** 4 or 16 bytes. */
  bytes: Uint8Array;
  /** Leading bits that must match. */
  prefix: number;
}

/**
 * The bytes of an IPv4 or IPv6 address, or undefined when it is neither.
 *
 * @param text An address without brackets or zone.
 * @returns 4 bytes for IPv4 (and IPv4-mapped IPv6), 16 for IPv6.
 */
export function addressBytes(text: string): Uint8Array | undefined {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const parts = v4.slice(1).map(Number);
    return parts.every((p) => p <= 255) ? new Uint8Array(parts) : undefined;
  }
  if (!text.includes(":")) return undefined;
  const dotted = /:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (dotted) {
    // ::ffff:1.2.3.4: the dotted tail is the last two groups.
    const four = addressBytes(dotted[1]!);
    if (four === undefined) return undefined;
    const hex = (hi: number, lo: number) => ((hi << 8) | lo).toString(16);
    text = `${text.slice(0, -dotted[1]!.length)}${hex(four[0]!, four[1]!)}:${
      hex(four[2]!, four[3]!)
    }`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const group = (g: string) =>
    /^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN;
  const left = halves[0] === "" ? [] : halves[0]!.split(":").map(group);
  const right = halves.length === 1 || halves[1] === ""
    ? []
    : halves[1]!.split(":").map(group);
  const known = left.length + right.length;
  if (halves.length === 1 ? known !== 8 : known > 7) return undefined;
  const groups = [
    ...left,
    ...Array(halves.length === 1 ? 0 : 8 - known).fill(0),
    ...right,
  ];
  if (groups.some((g) => Number.isNaN(g))) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  const mapped = bytes.subarray(0, 12).every((b, i) =>
    i < 10 ? b === 0 : b === 0xff
  );
  return mapped ? bytes.slice(12) : bytes;
}

/**
 * Parses `a.b.c.d/n,x::y/m,...` (a bare address is a /32 or /128).
 *
 * @param text The list.
 * @returns The ranges.
 * @throws {RangeError} Naming the first range that is not CIDR.
 */
export function parseCidrs(text: string): Cidr[] {
  return text.split(",").map((item) => {
    const [address = "", bits] = item.trim().split("/");
    const bytes = addressBytes(address.replace(/^\[(.*)\]$/, "$1"));
    const max = bytes === undefined ? 0 : bytes.length * 8;
    const prefix = bits === undefined
      ? max
      : /^\d{1,3}$/.test(bits)
      ? Number(bits)
      : NaN;
    if (bytes === undefined || !(prefix >= 0 && prefix <= max)) {
      throw new RangeError(`"${item}" is not an address range like 10.0.0.0/8`);
    }
    return { text: item.trim(), bytes, prefix };
  });
}

/**
 * Whether `address` lies in one of `ranges`.
 *
 * @param address An IPv4 or IPv6 address, as Deno.NetAddr has it.
 * @param ranges From {@linkcode parseCidrs}.
 * @returns True when it matches one.
 */
export function inCidrs(address: string, ranges: readonly Cidr[]): boolean {
  const bytes = addressBytes(address);
  if (bytes === undefined) return false;
  return ranges.some((range) => {
    if (range.bytes.length !== bytes.length) return false;
    let bits = range.prefix;
    for (let i = 0; bits > 0; i++, bits -= 8) {
      const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
      if ((bytes[i]! & mask) !== (range.bytes[i]! & mask)) return false;
    }
    return true;
  });
}
