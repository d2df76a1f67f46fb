// Copyright the upcase authors. MIT license.
/**
 * upcase: the classic TCP "uppercase" server and its one-shot client.
 *
 * A client sends bytes; the server sends every one of them back with ASCII
 * letters upper-cased (C `toupper` in the C locale), in order, and closes the
 * connection once the client half-closes. `--once` mode keeps the seed
 * tutorial's exact behaviour: one read of at most {@linkcode MAXLINE} bytes.
 *
 * ```ts
 * import { request, serve } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const reply = await request("hello, world", { port: server.addr.port });
 * assertEquals(new TextDecoder().decode(reply), "HELLO, WORLD");
 * ```
 *
 * @module
 */

export {
  CLIENT_HOST,
  MAXLINE,
  SERV_PORT,
  SERVER_HOST,
} from "./src/constants.ts";
export { toUpper, toUpperInPlace } from "./src/transform.ts";
export { VERSION } from "./src/version.ts";
export type { TraceEvent } from "./src/_trace.ts";
export {
  CLOSE_REASONS,
  type CloseReason,
  DURATION_BUCKETS,
  type DurationSnapshot,
} from "./src/metrics.ts";
export { toUpperUnicode, UnicodeUpperCaser } from "./src/unicode.ts";
export {
  DEFAULT_UDP_RATE,
  DROP_REASONS,
  type DropReason,
  MAX_UDP_SOURCES,
  serveUdp,
  type ServeUdpOptions,
  UDP_RECEIVE_BUFFER_BYTES,
  type UdpEvent,
  UdpServer,
  type UdpStats,
} from "./src/serve_udp.ts";
export {
  DEFAULT_BACKLOG,
  DEFAULT_GRACE_MS,
  DEFAULT_PROXY_TIMEOUT_MS,
  DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS,
  type ProxyProtocolOptions,
  serve,
  type ServeCommonOptions,
  type ServeOptions,
  Server,
  type ServerEvent,
  type ServerStats,
  type ServeUnixOptions,
  type ShutdownOptions,
} from "./src/serve.ts";
export {
  type AcceptPauseFault,
  type BandwidthFault,
  type CloseFault,
  type ConnectionFault,
  type ConnectionFaultBase,
  type CorruptFault,
  type Fault,
  type FaultKind,
  type FaultPoint,
  formatFault,
  type LatencyFault,
  parseFault,
  type ResetFault,
  type SliceFault,
  type SlowCloseFault,
  type SlowReadFault,
  type StallFault,
} from "./src/_fault_spec.ts";
export {
  type Latency,
  type LoadMode,
  type LoadOptions,
  type LoadProgress,
  type LoadReport,
  runLoad,
} from "./src/load.ts";
export {
  connect,
  type ConnectOptions,
  type ConnectTlsOptions,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  exchange,
  type ExchangeResult,
  request,
  type RequestOptions,
} from "./src/request.ts";
