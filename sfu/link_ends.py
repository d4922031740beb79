"""A link's two ends: the connected datagram socket pair the pool makes for two workers
and hands to each over its link channel (``sfu/pipe.py`` says what flows on it).

Apart from ``pipe.py`` so that the pool, in the main process, does not import the SFU core
(and aiortc) to make them.
"""

from __future__ import annotations

import socket
from typing import Final

from .worker_protocol import LinkFrame

# Each side's send buffer: with a pair of mutually connected datagram sockets the
# kernel limits only the sender's unread bytes (max_dgram_qlen does not apply).
# 4 MiB (the usual wmem_max) holds ~3,600 packets of 1.2 KB: a second of a big class.
SEND_BUFFER: Final = 4 * 1024 * 1024


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """A link's two ends (non-blocking, big send buffers), for two workers."""
    ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for end in ends:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        end.setblocking(False)
    return ends


def send_link(channel: socket.socket, link_id: int, peer: int, end: socket.socket) -> None:
    """Hand one end of a link to a worker over its link channel (pool side)."""
    frame = LinkFrame(link_id=link_id, peer=peer).model_dump_json().encode()
    socket.send_fds(channel, [frame], [end.fileno()])
