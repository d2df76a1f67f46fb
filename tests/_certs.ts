// Copyright the upcase authors. MIT license.
// Test certificates, made with `openssl` at test time: a CA, and leaves it
// signed (rustls rejects a self-signed certificate used directly as a
// server's, with CaUsedAsEndEntity). Shared by the tests, the reliability
// suite and the benchmark.

/** Paths of the PEM files {@linkcode makeTestCerts} wrote. */
export interface TestCerts {
  /** The folder that holds them all. */
  dir: string;
  /** The test CA's certificate: what `--ca` trusts. */
  ca: string;
  /** The CA's key, for signing more. */
  caKey: string;
  /** A server certificate for localhost, 127.0.0.1 and ::1, then the CA's. */
  cert: string;
  /** Its key. */
  key: string;
  /** A server certificate valid only for `other.test`. */
  otherNameCert: string;
  /** Its key. */
  otherNameKey: string;
  /** A server certificate for localhost that expired in 2020. */
  expiredCert: string;
  /** Its key. */
  expiredKey: string;
  /** A certificate from a CA nobody trusts, for localhost and 127.0.0.1. */
  untrustedCert: string;
  /** Its key. */
  untrustedKey: string;
  /** A client certificate signed by the CA (for mutual TLS). */
  clientCert: string;
  /** Its key. */
  clientKey: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`,
    );
  }
}

/** Makes a key and a CA-signed certificate named `name` in `dir`. */
async function leaf(
  dir: string,
  name: string,
  options: {
    ca: string;
    subject: string;
    san: string;
    usage: "serverAuth" | "clientAuth";
    /** Valid only in 2019. */
    expired?: boolean;
  },
): Promise<void> {
  await openssl(dir, [
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-subj",
    options.subject,
    "-out",
    `${name}.csr`,
  ]);
  await Deno.writeTextFile(
    `${dir}/${name}.ext`,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${options.usage}`,
      options.san ? `subjectAltName=${options.san}` : "",
    ].join("\n"),
  );
  if (options.expired) {
    // `openssl x509` of OpenSSL 3.0 cannot set past dates; `openssl ca` can.
    await Deno.writeTextFile(`${dir}/index.txt`, "");
    await Deno.writeTextFile(
      `${dir}/ca.cnf`,
      [
        "[ca]",
        "default_ca = test",
        "[test]",
        "database = index.txt",
        "new_certs_dir = .",
        "serial = ca.serial",
        "default_md = sha256",
        "policy = any",
        "unique_subject = no",
        "[any]",
        "commonName = supplied",
      ].join("\n") + "\n",
    );
    await Deno.writeTextFile(`${dir}/ca.serial`, "1000\n");
    await openssl(dir, [
      "ca",
      "-batch",
      "-config",
      "ca.cnf",
      "-cert",
      `${options.ca}.pem`,
      "-keyfile",
      `${options.ca}.key`,
      "-startdate",
      "20190101000000Z",
      "-enddate",
      "20200101000000Z",
      "-extfile",
      `${name}.ext`,
      "-in",
      `${name}.csr`,
      "-out",
      `${name}.pem`,
      "-notext",
    ]);
    return;
  }
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${options.ca}.pem`,
    "-CAkey",
    `${options.ca}.key`,
    "-CAcreateserial",
    "-days",
    "3650",
    "-extfile",
    `${name}.ext`,
    "-out",
    `${name}.pem`,
  ]);
}

async function ca(dir: string, name: string, subject: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-subj",
    subject,
    "-days",
    "3650",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-out",
    `${name}.pem`,
  ]);
}

/**
 * Makes a test CA and certificates signed by it in a new temporary folder
 * (or `dir`): remove it when done.
 *
 * @param dir Where to write them; a new temporary folder by default.
 * @returns The files' paths.
 */
export async function makeTestCerts(dir?: string): Promise<TestCerts> {
  dir ??= await Deno.makeTempDir({ prefix: "upcase-certs-" });
  await ca(dir, "ca", "/CN=upcase test CA");
  await ca(dir, "rogue-ca", "/CN=a CA nobody trusts");
  const local = "DNS:localhost,IP:127.0.0.1,IP:::1";
  const server = { ca: "ca", usage: "serverAuth" } as const;
  await leaf(dir, "server", {
    ...server,
    subject: "/CN=localhost",
    san: local,
  });
  await leaf(dir, "other", {
    ...server,
    subject: "/CN=other.test",
    san: "DNS:other.test",
  });
  await leaf(dir, "expired", {
    ...server,
    subject: "/CN=localhost",
    san: local,
    expired: true,
  });
  await leaf(dir, "untrusted", {
    ca: "rogue-ca",
    usage: "serverAuth",
    subject: "/CN=localhost",
    san: local,
  });
  await leaf(dir, "client", {
    ca: "ca",
    usage: "clientAuth",
    subject: "/CN=upcase test client",
    san: "",
  });
  // The server's file holds the chain: its certificate, then the CA's.
  const chain = await Deno.readTextFile(`${dir}/server.pem`) +
    await Deno.readTextFile(`${dir}/ca.pem`);
  await Deno.writeTextFile(`${dir}/server-chain.pem`, chain);
  return {
    dir,
    ca: `${dir}/ca.pem`,
    caKey: `${dir}/ca.key`,
    cert: `${dir}/server-chain.pem`,
    key: `${dir}/server.key`,
    otherNameCert: `${dir}/other.pem`,
    otherNameKey: `${dir}/other.key`,
    expiredCert: `${dir}/expired.pem`,
    expiredKey: `${dir}/expired.key`,
    untrustedCert: `${dir}/untrusted.pem`,
    untrustedKey: `${dir}/untrusted.key`,
    clientCert: `${dir}/client.pem`,
    clientKey: `${dir}/client.key`,
  };
}
