"""Peers for the network tracer tests. Each prints one line when its traffic is done, then
sleeps until killed so that its sockets stay open while the daemon looks.

  net_peer.py server HOST PORT N M [close]   accept one client, read N bytes, send M,
                                             print "done"
  net_peer.py client HOST PORT N M [close]   connect, send N, read M, print "done <local port>"
  net_peer.py udp-server HOST [read]         bind, print "port <port>"; with `read`, read one
                                             datagram and print "got <bytes>"
  net_peer.py udp-client HOST PORT K         connect (UDP), send K bytes, print "done <local port>"

With `close`, the TCP connection is closed (after the peer's FIN) before "done" is printed.
"""
import socket
import sys
import time


def read_exactly(conn, n):
    got = 0
    while got < n:
        chunk = conn.recv(min(65536, n - got))
        if not chunk:
            raise SystemExit(f"peer closed after {got} of {n} bytes")
        got += len(chunk)


def closing():
    return sys.argv[6:7] == ["close"]


def read_end(conn):
    """Waits for the peer's FIN, then closes: both ends reach TCP_CLOSE."""
    if conn.recv(1):
        raise SystemExit("data after the exchange")
    conn.close()


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def main():
    mode, host = sys.argv[1], sys.argv[2]
    if mode == "server":
        port, n, m = map(int, sys.argv[3:6])
        listener = socket.socket(family(host), socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(8)
        print("listening", flush=True)
        conn, _ = listener.accept()
        read_exactly(conn, n)
        conn.sendall(b"m" * m)
        if closing():
            read_end(conn)
        print("done", flush=True)
    elif mode == "client":
        port, n, m = map(int, sys.argv[3:6])
        conn = socket.create_connection((host, port), timeout=10)
        conn.sendall(b"n" * n)
        read_exactly(conn, m)
        local_port = conn.getsockname()[1]
        if closing():
            conn.close()
        print(f"done {local_port}", flush=True)
    elif mode == "udp-server":
        sock = socket.socket(family(host), socket.SOCK_DGRAM)
        sock.bind((host, 0))
        print(f"port {sock.getsockname()[1]}", flush=True)
        if sys.argv[3:4] == ["read"]:
            print(f"got {len(sock.recv(65536))}", flush=True)
    elif mode == "udp-client":
        port, k = int(sys.argv[3]), int(sys.argv[4])
        sock = socket.socket(family(host), socket.SOCK_DGRAM)
        sock.connect((host, port))
        sock.send(b"u" * k)
        print(f"done {sock.getsockname()[1]}", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")
    while True:
        time.sleep(3600)


main()
