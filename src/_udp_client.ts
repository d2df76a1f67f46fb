// Copyright the upcase authors. MIT license.
// The client over UDP (`--udp`): one datagram per message (or per --size
// bytes of stdin, or per line with -i), each waited for up to --timeout and
// sent again up to --retries times: UDP has no EOF and no retransmission of
// its own. Internal.

import { toUpper } from "./transform.ts";
import { CliError, EXIT, joinHostPort, printWarning } from "./_cli.ts";
import { type ClientCliOptions } from "./_client_args.ts";
import { writeAll } from "./_io.ts";
import { stdinChunks, stdinLines } from "./_stdin.ts";
import { UDP_RECEIVE_BUFFER_BYTES } from "./serve_udp.ts";
import { Receiver, udpAddresses } from "./_udp_socket.ts";

/** The largest UDP payload over IPv4: a longer -i line goes in pieces. */
const MAX_UDP_IPV4_SIZE = 65_507;

/** One datagram to send, and how to name it in an error. */
interface Datagram {
  bytes: Uint8Array;
  /** "datagram 3 (bytes 2945 to 4416)", or "the datagram" for the only one. */
  label: string;
}

/** A UDP exchange's socket and the server's address. */
class UdpExchange {
  #socket: Deno.DatagramConn;
  #receiver: Receiver;
  #server: Deno.NetAddr;
  #options: ClientCliOptions;
  /** The replies expected to the last datagrams: late ones are skipped. */
  #earlier: Uint8Array[] = [];

  constructor(options: ClientCliOptions) {
    this.#options = options;
    const { send, bind } = udpAddresses(options.hostname);
    this.#server = {
      transport: "udp",
      hostname: send,
      port: options.port,
    };
    try {
      this.#socket = Deno.listenDatagram({
        transport: "udp",
        hostname: bind,
        port: 0,
      });
    } catch (err: unknown) {
      if (err instanceof Deno.errors.NotCapable) {
        throw new CliError(
          `Permission denied: a UDP client sends from a socket of its own on ${bind} (a port the kernel picks), and Deno checks that port too: grant --allow-net=${
            bind === send ? send : `${send},${bind}`
          } (any port), not only ${joinHostPort(send, options.port)}`,
          EXIT.PERMISSION,
        );
      }
      throw err;
    }
    this.#receiver = new Receiver(this.#socket, UDP_RECEIVE_BUFFER_BYTES);
  }

  /**
   * Sends one datagram and waits for its reply, sending it again after each
   * timeout, up to --retries times.
   *
   * @throws {CliError} When no reply came (exit 6).
   */
  async exchange(datagram: Datagram): Promise<Uint8Array> {
    const { timeout, retries } = this.#options;
    const expected = toUpper(datagram.bytes);
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) {
        this.#trace(
          `no reply within ${timeout / 1000} s: sending again (try ${
            attempt + 1
          } of ${retries + 1})`,
        );
      }
      await this.#send(datagram.bytes);
      const reply = await this.#receive(performance.now() + timeout, expected);
      if (reply !== undefined) {
        this.#earlier.push(expected);
        if (this.#earlier.length > EARLIER_KEPT) this.#earlier.shift();
        if (!isPrefix(reply, expected) && !this.#options.quiet) {
          printWarning(
            `The reply to ${datagram.label} is not its bytes upper-cased: is the server upcase?`,
          );
        }
        return reply;
      }
    }
    const where = joinHostPort(this.#server.hostname, this.#server.port);
    throw new CliError(
      `No reply: ${datagram.label} to ${where} got no answer in ${
        retries + 1
      } ${retries === 0 ? "try" : "tries"}, ${
        timeout / 1000
      } s each (over UDP a lost datagram, a lost reply and no server at all look the same)`,
      EXIT.NO_REPLY,
    );
  }

  close(): void {
    this.#receiver.close();
  }

  async #send(bytes: Uint8Array): Promise<void> {
    try {
      await this.#socket.send(bytes, this.#server);
    } catch (err: unknown) {
      if (err instanceof Deno.errors.NotCapable) {
        throw new CliError(
          `Permission denied: sending to ${
            joinHostPort(this.#server.hostname, this.#server.port)
          } needs --allow-net=${this.#server.hostname}`,
          EXIT.PERMISSION,
        );
      }
      if (err instanceof Error && /too long/i.test(err.message)) {
        throw new CliError(
          `Message too long: ${bytes.length} bytes do not fit in one datagram (at most 65,507 over IPv4, 65,527 over IPv6); send it with - to cut stdin into datagrams of --size bytes`,
          EXIT.USAGE,
        );
      }
      throw err;
    }
    this.#trace(
      `sendto(): ${bytes.length} bytes to ${
        joinHostPort(this.#server.hostname, this.#server.port)
      }, one datagram (no connection, no handshake)`,
    );
  }

  /** The next reply from the server's port before `deadline`, if any. */
  async #receive(
    deadline: number,
    expected: Uint8Array,
  ): Promise<Uint8Array | undefined> {
    while (true) {
      const left = deadline - performance.now();
      if (left <= 0) return undefined;
      const result = await this.#receiver.next(left);
      if (result === undefined) return undefined;
      const [data, from] = result;
      const peer = joinHostPort(from.hostname, from.port);
      if (from.port !== this.#server.port) {
        this.#trace(
          `recvfrom(): ${data.length} bytes from ${peer}: not the server's port ${this.#server.port}, ignored`,
        );
        continue;
      }
      if (
        !isPrefix(data, expected) &&
        this.#earlier.some((earlier) => isPrefix(data, earlier))
      ) {
        this.#trace(
          `recvfrom(): ${data.length} bytes from ${peer}: a late reply to an earlier datagram, ignored`,
        );
        continue;
      }
      this.#trace(
        `recvfrom(): ${data.length} bytes from ${peer}${
          from.hostname !== this.#server.hostname
            ? ` (not ${this.#server.hostname}, where it was sent: a server bound to a wildcard address answers from the route's source address)`
            : ""
        }`,
      );
      return data.slice();
    }
  }

  #trace(text: string): void {
    if (this.#options.trace) console.error(`[udp] ${text}`);
  }
}

/** Earlier datagrams whose late replies are recognised and skipped. */
const EARLIER_KEPT = 64;

/**
 * Whether `reply` is `expected` or, from a `--once` server, its first
 * bytes (at least one, or both empty).
 */
function isPrefix(reply: Uint8Array, expected: Uint8Array): boolean {
  if (reply.length > expected.length) return false;
  if (reply.length === 0 && expected.length > 0) return false;
  for (let i = 0; i < reply.length; i++) {
    if (reply[i] !== expected[i]) return false;
  }
  return true;
}

/** Warns of a reply shorter than its datagram (a --once server). */
function warnIfShort(options: ClientCliOptions, got: number, sent: number) {
  if (got < sent && !options.quiet) {
    printWarning(
      `Reply truncated: got ${got} of ${sent} bytes (a server that reads at most ${got} bytes of a datagram, as server.ts --udp --once does with 80)`,
    );
  }
}

/**
 * `-`: stdin cut into datagrams of `size` bytes (the last may be shorter),
 * read as they go out: memory stays at one datagram and one read.
 */
async function* pieces(size: number): AsyncGenerator<Datagram> {
  const piece = new Uint8Array(size);
  let filled = 0;
  let n = 0;
  let offset = 0;
  const datagram = (length: number): Datagram => {
    n++;
    const bytes = piece.slice(0, length);
    offset += length;
    return {
      bytes,
      label: `datagram ${n} (bytes ${offset - length + 1} to ${offset})`,
    };
  };
  for await (const chunk of stdinChunks()) {
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(size - filled, chunk.length - at);
      piece.set(chunk.subarray(at, at + take), filled);
      filled += take;
      at += take;
      if (filled === size) {
        yield datagram(size);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield datagram(filled);
}

/** `-i`: one datagram per line of stdin, with its newline, bytes as they are. */
async function* lines(): AsyncGenerator<Datagram> {
  let n = 0;
  for await (const line of stdinLines(MAX_UDP_IPV4_SIZE)) {
    n++;
    yield { bytes: line, label: `datagram ${n} (line ${n})` };
  }
}

/**
 * Runs the client over UDP: the message, `-` or `-i`.
 *
 * @param options Validated options, with `udp` set.
 * @returns The exit code.
 */
export async function runUdpClient(options: ClientCliOptions): Promise<number> {
  const exchange = new UdpExchange(options);
  const encoder = new TextEncoder();
  try {
    if (options.interactive) {
      for await (const datagram of lines()) {
        const reply = await exchange.exchange(datagram);
        await writeAll(Deno.stdout, reply);
      }
    } else if (options.message === "-") {
      for await (const datagram of pieces(options.size)) {
        const reply = await exchange.exchange(datagram);
        await writeAll(Deno.stdout, reply);
        warnIfShort(options, reply.length, datagram.bytes.length);
      }
    } else {
      const bytes = encoder.encode(options.message);
      const reply = await exchange.exchange({
        bytes,
        label: "the datagram",
      });
      if (!options.quiet) {
        await writeAll(Deno.stdout, encoder.encode("Response from server:\n"));
      }
      await writeAll(Deno.stdout, reply);
      await writeAll(Deno.stdout, encoder.encode("\n"));
      warnIfShort(options, reply.length, bytes.length);
    }
  } catch (err: unknown) {
    // The reader of stdout stopped (`| head`): its choice, not a failure.
    if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
  } finally {
    exchange.close();
  }
  return EXIT.OK;
}
