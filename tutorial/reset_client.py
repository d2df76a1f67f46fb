# A client that ends its connection with RST instead of FIN: it sends its
# message, reads the whole reply, then closes with SO_LINGER set to 0, which
# tells the kernel to drop the connection at once (RST) rather than close it
# in order (FIN). The server's read() then fails with ECONNRESET.
#
#   python3 tutorial/reset_client.py [MESSAGE]

import socket
import struct
import sys

PORT = 6666

message = (sys.argv[1] if len(sys.argv) > 1 else "hello").encode()
sock = socket.create_connection(("127.0.0.1", PORT))
sock.sendall(message)
reply = b""
while len(reply) < len(message):
    chunk = sock.recv(4096)
    if not chunk:
        break
    reply += chunk
print(reply.decode())
# l_onoff = 1, l_linger = 0: close() resets the connection
sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
sock.close()
