"""The simulcast part of a class run's report (``--simulcast``): what went on each layer.

Publishers report the packets they sent inside the window per layer (by rid);
subscribers the distinct packets they received stamped inside it, per layer (the
layer's index rides in abs-send-time's low bits, ``bench.tap``), and the layer each
subscription was on at the end; the server's counters give layer switches and padding
probes. Layers are named by index, as both publishers' sets are ordered: q, h, f.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

LAYER_NAMES = ("q", "h", "f", "x")


def _by_layer(counts: dict[str, int], seconds: float) -> dict[str, float]:
    return {rid: round(n / seconds, 1) for rid, n in sorted(counts.items())}


def _sent(results: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Packets sent inside the window per layer, and publishers whose layer was paused at
    the end (the SFU's ``layers`` event: nobody wanted it)."""
    sent: dict[str, int] = defaultdict(int)
    paused: dict[str, int] = defaultdict(int)
    for result in results:
        for s in result["sent"]:
            if s["kind"] == "video" and s.get("layer"):
                sent[s["layer"]] += int(s["packets"])
                paused[s["layer"]] += bool(s.get("paused_at_end"))
    return dict(sent), {rid: n for rid, n in paused.items() if n}


def _received(
    results: list[dict[str, Any]],
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Packets received per direction and layer; subscriptions per (direction, downlink)
    by the layer they were on at the end of the window."""
    received: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    final: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for result in results:
        for r in result["received"]:
            counts = r.get("layer_packets")
            if counts is None:
                continue
            for index, n in enumerate(counts):
                if n:
                    received[r["direction"]][LAYER_NAMES[index]] += int(n)
            line = "capped" if r.get("capped") else "uncapped"
            last = r.get("last_layer", -1)
            final[f"{r['direction']}/{line}"][LAYER_NAMES[last] if last >= 0 else "none"] += 1
    return (
        {d: dict(sorted(c.items())) for d, c in sorted(received.items())},
        {k: dict(sorted(c.items())) for k, c in sorted(final.items())},
    )


def simulcast_figures(
    results: list[dict[str, Any]], counters: dict[str, int], seconds: float, elapsed: float
) -> dict[str, Any]:
    """Per-layer packets sent and delivered, final layers, switches, probes, downlinks."""
    sent, paused = _sent(results)
    received, final = _received(results)
    delivered: dict[str, int] = defaultdict(int)
    for counts in received.values():
        for rid, n in counts.items():
            delivered[rid] += n
    downlinks = [d for r in results for d in r.get("downlinks", [])]
    capped = [d for d in downlinks if d["capped"]]
    probe_bytes = counters.get("probe_bytes", 0)
    return {
        "sent_packets_per_s_by_layer": _by_layer(sent, seconds),
        "delivered_packets_per_s_by_layer": _by_layer(delivered, seconds),
        "copies_per_sent_packet_by_layer": {
            rid: round(delivered.get(rid, 0) / n, 2) for rid, n in sorted(sent.items()) if n
        },
        "delivered_packets_by_direction_and_layer": received,
        "subscriptions_by_final_layer": final,
        "publishers_with_layer_paused_at_end": paused,
        "layers_events_received": sum(int(r.get("layers_events", 0)) for r in results),
        "layer_switches": counters.get("layer_switches"),
        "probe_packets": counters.get("probe_packets"),
        "probe_packets_per_s": round(counters.get("probe_packets", 0) / elapsed, 1),
        "probe_kbit_per_s": round(probe_bytes * 8 / elapsed / 1000, 1),
        "downlinks": {
            "capped": len(capped),
            "uncapped": len(downlinks) - len(capped),
            "rembs_sent": sum(d["rembs"] for d in downlinks),
            "capped_overuse_rembs": sum(d["overuse_rembs"] for d in capped),
            "visibility_sizes_sent": sum(d["sizes_sent"] for d in downlinks),
        },
    }
