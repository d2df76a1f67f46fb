// Copyright the upcase authors. MIT license.
// Where a UDP client's datagrams go and which address its own socket binds.
// Internal.

/**
 * The server's address to send to, and the address the client's socket
 * binds: the server's own loopback address (so `--allow-net=127.0.0.1` is
 * enough: Deno checks the bind too), else the wildcard of its family.
 *
 * @param hostname The server's host, as given.
 * @returns Both addresses.
 */
export function udpAddresses(hostname: string): { send: string; bind: string } {
  const send = hostname === "localhost" ? "127.0.0.1" : hostname;
  if (/^127\./.test(send) || send === "::1") return { send, bind: send };
  return { send, bind: send.includes(":") ? "::" : "0.0.0.0" };
}
