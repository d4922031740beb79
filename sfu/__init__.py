"""PulseRoom's selective forwarding unit: encoded RTP in, encoded RTP out.

The core imports nothing of signaling; ``SfuServer`` is its entry point.
"""
