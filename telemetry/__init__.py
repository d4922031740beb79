"""Heart-rate telemetry: the readings' formats, the strap, and their persistence.

``hrm`` decodes the BLE Heart Rate Measurement (0x2A37) and body-sensor (0x2A38)
characteristics, ``strap`` reads a strap with bleak and ``simulate`` makes readings
without one; ``messages`` is the ``telemetry`` data-channel protocol (docs/protocol.md);
``zones`` and ``summary`` turn readings into zones, calories and training load;
``writer`` stores readings in batches without losing any (``rows``: the row and its
insert statements, ``spool``: the file rows wait in while the database is away) and
``history`` reads them back. This package imports no other PulseRoom package: the
data channel's handler and the fan-out to the instructor are in
``signaling/heart_rate.py``, the sender (``pulseroom hr-bridge``) in ``pulseroom/``.
"""
