"""Benchmarks for PulseRoom: ``python -m bench.sfu`` measures the SFU's forwarding path."""
