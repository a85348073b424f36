"""uvicorn's command line, with TCP_NODELAY on the connections of `--workers N`: the (d') row.

With `--workers N` uvicorn binds the listening socket itself, leaving its `proto` at 0;
accepted sockets inherit it, and asyncio turns TCP_NODELAY on only for `proto ==
IPPROTO_TCP`. Nagle's algorithm then holds the response body until the client ACKs the
headers, and the client delays that ACK ~40 ms: every keep-alive request after a connection's
first waits for it (Kludex/uvicorn#3149, open). Giving the listener its protocol is the fix.

    .venv/bin/python -m bench.predict.uvicorn_nodelay APP [uvicorn options]
"""

import socket

import uvicorn.config
from uvicorn.main import main

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self: uvicorn.config.Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family not in {socket.AF_INET, socket.AF_INET6}:
        return sock
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
