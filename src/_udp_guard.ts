// Copyright the upcase authors. MIT license.
// Which datagrams the UDP server leaves unanswered, so that it is safe to
// expose (CERT advisory CA-1996-01): sources that are services which answer
// (a spoofed one would loop two servers into a packet storm), broadcast and
// multicast sources (a spoofed one reflects at a whole network), and sources
// past their rate (reflection at one victim). Internal.

/**
 * Source ports of the well-known datagram services that answer whatever
 * they get: a datagram "from" one of them, answered, could start a loop.
 * One list, here.
 */
export const REFLECTING_PORTS: ReadonlyMap<number, string> = new Map([
  [7, "echo"],
  [9, "discard"],
  [11, "systat"],
  [13, "daytime"],
  [17, "qotd"],
  [19, "chargen"],
  [37, "time"],
  [53, "dns"],
  [69, "tftp"],
  [111, "sunrpc"],
  [123, "ntp"],
  [137, "netbios-ns"],
  [161, "snmp"],
  [389, "cldap"],
  [520, "rip"],
  [1900, "ssdp"],
  [5353, "mdns"],
  [11211, "memcached"],
]);

/** Why a datagram got no answer. */
export type DropReason =
  | "reflecting-port"
  | "broadcast-source"
  | "rate"
  | "permission"
  | "send-error";

/** Every {@linkcode DropReason}, in the order metrics list them. */
export const DROP_REASONS: readonly DropReason[] = [
  "reflecting-port",
  "broadcast-source",
  "rate",
  "permission",
  "send-error",
];

/**
 * Whether an address is a broadcast, multicast or unspecified one, which no
 * datagram can truly come from: 0.0.0.0/8, 255.255.255.255, loopback's
 * 127.255.255.255, 224.0.0.0/4, `::`, ff00::/8, their IPv4-mapped forms
 * (::ffff:a.b.c.d), and the `broadcasts` given (the local subnets').
 *
 * @param hostname The source address, as Deno gives it.
 * @param broadcasts Subnet broadcast addresses to refuse too.
 * @returns True when a reply must not go there.
 */
export function isBroadcastOrMulticast(
  hostname: string,
  broadcasts: ReadonlySet<string> = new Set(),
): boolean {
  const host = hostname.toLowerCase();
  const mapped = host.match(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/);
  const v4 = mapped ? mapped[1]! : host;
  const octets = v4.split(".");
  if (octets.length === 4) {
    const first = Number(octets[0]);
    return first === 0 || (first >= 224 && first <= 239) ||
      v4 === "255.255.255.255" || v4 === "127.255.255.255" ||
      broadcasts.has(v4);
  }
  return host.startsWith("ff") || host === "::";
}

/**
 * The broadcast address of each IPv4 subnet this machine is on, when it
 * may read its interfaces (`--allow-sys=networkInterfaces`); none else.
 *
 * @returns The addresses, e.g. 192.168.1.255.
 */
export function localBroadcasts(): Set<string> {
  const broadcasts = new Set<string>();
  const allowed = Deno.permissions.querySync({
    name: "sys",
    kind: "networkInterfaces",
  }).state === "granted";
  if (!allowed) return broadcasts;
  for (const nic of Deno.networkInterfaces()) {
    if (nic.family !== "IPv4") continue;
    const address = toNumber(nic.address);
    const mask = toNumber(nic.netmask);
    if (address === undefined || mask === undefined || mask === 0xffffffff) {
      continue;
    }
    const broadcast = (address | ~mask) >>> 0;
    broadcasts.add(
      [24, 16, 8, 0].map((shift) => (broadcast >>> shift) & 0xff).join("."),
    );
  }
  return broadcasts;
}

/** An IPv4 address as a 32-bit number. */
function toNumber(address: string): number | undefined {
  const octets = address.split(".").map(Number);
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255))) {
    return undefined;
  }
  return ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) |
    octets[3]!) >>> 0;
}

/**
 * Whether this process may send datagrams to `hostname`, any port, as Deno
 * checks each one. Asked without a prompt: a send that was not granted
 * would ask at the terminal and stop the whole server until someone answers.
 *
 * @param hostname An address.
 * @returns True when `--allow-net` covers it.
 */
export function maySendTo(hostname: string): boolean {
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return Deno.permissions.querySync({ name: "net", host }).state ===
    "granted";
}

/** The default of `--udp-rate`: replies per second to one source address. */
export const DEFAULT_UDP_RATE = 100;
/** Source addresses the rate limiter remembers; the least recent go first. */
export const MAX_UDP_SOURCES = 10_000;

/** A source address as the limiter keeps it. */
export interface Source {
  /** Replies it may still get now (the bucket's tokens). */
  tokens: number;
  /** When the tokens were counted, in ms. */
  at: number;
  /**
   * Why it is never answered, decided once when it came in (a broadcast
   * address, a host Deno may not send to); undefined when it may be.
   */
  verdict: DropReason | undefined;
  /** Set by {@linkcode SourceLimiter.take}: new to the table this time. */
  fresh: boolean;
  /** Set by {@linkcode SourceLimiter.take}: within its rate this time. */
  allowed: boolean;
}

/**
 * A token bucket per source address: each source may get `rate` replies a
 * second, with bursts up to `rate`. The table holds at most `maxSources`
 * addresses, the least recently seen evicted first (with no rate, the first
 * seen), so forged sources cannot grow it; an evicted source starts again
 * with a full bucket. Each entry also keeps the verdict on its address, so
 * the checks that do not change run once per source, not per datagram.
 */
export class SourceLimiter {
  #rate: number;
  #max: number;
  #judge: (source: string) => DropReason | undefined;
  /** Insertion order is recency: a source seen again moves to the end. */
  #sources = new Map<string, Source>();

  /**
   * @param rate Replies per second per source; 0 for no limit.
   * @param maxSources How many sources the table holds.
   * @param judge The verdict on a new source's address.
   */
  constructor(
    rate: number,
    maxSources = MAX_UDP_SOURCES,
    judge: (source: string) => DropReason | undefined = () => undefined,
  ) {
    this.#rate = rate;
    this.#max = maxSources;
    this.#judge = judge;
  }

  /** Sources in the table now. */
  get size(): number {
    return this.#sources.size;
  }

  /**
   * Records a datagram from `source`.
   *
   * @param source The source address (without the port).
   * @returns Its entry (the same object each time: read it at once), with
   * `fresh` and `allowed` set for this datagram.
   */
  take(source: string): Source {
    let entry = this.#sources.get(source);
    if (entry === undefined) {
      if (this.#sources.size >= this.#max) {
        const oldest = this.#sources.keys().next().value;
        if (oldest !== undefined) this.#sources.delete(oldest);
      }
      entry = {
        tokens: this.#rate,
        at: this.#rate === 0 ? 0 : performance.now(),
        verdict: this.#judge(source),
        fresh: true,
        allowed: true,
      };
      this.#sources.set(source, entry);
    } else {
      entry.fresh = false;
      // Without a rate the order need not follow recency: no reinsertion.
      if (this.#rate === 0) return entry;
      this.#sources.delete(source);
      this.#sources.set(source, entry);
      const now = performance.now();
      entry.tokens = Math.min(
        this.#rate,
        entry.tokens + (now - entry.at) * this.#rate / 1000,
      );
      entry.at = now;
    }
    if (this.#rate === 0) return entry;
    entry.allowed = entry.tokens >= 1;
    if (entry.allowed) entry.tokens -= 1;
    return entry;
  }
}
