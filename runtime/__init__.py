"""How every PulseRoom process runs: its log output and its garbage collector's schedule.

A leaf package: it imports nothing of PulseRoom's other packages, so the server, the
SFU workers and the CLI set themselves up the same way without importing each other.
"""
