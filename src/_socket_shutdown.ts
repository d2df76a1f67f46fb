// Copyright the upcase authors. MIT license.
// shutdown(2) of a TCP socket this process holds, found by its two
// addresses, through FFI to libc (Linux). Deno gives no way to reach the
// socket under a Deno.TlsConn whose handshake never finished: close() leaves
// it to the handshake task, which waits for the peer for ever. After
// shutdown(SHUT_RDWR) that task reads EOF, fails and frees the socket, and the
// peer gets its FIN. shutdown() does not close the descriptor, so a number
// that was reused in between cannot be hit: the match is by both addresses.
// Internal.

const AF_INET = 2;
const AF_INET6 = 10;
const SHUT_RDWR = 2;
const RLIMIT_NOFILE = 7;
/** Descriptors looked at when the soft limit cannot be read. */
const FALLBACK_FD_LIMIT = 65_536;

const SYMBOLS = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

let libc: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/**
 * Whether stalled sockets can be shut down here: Linux, with `--allow-ffi`
 * granted.
 *
 * @returns True when {@linkcode shutdownSockets} can work.
 */
export function canShutdownSockets(): boolean {
  if (Deno.build.os !== "linux") return false;
  return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
}

function open(): Deno.DynamicLibrary<typeof SYMBOLS> {
  libc ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return libc;
}

const sockaddr = new Uint8Array(128);
const socklen = new Uint32Array(1);

/** `host|port` of a socket's local or remote address, or undefined. */
function addressOf(fd: number, peer: boolean): string | undefined {
  const { symbols } = open();
  socklen[0] = sockaddr.length;
  const status = peer
    ? symbols.getpeername(fd, sockaddr, socklen)
    : symbols.getsockname(fd, sockaddr, socklen);
  if (status !== 0) return undefined;
  const family = sockaddr[0]! | (sockaddr[1]! << 8);
  const port = (sockaddr[2]! << 8) | sockaddr[3]!;
  if (family === AF_INET) return `${sockaddr.subarray(4, 8).join(".")}|${port}`;
  if (family !== AF_INET6) return undefined;
  const view = new DataView(sockaddr.buffer, 8, 16);
  const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(i * 2));
  if (groups.slice(0, 6).join() === "0,0,0,0,0,65535") {
    // An IPv4-mapped address: Deno reports it as the IPv4 one.
    return `${sockaddr.subarray(20, 24).join(".")}|${port}`;
  }
  return `${groups.map((g) => g.toString(16)).join(":")}|${port}`;
}

/** The same form as {@linkcode addressOf} for a Deno address. */
function normalize(addr: Deno.NetAddr): string {
  let host = addr.hostname;
  if (host.includes(":")) {
    const [head = "", tail] = host.split("::");
    const left = head === "" ? [] : head.split(":");
    const right = tail === undefined || tail === "" ? [] : tail.split(":");
    const zeros = tail === undefined
      ? []
      : Array(8 - left.length - right.length).fill("0");
    host = [...left, ...zeros, ...right]
      .map((g) => parseInt(g || "0", 16).toString(16)).join(":");
  }
  return `${host}|${addr.port}`;
}

function fdLimit(): number {
  const limits = new BigUint64Array(2);
  if (open().symbols.getrlimit(RLIMIT_NOFILE, limits) !== 0) {
    return FALLBACK_FD_LIMIT;
  }
  return Number(limits[0]! < 1_048_576n ? limits[0]! : 1_048_576n);
}

/**
 * Shuts down (both ways) every socket of this process connected between the
 * two addresses of one of `conns`. Descriptors are looked at from the lowest
 * up, stopping once all are found (the kernel hands out the lowest free
 * number, so new sockets sit low).
 *
 * @param conns The connections, by their addresses.
 * @returns How many sockets were shut down.
 */
export function shutdownSockets(
  conns: readonly { localAddr: Deno.Addr; remoteAddr: Deno.Addr }[],
): number {
  return forEachSocket(conns, (fd) => open().symbols.shutdown(fd, SHUT_RDWR));
}

/** `struct sockaddr` with `sa_family = AF_UNSPEC`: connect() to it dissolves. */
const UNSPEC = new Uint8Array(16);

/** ioctl(2) request: bytes in a socket's send queue not yet acknowledged. */
const SIOCOUTQ = 0x5411;
/** How often, and how long at most, a reset waits for the send queue. */
const UNSENT_POLL_MS = 5;
const UNSENT_LIMIT_MS = 1000;

/**
 * Resets the socket connected between the two addresses of `conn`: an RST
 * and nothing before it. `connect(fd, AF_UNSPEC)` disconnects a TCP socket
 * (the kernel sends the RST); SO_LINGER 0 then close() would not do here, as
 * Deno shuts the write side down (a FIN) before it closes. An RST drops what
 * the send queue still holds, so it waits (up to 1 s) for the bytes already
 * written to be acknowledged.
 *
 * @param conn The connection, by its socket's addresses.
 * @returns Whether its socket was found and reset.
 */
export async function resetSocket(
  conn: { localAddr: Deno.Addr; remoteAddr: Deno.Addr },
): Promise<boolean> {
  let found = -1;
  forEachSocket([conn], (fd) => found = fd);
  if (found < 0) return false;
  const { symbols } = open();
  const unsent = new Int32Array(1);
  const until = performance.now() + UNSENT_LIMIT_MS;
  while (performance.now() < until) {
    if (symbols.ioctl(found, BigInt(SIOCOUTQ), unsent) !== 0) break;
    if (unsent[0] === 0) break;
    await new Promise((resolve) => setTimeout(resolve, UNSENT_POLL_MS));
  }
  // Looked up again: in the meantime the socket may have gone, and its
  // number been given to another.
  return forEachSocket(
    [conn],
    (fd) => symbols.connect(fd, UNSPEC, UNSPEC.length),
  ) === 1;
}

/** Calls `act` on each socket between the two addresses of one of `conns`. */
function forEachSocket(
  conns: readonly { localAddr: Deno.Addr; remoteAddr: Deno.Addr }[],
  act: (fd: number) => void,
): number {
  const wanted = new Set<string>();
  for (const c of conns) {
    if (c.localAddr.transport !== "tcp" || c.remoteAddr.transport !== "tcp") {
      continue;
    }
    wanted.add(`${normalize(c.localAddr)}/${normalize(c.remoteAddr)}`);
  }
  let done = 0;
  const limit = wanted.size === 0 ? 0 : fdLimit();
  for (let fd = 3; fd < limit && done < wanted.size; fd++) {
    const local = addressOf(fd, false);
    if (local === undefined) continue;
    const remote = addressOf(fd, true);
    if (remote === undefined || !wanted.has(`${local}/${remote}`)) continue;
    act(fd);
    done++;
  }
  return done;
}
