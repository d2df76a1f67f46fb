// Copyright the upcase authors. MIT license.
/**
 * Protocol constants shared by the server and the client, as in the seed's
 * `server.c` and `client.c`.
 *
 * @module
 */

/**
 * The size of the seed's read buffer: in `--once` mode the server reads at most
 * this many bytes from each connection, exactly like `server.c`.
 *
 * @example Usage
 * ```ts
 * import { MAXLINE } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(MAXLINE, 80);
 * ```
 */
export const MAXLINE = 80;

/**
 * The seed's TCP port (`SERV_PORT` in `server.c` and `client.c`).
 *
 * @example Usage
 * ```ts
 * import { SERV_PORT } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(SERV_PORT, 6666);
 * ```
 */
export const SERV_PORT = 6666;

/**
 * The address the server binds by default: every IPv4 interface, like the
 * seed's `INADDR_ANY`.
 *
 * @example Usage
 * ```ts
 * import { SERVER_HOST } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(SERVER_HOST, "0.0.0.0");
 * ```
 */
export const SERVER_HOST = "0.0.0.0";

/**
 * The address the client connects to by default, as in the seed's `client.c`.
 *
 * @example Usage
 * ```ts
 * import { CLIENT_HOST } from "@upcase/upcase";
 * import { assertEquals } from "@std/assert";
 *
 * assertEquals(CLIENT_HOST, "127.0.0.1");
 * ```
 */
export const CLIENT_HOST = "127.0.0.1";
