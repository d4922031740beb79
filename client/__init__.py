"""The Python client of docs/protocol.md, written once for every Python client.

The bot (``pulseroom.bot``), the heart-rate link (``pulseroom.hr_link``) and the
benchmarks' load generators (``bench``) join classes through it:

- ``client.protocol``: links and tokens, event payloads, acknowledgements and the
  error they raise; no I/O, so the benchmarks' light Socket.IO client uses it too;
- ``client.joining``: connect and ``join`` on the node that holds the class (following
  ``moved`` answers), what a rejoin needs, and leaving;
- ``client.connections``: the peer connections' ICE set-up from the join ack and the
  ``publish`` offer/answer;
- ``client.subscriber``: the subscribe connection, answering the SFU's offers.

A leaf package: it imports nothing of PulseRoom's own (the server's packages, or the
``pulseroom`` composition root), only python-socketio and aiortc. This file imports
nothing, so ``client.protocol`` loads alone (the light generators use only that).
"""
