#!/usr/bin/env python3
# Copyright the upcase authors. MIT license.
"""TLS clients that reset the connection (RST, not FIN) at chosen points.

Used by stress/tls_resets.ts. A Deno client cannot reset: Deno has no
SO_LINGER, and its close() sends FIN. Here every client ends with SO_LINGER
{on, 0} and close(), so the kernel sends RST and drops what is unsent.

    python3 _tls_reset_clients.py PORT CAFILE SEED CLIENTS CONCURRENCY POINTS SOURCE

Every client connects to 127.0.0.1:PORT from the address SOURCE (another
loopback address, so that the server's log tells them from other clients
that may get the same port number). POINTS is a comma-separated list to pick
from at random for each client:

  before-hello      connect, wait 20-100 ms, reset (no byte sent)
  mid-hello         send 1 to 200 bytes of a real ClientHello, reset
  after-hello       send the whole ClientHello, read part of the server's
                    reply (ServerHello...), reset before Finished
  mid-exchange      handshake, one round trip checked, send more, read part
                    of its reply, reset
  mid-write         handshake, write up to 8 MiB without reading, reset

Prints one JSON object a line per client: index, point, the client's local
port, when it connected ("at", monotonic seconds: a port freed by a reset is
soon used again, so this orders the clients of one port), bytes of payload
sent, and "error" (null, or why the client itself failed: a wrong byte, a
timeout).
"""

import json
import random
import socket
import ssl
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 15.0
# Linux's value, for a socket module that does not name it.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
LINGER_ZERO = struct.pack("ii", 1, 0)


def upper(data):
    return data.translate(UPPER)


UPPER = bytes(
    (b - 0x20) if 0x61 <= b <= 0x7A else b for b in range(256)
)


def reset(sock):
    """Close with RST: SO_LINGER on with a zero timeout."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
    sock.close()


def client_hello(context):
    """The bytes of the first flight a real TLS client sends."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def recv_exactly(sock, n):
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise EOFError(f"connection closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def connect_from(source, port):
    """Connects to 127.0.0.1:port from address `source`.

    IP_BIND_ADDRESS_NO_PORT leaves the port to connect(), as without a
    source address: bind() alone picks one at random, which hands a port
    just freed by a reset to the next client far more often.
    """
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        raw.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        raw.settimeout(TIMEOUT)
        raw.bind((source, 0))
        raw.connect(("127.0.0.1", port))
    except BaseException:
        raw.close()
        raise
    return raw


def run_client(index, point, port, source, context, rng):
    raw = connect_from(source, port)
    started = time.monotonic()
    local_port = raw.getsockname()[1]
    sent = 0
    sock = raw
    try:
        if point == "before-hello":
            time.sleep(rng.uniform(0.02, 0.1))
        elif point == "mid-hello":
            hello = client_hello(context)
            part = hello[: rng.randint(1, min(200, len(hello) - 1))]
            raw.sendall(part)
            time.sleep(rng.uniform(0, 0.05))
        elif point == "after-hello":
            raw.sendall(client_hello(context))
            if not raw.recv(1 + rng.randrange(64)):
                raise EOFError("the server closed before its ServerHello")
        else:
            sock = context.wrap_socket(raw, server_hostname="localhost")
            if point == "mid-exchange":
                first = rng.randbytes(rng.randint(1, 64 * 1024))
                sock.sendall(first)
                sent += len(first)
                if recv_exactly(sock, len(first)) != upper(first):
                    raise ValueError("reply differs before the reset")
                second = rng.randbytes(rng.randint(2, 64 * 1024))
                sock.sendall(second)
                sent += len(second)
                if recv_exactly(sock, 1) != upper(second[:1]):
                    raise ValueError("reply differs before the reset")
            else:  # mid-write
                target = rng.randint(64 * 1024, 8 * 1024 * 1024)
                block = rng.randbytes(64 * 1024)
                sock.settimeout(0.5)
                try:
                    while sent < target:
                        sent += sock.send(block[: target - sent])
                except (socket.timeout, ssl.SSLWantWriteError):
                    pass  # blocked: the server holds back a non-reader
        return {"index": index, "point": point, "port": local_port,
                "at": started, "sent": sent, "error": None}
    except Exception as err:  # reported, the caller fails the scenario
        return {"index": index, "point": point, "port": local_port,
                "at": started, "sent": sent,
                "error": f"{type(err).__name__}: {err}"}
    finally:
        try:
            reset(sock)
        except OSError:
            pass


def main():
    port, cafile = int(sys.argv[1]), sys.argv[2]
    seed, clients, concurrency = map(int, sys.argv[3:6])
    points = sys.argv[6].split(",")
    source = sys.argv[7]
    context = ssl.create_default_context(cafile=cafile)
    lock = threading.Lock()

    def one(index):
        rng = random.Random(seed * 1_000_003 + index)
        result = run_client(
            index, rng.choice(points), port, source, context, rng
        )
        with lock:
            print(json.dumps(result), flush=True)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(clients)))


if __name__ == "__main__":
    main()
