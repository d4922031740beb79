"""Plain-text summaries of the class/gallery reports, and their comparison with the floor."""

from __future__ import annotations

from typing import Any


def floor_ratio(report: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """What stock aiortc would spend per forwarded packet of this run, versus PulseRoom.

    An SFU made of stock aiortc senders and receivers pays the floor's receive cost once
    per incoming packet and its send cost once per copy: per forwarded packet that is
    ``send + receive / fan-out``, fan-out = forwarded / incoming packets.
    """
    ours = report.get("server_cpu_us_per_forwarded_packet")
    send = floor["send"]["us_per_packet"]
    receive = floor["receive"]["us_per_packet"]
    incoming = report.get("incoming_packets_per_s") or 0.0
    forwarded = report.get("forwarded_packets_per_s") or 0.0
    if not ours or not send or not receive or not incoming or not forwarded:
        return {"stock_us_per_forwarded_packet": None, "ratio": None}
    fan_out = forwarded / incoming
    stock = send + receive / fan_out
    return {
        "fan_out": round(fan_out, 2),
        "stock_us_per_forwarded_packet": round(stock, 1),
        "pulseroom_us_per_forwarded_packet": ours,
        "ratio": round(stock / ours, 2),
        "method": "stock = floor send us + floor receive us / fan-out; ratio = stock / PulseRoom",
    }


def _simulcast_lines(sim: dict[str, Any]) -> list[str]:
    """The ``simulcast`` part of a class report, in a few lines."""
    lines = [
        f"  layers sent/s     {sim['sent_packets_per_s_by_layer']}",
        f"  delivered/s       {sim['delivered_packets_per_s_by_layer']} "
        f"(copies per packet sent {sim['copies_per_sent_packet_by_layer']})",
        f"  switches, probes  {sim['layer_switches']} layer switches, {sim['probe_packets']} "
        f"probe packets ({sim['probe_kbit_per_s']} kbit/s)",
    ]
    for group, layers in sim["subscriptions_by_final_layer"].items():
        lines.append(f"  final layer       {group}: {layers}")
    return lines


def class_summary(report: dict[str, Any]) -> str:
    """A short plain-text version of a class/gallery report."""
    s = report["scenario"]
    r = report
    lat = r["latency_ms"]
    mem = r["server_memory_mib"]
    lines = [
        f"{s['name']} ({s['mode']}), {s['people']} people, {s['subscriptions']} subscriptions, "
        f"{r['window_s']:.1f}s window, pinning: {'yes' if s['pinning'] else 'no'}",
        f"  forwarded         {r['forwarded_packets_per_s']} packets/s "
        f"({r['forwarded_kbit_per_s']} kbit/s; delivered {r['delivered_packets_per_s']}, "
        f"expected {r['expected_forwarded_packets_per_s']})",
        f"  server CPU        {r['server_cpu_us_per_forwarded_packet']} us per forwarded packet, "
        f"{r.get('server_cpu_us_per_received_packet')} us per received packet "
        f"({r['server_cpu_percent']}% of a core)",
        f"  server memory     RSS {mem['rss_mib']} MiB, PSS {mem['pss_mib']} MiB "
        f"({mem['processes']} processes)",
        f"  loss              {r['loss_percent']}% {r['loss_percent_by_kind']} "
        f"{r['loss_percent_by_direction']}",
        f"  latency (video)   p50 {lat['p50']} ms, p99 {lat['p99']} ms ({lat['samples']} packets)",
        f"  generators' CPU   {r['generator_cpu_percent']}% of a core "
        f"({r['generator_cpu_us_per_packet']} us per packet sent or received; cheaper than "
        f"the server: {r['generators_cheaper_than_server']})",
        f"  other processes   {r['machine']['others_cpu_percent_approx']}% of a core; "
        f"UDP buffer drops {r['machine']['udp_receive_buffer_drops']}",
    ]
    for i, w in enumerate(r.get("server_workers", [])):
        lines.append(
            f"  SFU worker {i}      {w['participants']} participants, {w['cpu_percent']}% of a "
            f"core, {w['forwarded_packets_per_s']} forwarded/s ({w['us_per_forwarded_packet']} "
            f"us each), {w['piped_packets_per_s']} piped/s, {w['pipe_dropped_packets']} dropped"
        )
    if r.get("simulcast"):
        lines += _simulcast_lines(r["simulcast"])
    if r.get("goals") is not None:
        lines.append(f"  goals             {r['goals']}")
    if "floor_ratio" in r:
        f = r["floor_ratio"]
        lines.append(
            f"  stock aiortc      {f.get('stock_us_per_forwarded_packet')} us per forwarded "
            f"packet, {f.get('ratio')}x PulseRoom"
        )
    return "\n".join(lines)
