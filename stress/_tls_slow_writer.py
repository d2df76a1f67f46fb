#!/usr/bin/env python3
# Copyright the upcase authors. MIT license.
"""A TLS client that sends and never reads, for stress/tls_slow_reader.ts.

    python3 _tls_slow_writer.py PORT CAFILE TARGET

Connects with TLS (trusting CAFILE, checking the name localhost), prints
"connected LOCAL_PORT", then writes up to TARGET bytes of random data without
reading a byte, printing "pushed N" every 100 ms. When its stdin ends it
closes the socket (the reply bytes it never read make that an RST), prints
"closed N" and exits.

Why not a Deno client: in Deno 2.9.6, close() on a Deno.TlsConn whose write
is blocked leaves the TCP socket ESTABLISHED in the client process (no FIN,
no RST), so the server could never see the close.
"""

import os
import random
import socket
import ssl
import sys
import threading
import time

BLOCK = 64 * 1024


def main():
    port, cafile, target = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    context = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname="localhost")
    print(f"connected {sock.getsockname()[1]}", flush=True)
    stop = threading.Event()

    def watch_stdin():
        while os.read(0, 4096):
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    block = random.Random(1).randbytes(BLOCK)
    pushed, reported = 0, 0.0
    sock.settimeout(0.1)
    while not stop.is_set():
        if pushed < target:
            try:
                pushed += sock.send(block[: min(BLOCK, target - pushed)])
            except (socket.timeout, ssl.SSLWantWriteError):
                pass  # the server holds us back
            except OSError as err:
                print(f"error {type(err).__name__}: {err}", flush=True)
                break
        else:
            time.sleep(0.1)
        now = time.monotonic()
        if now - reported >= 0.1:
            print(f"pushed {pushed}", flush=True)
            reported = now
    stop.wait()
    sock.close()
    print(f"closed {pushed}", flush=True)


if __name__ == "__main__":
    main()
