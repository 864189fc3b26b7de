"""PNG plots (matplotlib, Agg backend) from the benchmarks' JSON results.

    .venv/bin/python benchmarks/plots.py --fanout fanout.json [--cost cost.json] [--cold-start cold.json] [--out docs/]

Without --fanout it runs the fan-out sweep first (benchmarks/fanout_sweep.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def plot_fanout(data: dict, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colors = {0.0: "tab:blue", 20.0: "tab:orange"}
    for latency in data["latencies"]:
        pts = sorted((p for p in data["points"] if p["latency_ms"] == latency), key=lambda p: p["members"])
        xs = [p["members"] for p in pts]
        color = colors.get(latency, None)
        ax.plot(xs, [p["fanout_seconds"] for p in pts], "o-", color=color, label=f"Parley fan-out, +{latency:g} ms per call")
        ax.plot(xs, [p["sequential_estimate_s"] for p in pts], "--", color=color, alpha=0.6,
                label=f"sequential posting, +{latency:g} ms (measured on {data['sequential_sample']}, scaled)")
    ax.axhline(29, color="red", linestyle=":", label="API Gateway integration timeout (29 s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("room size (connections)")
    ax.set_ylabel("time to last delivery (s)")
    ax.set_title("Fan-out of one chat_message (handler + moto + local @connections)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_cost(data: dict, path: Path) -> Path:
    rows = data["prices"]
    labels = [f"room {r['room_size']}\n{'Parley' if r['design'].startswith('Parley') else 'Scan'}" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    bottom = [0.0] * len(rows)
    for key, name in (("usd_apigw", "API Gateway"), ("usd_lambda", "Lambda"), ("usd_dynamodb", "DynamoDB")):
        values = [r[key] for r in rows]
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    for i, total in enumerate(bottom):
        ax.text(i, total, f"${total:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("$ per million chat messages")
    ax.set_title(f"Cost per chat message with {data['others']:,} other connections")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_cold_start(data: dict, path: Path) -> Path:
    names = list(data["functions"])
    ratios = [data["functions"][n]["ratio"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.barh(names, ratios, color=["tab:green" if r <= data["goal"] else "tab:red" for r in ratios])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axvline(data["goal"], color="red", linestyle=":", label=f"goal {data['goal']}x")
    ax.set_xlabel("fresh-process cold start / floor (import boto3 + same clients)")
    ax.set_title("Cold start against the floor, same run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_peers(data: dict, path: Path) -> Path:
    """One panel per timed row of benchmarks/peers_bench.py, a bar per system (log scale: they differ by 100x)."""
    order = [k for k in ("parley", "parley-quiet", "sls", "flask") if k in data["systems"]]
    names = {"parley": "parley dev", "parley-quiet": "parley dev\n--quiet", "sls": "serverless-\noffline", "flask": "Flask-\nSocketIO"}
    colors = {"parley": "tab:blue", "parley-quiet": "tab:cyan", "sls": "tab:orange", "flask": "tab:green"}
    panels = [
        ("round trip p50 / echo (x)", lambda d: d["rtt_ratio"]),
        ("handshakes per second", lambda d: d["open"]["per_s"]),
        ("last 50 joins: reply (ms)", lambda d: d["joins"]["last_ms"]),
        (f"message to {data['members']:,}: last delivery (ms)", lambda d: d["fanout"]["last_ms"]),
        ("tree RSS before the first client (MiB)", lambda d: d["rss_mib"]),
        ("Ctrl-C with sockets open (s)", lambda d: d["ctrl_c"]["seconds"] or 0.0),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(10, 6), dpi=110)
    for ax, (title, value) in zip(axes.flat, panels):
        values = [value(data["systems"][k]) for k in order]
        ax.bar([names[k] for k in order], values, color=[colors[k] for k in order])
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:,.3g}", ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"Same client, same machine, one system at a time ({data['members']:,} connections)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=Path)
    parser.add_argument("--cost", type=Path)
    parser.add_argument("--cold-start", type=Path)
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args()
    if args.fanout:
        fanout = json.loads(args.fanout.read_text())
    else:
        import fanout_sweep

        fanout = fanout_sweep.run([10, 100, 1000, 5000], [0.0, 20.0])
    print(plot_fanout(fanout, args.out / "fanout.png"))
    if args.cost:
        print(plot_cost(json.loads(args.cost.read_text()), args.out / "cost.png"))
    if args.cold_start:
        print(plot_cold_start(json.loads(args.cold_start.read_text()), args.out / "cold_start.png"))


if __name__ == "__main__":
    main()
