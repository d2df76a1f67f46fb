// Copyright the upcase authors. MIT license.
/**
 * The certificates of the TLS scenarios: the tests' own
 * (tests/_certs.ts, made afresh with `openssl`), written to
 * bench/.build/tls/. A test CA, and a leaf for localhost, 127.0.0.1 and ::1
 * that it signs (rustls rejects a self-signed certificate used as the
 * server's own: `CaUsedAsEndEntity`); ECDSA P-256 keys.
 *
 * @module
 */

import { makeTestCerts, type TestCerts } from "../tests/_certs.ts";
import { TLS_CA, TLS_CERT, TLS_DIR, TLS_KEY } from "./_paths.ts";

/**
 * Makes the CA ({@linkcode TLS_CA}) and the servers' certificate chain and
 * key ({@linkcode TLS_CERT}, {@linkcode TLS_KEY}).
 *
 * @returns Why they could not be made, if they could not.
 */
export async function makeCertificates(): Promise<string | undefined> {
  // Afresh: nothing of an earlier invocation's (or an older layout's) stays.
  try {
    await Deno.remove(TLS_DIR, { recursive: true });
  } catch (err: unknown) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  await Deno.mkdir(TLS_DIR, { recursive: true });
  let certs: TestCerts;
  try {
    certs = await makeTestCerts(TLS_DIR.replace(/\/$/, ""));
  } catch (err: unknown) {
    if (err instanceof Deno.errors.NotFound) {
      return "no openssl to make the certificates";
    }
    if (err instanceof Error) return err.message.trim().split("\n")[0];
    throw err;
  }
  // The servers' and the generator's command lines name the files.
  const written = [
    [certs.ca, TLS_CA],
    [certs.cert, TLS_CERT],
    [certs.key, TLS_KEY],
  ];
  for (const [got, want] of written) {
    if (got !== want) return `tests/_certs.ts wrote ${got}, not ${want}`;
  }
  return undefined;
}
