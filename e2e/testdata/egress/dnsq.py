# Sends one DNS A query to the sandbox resolver (127.0.0.1:53) over UDP and
# prints "rcode/answers/first-address".
import socket
import struct
import sys

name = sys.argv[1]
q = struct.pack(">HHHHHH", 0x4E43, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(q, ("127.0.0.1", 53))
r = s.recv(1500)
rcode, an = r[3] & 15, struct.unpack(">H", r[6:8])[0]
print(f"{rcode}/{an}/{socket.inet_ntoa(r[-4:]) if an else '-'}")
