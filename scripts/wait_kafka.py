"""Waits until a Kafka-protocol broker answers an ApiVersions request: a real request, not a sleep.

usage: wait_kafka.py HOST:PORT [SECONDS]
"""
import socket
import struct
import sys
import time


def api_versions_ok(host: str, port: int) -> bool:
    client_id = b"sluice-wait"
    # ApiVersions v0: api_key 18, version 0, correlation id 7, client id.
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        header = s.recv(4)
        if len(header) < 4:
            return False
        size = struct.unpack(">i", header)[0]
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                return False
            data += chunk
        correlation, error = struct.unpack(">ih", data[:6])
        return correlation == 7 and error == 0


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    deadline = time.monotonic() + float(sys.argv[2] if len(sys.argv) > 2 else 30)
    while time.monotonic() < deadline:
        try:
            if api_versions_ok(host, int(port)):
                return 0
        except OSError:
            pass
        time.sleep(0.05)
    print(f"no Kafka ApiVersions answer from {sys.argv[1]}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
