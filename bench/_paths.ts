// Copyright the upcase authors. MIT license.
/**
 * Where the benchmark reads and writes: the repository, bench/ and the
 * build folder bench/.build/, as absolute paths.
 *
 * @module
 */

function pathOf(url: URL): string {
  return decodeURIComponent(url.pathname);
}

/** bench/, with a trailing slash. */
export const BENCH_DIR: string = pathOf(new URL("./", import.meta.url));
/** The repository root, with a trailing slash: the servers' working folder. */
export const ROOT_DIR: string = pathOf(new URL("../", import.meta.url));
/** bench/.build/: the compiled programs, the results and the logs. */
export const BUILD_DIR: string = `${BENCH_DIR}.build/`;
/** bench/.build/logs/: one log per server run. */
export const LOG_DIR: string = `${BUILD_DIR}logs/`;
/** The compiled load generator (bench/loadgen.c). */
export const LOADGEN: string = `${BUILD_DIR}loadgen`;
/** The compiled C epoll reference (bench/peers/epoll_server.c). */
export const EPOLL_SERVER: string = `${BUILD_DIR}epoll_server`;
/** The compiled C TLS reference (bench/peers/epoll_tls_server.c). */
export const EPOLL_TLS_SERVER: string = `${BUILD_DIR}epoll_tls_server`;
/** The compiled C UDP reference (bench/peers/udp_server.c). */
export const UDP_SERVER: string = `${BUILD_DIR}udp_server`;
/** bench/.build/tls/: the certificates made for the TLS scenarios, by
 * tests/_certs.ts (the file names are its own). */
export const TLS_DIR: string = `${BUILD_DIR}tls/`;
/** The test CA's certificate (PEM), which the generator trusts. */
export const TLS_CA: string = `${TLS_DIR}ca.pem`;
/** The servers' certificate chain (PEM): the leaf for localhost, 127.0.0.1
 * and ::1, then the CA's. */
export const TLS_CERT: string = `${TLS_DIR}server-chain.pem`;
/** The servers' private key (PEM, PKCS #8). */
export const TLS_KEY: string = `${TLS_DIR}server.key`;
