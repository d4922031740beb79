"""Heart-rate telemetry: BLE readings over a WebRTC data channel, fanned out and stored.

The parser, bridge, fan-out and TimescaleDB persistence arrive with issue 4.
"""
