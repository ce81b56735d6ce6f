#!/usr/bin/env python3
"""Relays one guest connection (stdin/stdout, as QEMU's guestfwd `cmd:` gives it) to a TCP port
on 127.0.0.1. The fetch-payload tests use it so the guest can reach the test's mirror and
nothing else: slirp with restrict=on drops every other packet.

    guestfwd=tcp:192.168.1.250:80-cmd:python3 tests/vm/relay.py PORT
"""
import os
import socket
import sys
import threading


def main():
    sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))

    def upstream():
        while True:
            data = os.read(0, 65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                return
            sock.sendall(data)

    threading.Thread(target=upstream, daemon=True).start()
    while True:
        data = sock.recv(65536)
        if not data:
            return
        view = memoryview(data)
        while view:
            n = os.write(1, view)
            view = view[n:]


if __name__ == "__main__":
    main()
