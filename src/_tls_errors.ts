// Copyright the upcase authors. MIT license.
// TLS handshake failures in words: what rustls (through Deno) says, turned
// into one line a person can act on, for the client's errors and the
// server's log. Internal.

/** What went wrong in a handshake, for people. */
export interface TlsFailure {
  /** What kind of failure: the start of a one-line message. */
  kind:
    | "Untrusted certificate"
    | "Certificate name mismatch"
    | "Expired certificate"
    | "Not TLS"
    | "TLS handshake failed";
  /** The detail, after the colon. */
  detail: string;
  /** The fix, where there is one: a flag to use. */
  hint?: string;
}

/** The names in rustls's "certificate is only valid for ..." list. */
function validNames(message: string): string[] {
  const list = /only valid for (.*)$/.exec(message)?.[1] ?? "";
  return [...list.matchAll(/(?:DnsName|IpAddress)\(("?)([^")]*)\1\)/g)].map(
    (m) => m[2]!.replace(/^0::1$/, "::1"),
  );
}

/**
 * Explains a failed TLS handshake.
 *
 * @param err What the handshake (or the first read or write) threw.
 * @param peer Who is at the other end: "server" on the client, "client" on
 *   the server.
 * @returns The explanation, or undefined when `err` is no TLS failure.
 */
export function describeTlsFailure(
  err: unknown,
  peer: "server" | "client",
): TlsFailure | undefined {
  if (err instanceof Deno.errors.UnexpectedEof) {
    return {
      kind: "TLS handshake failed",
      detail: `the ${peer} closed the connection during the handshake`,
      hint: peer === "server" ? "is it a TLS server?" : undefined,
    };
  }
  if (!(err instanceof Error)) return undefined;
  const message = err.message;
  if (/UnknownIssuer/.test(message)) {
    return {
      kind: "Untrusted certificate",
      detail: "no trusted CA signed the server's certificate",
      hint: "use --ca FILE to trust its CA",
    };
  }
  const name = /not valid for name "([^"]*)"/.exec(message);
  if (name) {
    const valid = validNames(message);
    return {
      kind: "Certificate name mismatch",
      detail: valid.length > 0
        ? `the server's certificate is for ${valid.join(", ")}, not "${
          name[1]
        }"`
        : `the server's certificate is not valid for "${name[1]}"`,
      hint: "use --servername NAME",
    };
  }
  const expired = /not valid after (\d+)/.exec(message);
  if (expired || /expired/i.test(message)) {
    const when = expired
      ? ` on ${new Date(Number(expired[1]) * 1000).toISOString().slice(0, 10)}`
      : "";
    return {
      kind: "Expired certificate",
      detail: `the server's certificate expired${when}`,
      hint: "renew it, or check this machine's clock",
    };
  }
  if (/NotValidYet/.test(message)) {
    return {
      kind: "Expired certificate",
      detail: "the server's certificate is not valid yet",
      hint: "check this machine's clock",
    };
  }
  if (
    /corrupt message|InvalidContentType|MessageTooShort|MessageTooLarge|invalid (?:content|message)|HTTP request/i
      .test(message)
  ) {
    return {
      kind: "Not TLS",
      detail: peer === "server"
        ? "the server answered the handshake with bytes that are not TLS"
        : "the client sent bytes that are not TLS (a plaintext client?)",
      hint: peer === "server"
        ? "leave out --tls for a plaintext server"
        : undefined,
    };
  }
  const alert = /received fatal alert: (\w+)/.exec(message);
  if (alert) {
    const what = alert[1]!;
    const hints: Record<string, string> = {
      CertificateRequired:
        "it wants a client certificate: use --cert FILE --key FILE",
      UnknownCA: "it does not trust this certificate's CA",
      BadCertificate: "it rejected this certificate",
      ProtocolVersion: "no TLS version in common",
      HandshakeFailure: "no cipher suite or key exchange in common",
    };
    return {
      kind: "TLS handshake failed",
      detail: `the ${peer} sent the alert ${what}${
        hints[what] && peer === "client" ? ` (${hints[what]})` : ""
      }`,
      hint: peer === "server" ? hints[what] : undefined,
    };
  }
  if (
    err instanceof Deno.errors.InvalidData ||
    /peer|handshake|tls/i.test(message)
  ) {
    return { kind: "TLS handshake failed", detail: message };
  }
  return undefined;
}

/**
 * One line for a failed handshake: `Kind: detail (hint)`.
 *
 * @param failure From {@linkcode describeTlsFailure}.
 * @returns The line.
 */
export function formatTlsFailure(failure: TlsFailure): string {
  return `${failure.kind}: ${failure.detail}${
    failure.hint ? ` (${failure.hint})` : ""
  }`;
}
