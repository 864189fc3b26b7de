"""Run the benchmarks, draw the plots, and rewrite each measured section of docs/benchmarks.md.

Each benchmark runs in its own process and writes JSON. Each one's section of the document sits
between its own markers, `<!-- measured:NAME begin ... -->` and `<!-- measured:NAME end -->`,
and is regenerated from that JSON; a benchmark that was not run leaves its section as it was,
and everything outside the markers (the analysis, the before/after comparisons) is written by
hand and kept. A section that is not in the document yet is added at its end.

    .venv/bin/python benchmarks/run_all.py                # everything (make bench), about 30 minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py --only cost    # one benchmark; only its section changes
    .venv/bin/python benchmarks/run_all.py --render-only --only cost   # again from the JSON in --results
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN = "<!-- measured:{name} begin (written by benchmarks/run_all.py from its JSON; edits inside are overwritten) -->"
END = "<!-- measured:{name} end -->"
PY = ".venv/bin/python"
BUDGET_S = 45 * 60  # all of them; the peers benchmark alone starts `parley dev` nine times (a warm-up, four rounds with and without its log) and two peers

BENCHES = {  # name -> (script, extra args, timeout s)
    "cost": ("cost_bench.py", [], 300),
    "lambda_share": ("lambda_share_bench.py", [], 420),
    "cold_start": ("cold_start_bench.py", ["--repeat", "7"], 300),
    "memory": ("memory_bench.py", [], 300),
    "fanout": ("fanout_sweep.py", [], 600),
    "join_storm": ("join_storm_bench.py", [], 300),
    "gateway": ("gateway_bench.py", [], 900),  # four gateways, two with a 1,000-join storm: ~12 min on a busy 2-core machine
    "peers": ("peers_bench.py", [], 1500),
    "log_cost": ("log_cost_bench.py", [], 900),  # both `parley dev` modes side by side: ~4 min
}
MARKDOWN_MODULES = {"peers": "peers_bench", "log_cost": "log_cost_bench"}  # benchmarks that render their own section


def command(name: str) -> str:
    script, extra, _ = BENCHES[name]
    return " ".join([PY, f"benchmarks/{script}", *extra])


def run_benches(results: Path, only: list[str], meta: dict, meta_path: Path) -> None:
    """Run each benchmark in turn and record, as soon as it has finished, when and under what load it
    started: a later one that fails or runs out of time is reported and skipped, and leaves the
    others' figures and their run lines intact."""
    results.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for name in only:
        script, extra, timeout = BENCHES[name]
        left = BUDGET_S - (time.monotonic() - started)
        if left < 30:
            print(f"skipping {name}: the {BUDGET_S // 60}-minute budget is spent", file=sys.stderr)
            continue
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        t0 = time.monotonic()
        print(f"== {command(name)}", flush=True)
        try:
            subprocess.run([sys.executable, str(HERE / script), *extra, "--json", str(results / f"{name}.json")],
                           cwd=ROOT, check=True, timeout=min(timeout, left))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            print(f"{name} not measured ({error}); its section keeps its earlier figures", file=sys.stderr)
            continue
        meta[name] = {"date": datetime.date.today().isoformat(), "cpus": os.cpu_count(),
                      "python": platform.python_version(), "load": load, "seconds": time.monotonic() - t0}
        meta_path.write_text(json.dumps(meta))


def heading(title: str, bench: str) -> list[str]:
    """A measured section's title and the command that measured it, which every section starts with."""
    return [f"## {title}", "", "```bash", command(bench), "```", ""]


def _ok(met: bool) -> str:
    return "**met**" if met else "**not met**"


def run_line(meta: dict | None) -> str:
    """When, where and under what load one benchmark ran: the figures below it are that run's.

    `meta` is what run_all recorded, or what was recorded by hand for a run made outside it
    (`by`: the command(s), `load`: as read then)."""
    if not meta:
        return "Measured before run dates were recorded per benchmark."
    by = meta.get("by") or f"`{PY} benchmarks/run_all.py`"
    return (f"Measured {meta['date']} by {by} ({meta['seconds']:.0f} s) on {meta['cpus']} cores, Python {meta['python']}, "
            f"load average {meta['load']} at its start (other work shares these cores; where a figure is a ratio, its "
            "baseline was measured in the same run). Add `--json FILE` to the command to keep the figures.")


def section_fanout(d: dict) -> list[str]:
    lines = [
        *heading("Fan-out against room size", "fanout"),
        "Each point is a fresh process measuring what `benchmarks/fanout_bench.py` measures (the real `chat_message` handler, "
        "moto's DynamoDB server, the `@connections` stand-in adding 0 or 20 ms to every call, 64 calls in flight), with the "
        "room seeded by BatchWriteItem. "
        f"Sequential posting (one call in flight) is measured in the same run on {d['sequential_sample']} members and scaled "
        "linearly. *Fan-out* is the sender's time from first post to last delivery; *handler* adds moto's Query of the "
        "room (moto serialises about 1 ms per item, real DynamoDB answers in tens of ms) and the PutItem.",
        "",
        "| members | added latency | fan-out | whole handler | sequential (scaled) | speed-up | most calls in flight |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in d["points"]:
        lines.append(f"| {p['members']:,} | {p['latency_ms']:g} ms | {p['fanout_seconds']:.3f} s | {p['seconds']:.2f} s | "
                     f"{p['sequential_estimate_s']:.2f} s | {p['speedup']:.1f}x | {p['observed_in_flight'] if p['observed_in_flight'] > 0 else '–'} |")
    lines.append("")
    if "goal_speedup" in d:
        g = d["goal_speedup"]
        lines.append(f"- Goal: at 1,000 connections with 20 ms added, at least {g['goal']:g}x faster than sequential. "
                     f"Result: {g['value']:.1f}x, {_ok(g['met'])}.")
    if "goal_timeout" in d:
        g = d["goal_timeout"]
        lines.append(f"- Goal: at {g['members']:,} connections, fan-out well inside the {g['limit_s']:g} s integration "
                     f"timeout (taken as under a third of it). Result: fan-out at most {g['fanout_s']:.2f} s, {_ok(g['met'])}; "
                     f"the whole handler took up to {g['handler_s']:.1f} s here, most of it moto's Query.")
    zero = [p for p in d["points"] if p["latency_ms"] == 0]
    if zero:
        lines.append(f"- With no latency added, concurrency buys little on 2 busy cores "
                     f"({min(p['speedup'] for p in zero):.1f}-{max(p['speedup'] for p in zero):.1f}x of sequential): each call "
                     "costs CPU (signing, HTTP) under one GIL; the bound in flight pays off when each call waits on the network, "
                     "as on AWS.")
    lines += ["- Through the local gateway over real sockets, at 1,000 connections: see *Local gateway* below.", "",
              "![fan-out time against room size](fanout.png)", ""]
    return lines


def section_join_storm(d: dict) -> list[str]:
    base = d["baseline"]
    lines = [
        *heading("A 1,000-join storm into one room", "join_storm"),
        "The real `ChatService` on the in-memory store (the chat rules' own counts, free of I/O): users join one room, a "
        "given number of them within each presence interval, and the presence function runs once per interval, as the "
        "memberships table's stream batches it. Posts are counted by the frame each client received (`chat_history` is "
        "`join_room`'s route response, not a post); store calls are the DynamoDB requests each join makes on AWS. "
        f"The baseline, in the same run, announces every join to everyone: {base['posts']:,} posts.",
        "",
        "| joins per interval | posts | vs every join announced | answering the joiner, per join | `user_joined` (room below "
        "the threshold) | `presence_update` (batches) | store calls per join |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| every join announced | {base['posts']:,} | 1x | {base['posts_per_join_excluding_announcements']:.2f} | "
        f"{base['frames'].get('user_joined', 0):,} | – | {base['store_calls_per_join']:.1f} |",
    ]
    for run in d["runs"]:
        lines.append(f"| {run['per_interval']:,} | {run['posts']:,} | {base['posts'] / run['posts']:.0f}x fewer | "
                     f"{run['posts_per_join_excluding_announcements']:.2f} | {run['frames'].get('user_joined', 0):,} | "
                     f"{run['frames'].get('presence_update', 0):,} ({run['batches']}) | {run['store_calls_per_join']:.1f} |")
    worst = max(run["posts_per_join_excluding_announcements"] for run in d["runs"])
    lines += [
        "",
        f"- Goal: at most {d['goal']} PostToConnection calls per join plus the presence announcements. Result: "
        f"{worst:.2f} per join (the joiner's `participants_list`), {_ok(worst <= d['goal'])}. The announcements are the "
        f"`user_joined` of the first {run['threshold']} joins (the room is small until then, so each is told to everyone, "
        "as in a small room) and one `presence_update` per member per interval after that.",
        "- Through `parley dev` over real sockets (the same storm with DynamoDB Local and the stream poller): see "
        "*Local gateway* below.",
        "",
    ]
    return lines


def _db(gateway: dict) -> str:
    """Which DynamoDB a measured `parley dev` used (results from before the choice existed: moto)."""
    return {"local": "DynamoDB Local", "moto": "moto"}[gateway.get("dynamodb", "moto")]


def section_gateway(d: dict, fan: dict | None) -> list[str]:
    from gateway_bench import cpu_text
    first = d["gateways"][0]
    r, b, t = first["rtt"], first["ping_burst"], first["throughput"]
    n = d["connections"]
    lines = [
        *heading("Local gateway (`parley dev`) over real sockets", "gateway"),
        "Each run starts a fresh `parley dev` on the real `template.yaml` and handlers (one warm worker process per "
        "function, more on demand; DynamoDB Local, the default, or moto's DynamoDB, each in its own process: every "
        "measurement is made on both in the same run) and drives it from the benchmark's process with "
        "Python `websockets` clients, on the same 2 cores. The first gateway adds no latency to `@connections` calls, "
        "the second `--post-latency-ms 20`. Rooms are seeded straight into DynamoDB with the membership items the "
        "handlers write; senders join for real, and on the second gateway the connections are distinct users who all "
        "join one room at once (the join storm below).",
        "",
        "| `ping` round trip (one connection, after 20 warm-up pings) | n | p50 | p99 |",
        "| --- | ---: | ---: | ---: |",
        f"| bare `websockets` echo server, same run | {r['echo']['n']} | {r['echo']['p50_ms']:.2f} ms | {r['echo']['p99_ms']:.2f} ms |",
        f"| through the gateway (`ping` Lambda, route response) | {r['gateway']['n']} | {r['gateway']['p50_ms']:.2f} ms | "
        f"{r['gateway']['p99_ms']:.2f} ms |",
        f"| ratio | | **{r['ratio_p50']:.1f}x** | **{r['ratio_p99']:.1f}x** |",
        "",
        "| measurement | result |",
        "| --- | --- |",
    ]
    for g in d["gateways"]:
        lines.append(f"| `parley dev` start to its ready line ({_db(g)}, +{g['latency_ms']:g} ms) | {g['startup_s']:.1f} s |")
    for g in d["gateways"]:
        o = g["open"]
        lines.append(f"| connections opened per second: {o['n']:,} at once, {o['concurrency']} handshakes in flight, authorizer + "
                     f"`$connect` each (gateway +{g['latency_ms']:g} ms, {_db(g)}) | **{o['per_s']:.0f}/s** ({o['opened']:,} in {o['seconds']:.1f} s, "
                     f"{o['errors']} errors) |")
    lines += [
        f"| one `ping` on each of the {n:,} connections at once | {b['per_s']:,.0f} pongs/s ({b['pongs']:,} in {b['seconds']:.2f} s) |",
        f"| messages delivered per second with {n:,} connections open: {t['rooms']} rooms of {t['room_size']}, one sender per room "
        f"sending {t['messages_per_sender']} chat messages back to back, all senders at once | **{t['deliveries_per_s']:,.0f} deliveries/s** "
        f"({t['deliveries']:,} in {t['seconds']:.1f} s; {t['messages_per_s']:.1f} chat messages/s; send to delivery p50 "
        f"{t['latency_p50_ms']:.0f} ms, p99 {t['latency_p99_ms']:.0f} ms) |",
    ]
    if "joins" in first:
        j = first["joins"]
        lines.append(f"| `join_room` into a room growing to {j['room_growing_to']} | p50 {j['p50_ms']:.0f} ms, p99 {j['p99_ms']:.0f} ms |")
    for g in d["gateways"]:
        s = g["shutdown"]
        closed = s["close_codes"].get("1001", 0)
        within = f"within {s['all_closed_s']:.1f} s" if s["all_closed_s"] is not None else "(not all within 90 s)"
        done = (f"exit status {s['exit_code']} after **{s['seconds']:.1f} s**; {closed:,} sockets closed with 1001 {within}; "
                f"`$disconnect` ran for {s['disconnects']:,} of them") if s["seconds"] is not None else "did not exit within 90 s"
        lines.append(f"| Ctrl-C (SIGINT to the process group) with {s['open_sockets']:,} sockets open, in no room "
                     f"(gateway +{g['latency_ms']:g} ms, {_db(g)}) | {done} |")
    clean = all(g["shutdown"]["exit_code"] == 0 and g["shutdown"]["disconnects"] == g["shutdown"]["open_sockets"]
                == g["shutdown"]["close_codes"].get("1001", 0) for g in d["gateways"])
    ok = all(g["open"]["errors"] == 0 and g["open"]["opened"] == n for g in d["gateways"]) and b["pongs"] == n
    lines += [
        "",
        f"- Goal (issue 3): {n:,} concurrent connections opened and served with no error. Result: {_ok(ok)} "
        f"(handshake errors: {' and '.join(str(g['open']['errors']) for g in d['gateways'])}; {b['pongs']:,} of {n:,} pings answered).",
        f"- Ctrl-C stops cleanly (exit status 0, every open socket closed with 1001 and its `$disconnect` run): {_ok(clean)}. "
        "The time is those `$disconnect` invocations (a few ms of handler CPU each, mostly its DynamoDB calls); with a few sockets open "
        "`parley dev` exits in about half a second (measured while writing this benchmark). A `$disconnect` of a member "
        "of a room also reads the room, so members of large rooms take longer.",
        "- Every handshake runs two Lambda invocations (authorizer, `$connect`) before the upgrade; before 2026-11-29 06:28 UTC "
        "`$connect` also wrote a DynamoDB item (the removed connections table), so the run line's time says which. "
        "The rate is bound by the CPU that the client, the gateway, the functions and the database share; the gateway's "
        "own part is about 1.5 ms of CPU per handshake (profiled while writing this benchmark).",
        "",
        "Fan-out of one `chat_message` to a room of all the connections, through the gateway over real sockets: time from "
        "the sender's frame to the first and to the last of the listeners receiving `message_received` (median of "
        f"{max((len(g['fanout']['runs']) for g in d['gateways'] if g['fanout']), default=0)} messages), next to the handler-level figures measured in this run by "
        "`benchmarks/fanout_sweep.py` (the same handler against moto and the `@connections` stand-in, no sockets).",
        "",
        "| members | added latency | first delivery | last delivery | `chat_update` to the sender | handler-level fan-out | handler-level whole handler | last delivery / whole handler |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    points = {(p["members"], p["latency_ms"]): p for p in (fan or {}).get("points", [])}
    for g in (g for g in d["gateways"] if g["fanout"] is not None):
        f = g["fanout"]
        upd = statistics.median(x["update_ms"] for x in f["runs"])
        p = points.get((f["members"], f["latency_ms"]))
        hl = (f"{p['fanout_seconds']:.2f} s | {p['seconds']:.2f} s | {f['last_ms_median'] / 1000 / p['seconds']:.2f}x"
              if p else "not measured | not measured | –")
        room = ", the storm's room" if "storm" in g else ""
        lines.append(f"| {f['members']:,} | {f['latency_ms']:g} ms, {_db(g)}{room} | {f['first_ms_median'] / 1000:.2f} s | "
                     f"**{f['last_ms_median'] / 1000:.2f} s** | {upd / 1000:.2f} s | {hl} |")
    lines += [
        "",
        "- A room above `FanoutShardSize` (100) is delivered by FanoutFunction shards, which `parley dev` invokes through "
        "its local Lambda Invoke API, as on AWS: the `chat_message` handler stores the message, queues the shards and "
        "answers; each shard posts to its 100 members. Every handler, the gateway, the database and the 1,000 client "
        "sockets share the same 2 cores. CPU the stack used for the last fan-out of each gateway (all of its processes, "
        "DynamoDB Local's JVM included; the client's not): "
        + "; ".join(f"{_db(g)} +{g['latency_ms']:g} ms: {cpu_text(g['fanout']['runs'][-1].get('cpu_s', {}))}"
                    for g in d["gateways"] if g["fanout"] is not None) + ".",
        "",
        *section_storm(d),
    ]
    return lines


def section_storm(d: dict) -> list[str]:
    """The join storm of issues 11 and 12, per database, and every gateway target with met / not met."""
    from gateway_bench import cpu_text, storm_environments, targets  # the same verdicts the benchmark printed

    storms = [g for g in d["gateways"] if "storm" in g]
    if not storms:
        return []

    lines = [
        f"Join storm (issues 11 and 12): on the +{storms[0]['latency_ms']:g} ms gateway the {storms[0]['storm']['clients']:,} "
        "connections, each its own user, send `join_room` into one new room at once, as a new user's load test would. "
        "A join counts as answered when its client has both `participants_list` and `chat_history`; it fails on an "
        "`error` frame or on API Gateway's own answer (`Endpoint request timed out`, `Internal server error`). Then, once "
        "no frame has arrived for 2 s, one `chat_message` goes to the room.",
        "",
        "| database | answered | failed | all answered after | p50 | JoinRoom environments at peak | CPU the stack used meanwhile | then `chat_message`: last of the room |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for g in storms:
        st, f = g["storm"], g["fanout"]
        then = f"{f['last_ms_median'] / 1000:.2f} s" if f is not None else "not measured"
        failed = f"{st['errors']}" + (f" ({', '.join(f'{k}: {v}' for k, v in st['error_codes'].items())})" if st["error_codes"] else "")
        after = f"{st['all_joined_s']:.1f} s" if st["all_joined_s"] is not None else f"not within {st['timeout_s']:g} s"
        p50 = f"{st['p50_s']:.1f} s" if st["p50_s"] is not None else "–"
        lines.append(f"| {_db(g)} | {st['joined']:,} of {st['clients']:,} | {failed} | {after} | {p50} | {storm_environments(st)} | "
                     f"{cpu_text(st.get('cpu_s', {}))} | {then} |")
    lines += ["", "Targets measured here:", "", *(f"- {t.replace(': met', ': **met**').replace(': not met', ': **not met**')}"
                                                 for t in targets(d)), ""]
    return lines


def section_cost(d: dict) -> list[str]:
    lines = [
        *heading("Cost per request and per million chat messages", "cost"),
        f"The real `$connect`, `join_room`, `chat_message` and `$disconnect` handlers run against {d.get('dynamodb', 'moto')}, in "
        f"rooms of 10 and 100, first with no other connections, then with {d['others']:,} other connections in "
        f"{d['others'] // 100} other rooms of 100. PostToConnection calls are counted by the `@connections` stand-in; "
        "inbound frames and route-response replies (the `body` a handler returns) are counted per request, since API "
        "Gateway bills both as messages.",
        "",
        "**How the DynamoDB units are measured.** Every botocore call is recorded (a wrapper around "
        "`BaseClient._make_api_call`, in `benchmarks/common.py`) and units are computed from the sizes of the items "
        "each call wrote or read, by DynamoDB's rules: a write is 1 WRU per started KB of the larger of the old and new "
        "item, plus 1 per global-secondary-index entry written (the `ByConnection` index); a Query, Scan or GetItem is "
        "0.5 RRU per started 4 KB of data read (eventually consistent), 1 when strongly consistent. A 100-character "
        "message is used; join_room finds 50 messages of history. PynamoDB also asks for `ReturnConsumedCapacity: TOTAL` "
        "on every call; the database's answer is the next column. DynamoDB Local computes it from item sizes as DynamoDB "
        "does, and one figure covers reads and writes (TOTAL), so it equals RRU + WRU when the hand computation is right; "
        "moto answers constants (1.0 per write call, 0.5 per read call, whatever the size).",
        "",
        f"| request | room | RRU | WRU | {d.get('dynamodb', 'moto')}'s ConsumedCapacity | PostToConnection | frames in + replies | DynamoDB calls |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    grows = []
    for n in map(str, d["room_sizes"]):
        alone, crowd = d["without_others"][n]["ops"], d["with_others"][n]["ops"]
        for op, r in crowd.items():
            a = alone[op]
            same = all(abs(a[k] - r[k]) < 1e-9 for k in ("rru", "wru", "posts", "replies", "inbound"))
            if not same:
                grows.append(f"{op} in room {n}")
            calls = ", ".join(f"{k} {v:g}" for k, v in sorted(r["ops"].items()))
            lines.append(f"| `{op}` | {n} | {r['rru']:g} | {r['wru']:g} | {r['reported_units']:g} | {r['posts']:g} | "
                         f"{r['inbound'] + r['replies']:g} | {calls} |")
    lines += [
        "",
        f"- Goal: the figures do not grow with the {d['others']:,} other connections. Result: "
        + (f"{_ok(True)}: every figure above is identical with 0 and with {d['others']:,} other connections (both runs in this benchmark)."
           if not grows else f"{_ok(False)}: {', '.join(grows)} changed."),
        "- `chat_message` to a room of N costs N PostToConnection calls (the sender gets its own `message_received` too) "
        "plus the inbound frame and the `chat_update` reply: N + 2 API Gateway messages.",
        "",
        f"A Scan of the connections table, as the best-known AWS sample does for every message, measured on a table of "
        "the sample's connection items (Parley keeps none): "
        f"{d['scan_without_others']['items']:,} items read {d['scan_without_others']['rru']:g} RRU without the other "
        f"connections, {d['scan']['items']:,} items in {d['scan']['pages']} page(s) read **{d['scan']['rru']:g} RRU** with them "
        "(and it keeps growing with every connection in the service).",
        "",
        "$ per million chat messages, with the other connections present (prices from AWS_WEBSOCKET_REFERENCE.md: API Gateway "
        "$1.00/M messages; Lambda $0.20/M requests + arm64 $0.0000133334/GB-s; DynamoDB on demand $0.625/M WRU, "
        "$0.125/M RRU). " + _lambda_time(d["lambda"]) + " The Scan design is Parley with its Query replaced by the "
        "Scan: same writes, same posts, and (generously) the same Lambda time. The *floor* is what API Gateway alone "
        "bills for the messages PROTOCOL.md requires for one `chat_message` in a room of N: the inbound frame, "
        "`message_received` to each of the N connections (the sender's own included) and the `chat_update` reply: "
        "N + 2 messages at $1.00/M.",
        "",
        "| room | design | API GW messages | API Gateway | Lambda (time) | DynamoDB (RRU + WRU) | total | vs Parley | vs the floor |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    parley = {r["room_size"]: r["usd_total"] for r in d["prices"] if r["design"].startswith("Parley")}
    for r in d["prices"]:
        lines.append(f"| {r['room_size']} | {r['design']} | {r['apigw_messages']:g} | ${r['usd_apigw']:.2f} | "
                     f"${r['usd_lambda']:.2f} ({r['lambda_seconds'] * 1000:.0f} ms at {r['memory_mb']} MB) | ${r['usd_dynamodb']:.2f} "
                     f"({r['rru']:g} + {r['wru']:g}) | **${r['usd_total']:.2f}** | {r['usd_total'] / parley[r['room_size']]:.2f}x | "
                     f"{r['floor_ratio']:.3f}x |")
    g = d["goal"]
    ours = next(r for r in d["prices"] if r["room_size"] == g["room_size"] and r["design"].startswith("Parley"))
    over = g["total_usd"] - g["floor_usd"]
    lines += [
        "",
        f"- Goal (issue 12): $ per million messages in a room of {g['room_size']} within {g['goal']}x of the API Gateway floor "
        f"({g['floor_messages']} messages, ${g['floor_usd']:.2f}/M). Result: **{g['ratio']:.3f}x** (${g['total_usd']:.2f}), "
        f"{_ok(g['met'])}. Above the floor: DynamoDB ${ours['usd_dynamodb']:.2f} ({ours['rru']:g} RRU + {ours['wru']:g} WRU: "
        f"{', '.join(f'{k} {v:g}' for k, v in sorted(d['with_others'][str(g['room_size'])]['ops']['chat_message']['ops'].items()))}) "
        f"and Lambda ${ours['usd_lambda']:.2f}, ${over:.2f} in all against the ${g['floor_usd'] * (g['goal'] - 1):.2f} the goal allows.",
    ]
    tvs = d["lambda"].get("together_vs_sequential")
    if tvs:
        lines.append(
            f"- A chat message's membership GetItem and the rate counter's UpdateItem are sent together (one round trip of waiting, "
            f"not two). The same run timed the room of {g['room_size']} both ways, interleaved ({tvs['rounds']} rounds): "
            f"{tvs['together'] * 1000:.0f} ms together, {tvs['sequential'] * 1000:.0f} ms one after the other.")
    lines += ["", "![cost per million chat messages](cost.png)", ""]
    return lines


def _lambda_time(lam: dict) -> str:
    if not lam["at_share"]:
        return (f"The Lambda time is `chat_message` measured uncapped ({lam['why_not']}: no Lambda CPU share could be "
                "imposed), an underestimate of a small function's time.")
    return (f"The Lambda time is the `chat_message` handler's duration at the CPU share of its MemorySize in template.yaml "
            f"({lam['memory_mb']} MB: {lam['memory_mb'] / 1769:.3f} of a vCPU, a cgroup CPU quota on this process; the database "
            f"and the `@connections` stand-in uncapped, +{lam['post_latency_ms']:g} ms per post), median of the timed "
            "messages with the capacity recorder off, billed per started ms.")


def section_lambda_share(d: dict) -> list[str]:
    lines = [*heading("Large rooms and MemorySize at Lambda's CPU share", "lambda_share")]
    if "skipped" in d:
        return lines + [f"Not measured: {d['skipped']}; a Lambda CPU share cannot be imposed on this machine.", ""]
    s = d["sizing"]
    lines += [
        "Lambda gives a function MemorySize/1,769 of one vCPU. Each function runs in a child process moved into a Linux "
        f"cgroup-v1 CPU quota of MemorySize/1769 of every {d.get('cfs_period_ms', 100):g} ms CFS period (`benchmarks/common.py`, "
        "`CpuQuota`; 20 ms is Lambda's throttle interval as a third party measured it, see *Cost per request*; the "
        "largest CPU weight too, so other work on this machine cannot take its share). AWS's DynamoDB Local, the "
        f"`@connections` stand-in (+{d['post_latency_ms']:g} ms per post) and a Lambda Invoke stand-in (202 after "
        f"+{d['invoke_latency_ms']:g} ms; it records when it accepted each shard) run uncapped in other processes (in a "
        "group of their own with the largest CPU weight and no quota, `ServicesGroup`), as AWS's services do not use "
        "the function's CPU. Environments are warm: each child runs its handler once before timing. "
        "Durations are medians; $ per million at arm64 prices ($0.0000133334/GB-s, billed per started ms, + $0.20/M requests).",
        "",
        f"**MemorySize, measured.** `chat_message` (median of {d.get('repeat', 3)}), the fan-out shard (`run_fanout` of a `ShardJob`: claims "
        f"in DynamoDB, then the posts; slowest of {d['shard_samples']} samples, median in brackets).",
        "",
        f"| MemorySize | vCPU | `chat_message`, room of 10 | $/M messages | `chat_message` dispatching a room of 1,000 "
        f"({s['chat_dispatch'][0]['shards']} shards): duration / last shard accepted | $/M messages | one shard of "
        f"{d['shard_size']} | $/M messages to 1,000 (shards only) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    small = {r["memory_mb"]: r for r in s["chat_small"]}
    dispatch = {r["memory_mb"]: r for r in s["chat_dispatch"]}
    shard = {r["memory_mb"]: r for r in s["shard"] if r["shard_size"] == d["shard_size"]}
    for m in d["memory_sizes"]:
        a, b, c = small.get(m), dispatch.get(m), shard.get(m)
        chosen = [name for name, mb in (("chat_message", d["chat_message_mb"]), ("FanoutFunction", d["fanout_mb"])) if mb == m]
        label = f"**{m}** (chosen: {', '.join(chosen)})" if chosen else str(m)
        lines.append(
            f"| {label} | {m / 1769:.3f} | {a['seconds'] * 1000:.0f} ms | ${a['usd_per_m']:.2f} | "
            f"{b['seconds'] * 1000:.0f} / {b['last_accepted_s'] * 1000:.0f} ms | ${b['usd_per_m']:.2f} | "
            f"{c['seconds'] * 1000:.0f} ms ({c['median_s'] * 1000:.0f}) | ${c['usd_per_m']:.2f} |")
    lines += ["", f"Shard size at FanoutFunction's {d['fanout_mb']} MB:", "",
              "| shard size | slowest shard (median) | shards for 1,000 / 10,000 | $/M messages to 1,000 (shards only) |",
              "| ---: | ---: | ---: | ---: |"]
    for r in s["shard"]:
        if r["memory_mb"] == d["fanout_mb"]:
            mark = " (chosen)" if r["shard_size"] == d["shard_size"] else ""
            lines.append(f"| {r['shard_size']}{mark} | {r['seconds'] * 1000:.0f} ms ({r['median_s'] * 1000:.0f}) | "
                         f"{-(-1000 // r['shard_size'])} / {-(-10_000 // r['shard_size'])} | ${r['usd_per_m']:.2f} |")
    lines += [
        "",
        f"**Last post in a large room, composed.** `chat_message` at {d['chat_message_mb']} MB, the continuation and shards of "
        f"{d['shard_size']} at {d['fanout_mb']} MB. `chat_message` reads at most one page of the room "
        f"(`FanoutPageSize`, {d.get('page_size', 1000):,}) and dispatches that page's shards; a larger room's rest goes to one "
        "continuation (an async invocation of FanoutFunction), which reads the remaining pages and dispatches their shards. "
        f"This machine has 2 cores; on Lambda a room of 10,000 is {-(-10_000 // d['shard_size'])} shards "
        "running at once in environments of their own, each with its own share of a CPU, which cannot all run here at "
        "their share at the same time. So the time is composed from parts each measured at its own share: "
        "*last post = the later of (the handler's page: its last shard accepted by the Invoke stand-in, measured from the "
        "handler's start with the real handler and `LambdaShardDispatcher` at `chat_message`'s share, + invoke start + "
        "the slowest shard) and (the rest: the continuation accepted, from the handler's start + invoke start + its last "
        "shard accepted, from its own start, measured with the real fan-out function running the event the handler handed "
        "out at FanoutFunction's share + invoke start + the slowest shard)*. Every shard of a room is the same work (a slice of "
        f"{d['shard_size']} connections), so shards are sampled: the slowest of {d['shard_samples']} stands for each. "
        f"*Invoke start* ({d['invoke_start_ms']:g} ms) is the time from Lambda accepting an async event to a warm "
        "environment starting on it. AWS does not publish it, so it is stated, not measured: an event goes through "
        "Lambda's internal queue and a poller before the invoke, which observers put at tens of ms; 100 ms is taken "
        "to be on the safe side. Cold environments would add the fan-out function's cold start (see *Cold start*).",
        "",
        "| members | shards (handler's + continuation's) | handler duration (reading the room) | handler's last shard accepted "
        "| continuation accepted | continuation duration (reading the room) | its last shard accepted | invoke start (each) "
        "| slowest shard | **last post** | goal |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in d["end_to_end"]:
        goal = (f"within {r['target_s']:g} s: {_ok(r['met'])}" if r["target_s"] is not None else "report it")
        handed_on = r.get("continuation_s") is not None
        continued = (f"{r['continuation_accepted_s']:.2f} s | {r['continuation_s']:.2f} s ({r['continuation_read_s']:.2f} s) | "
                     f"{r['continuation_last_accepted_s']:.2f} s" if handed_on else "– | – | –")
        handler_shards = r.get("handler_shards", r["shards"])
        lines.append(f"| {r['members']:,} | {r['shards']} ({handler_shards} + {r['shards'] - handler_shards}) | "
                     f"{r['handler_s']:.2f} s ({r['read_room_s']:.2f} s) | {r['last_accepted_s']:.2f} s | {continued} | "
                     f"{d['invoke_start_ms'] / 1000:.2f} s | {r['shard_s']:.2f} s | **{r['last_post_s']:.2f} s** | {goal} |")
    lines += [
        "",
        f"Rooms above 10,000 are timed with one message, smaller ones with {d.get('repeat', 3)} (the median is shown). "
        "The handler's part no longer grows with the room: it reads one page (in brackets) and hands out that page's "
        "shards and the continuation (32 Invokes in flight). The continuation's part does grow: it reads the rest a page "
        "at a time (one Query and one page-plan PutItem per page; in brackets the reading, most of it DynamoDB Local paging "
        "a large partition) and dispatches each page's shards as it goes, so the first of them start long before it ends.",
        "",
    ]
    for r in d["end_to_end"]:
        if r["target_s"] is None:
            cont = (f"; the continuation read and dispatched the rest in {r['continuation_s']:.1f} s of FanoutFunction's "
                    "120 s Timeout" if r.get("continuation_s") is not None else "")
            lines.append(f"- {r['members']:,} members: the handler took {r['handler_s']:.2f} s of `chat_message`'s 28 s Timeout{cont}. "
                         f"Its {r['shards']:,} shards would run at once: Lambda's default concurrency is 1,000 per account "
                         "and Region, shared by every function, so a room this size needs a raised quota (or a larger "
                         "`FanoutShardSize`), else Lambda queues the shards it cannot run yet and the last post comes later.")
    lines.append("")
    return lines


def section_cold_start(d: dict) -> list[str]:
    met = all(r["met"] for r in d["functions"].values())
    lines = [
        *heading("Cold start", "cold_start"),
        "For each function, a fresh `python -c` process with the function folder and `layers/common/python` on `PYTHONPATH` (where Lambda has `/var/task` and `/opt/python`), "
        "the template's environment for that function with its default parameters (TracingMode=PassThrough: no Tracer, "
        "no X-Ray SDK; Active adds about 100 ms) and the variables Lambda sets imports `app` and creates the clients its first invocation creates, through the project's own "
        "code (PynamoDB's DynamoDB client and the `@connections` sender; the Powertools SSM provider for the authorizer). "
        "The floor is a fresh process doing `import boto3` and creating the same clients with boto3 "
        "(`dynamodb` + `apigatewaymanagementapi`, `dynamodb` for `$connect`, `ssm` for the authorizer). "
        f"Median of {d['repeat']} runs, interleaved in shuffled rounds after a discarded warm-up round. *Process* is the "
        "whole process's wall time (interpreter start included); *import + clients* is timed inside the process.",
        "",
        "| function | clients | process | floor | ratio | import + clients | floor | ratio | goal ≤ 1.25x (process) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in d["functions"].items():
        lines.append(f"| `{name}` | {r['clients']} | {r['wall_s'] * 1000:.0f} ms | {r['floor_wall_s'] * 1000:.0f} ms | "
                     f"{r['ratio']:.2f}x | {r['import_s'] * 1000:.0f} ms | {r['floor_import_s'] * 1000:.0f} ms | "
                     f"{r['import_ratio']:.2f}x | {_ok(r['met'])} |")
    floor = dict(d["floor_importtime_ms"])
    lines += [
        "",
        f"- Goal: every function within {d['goal']}x of the floor. Result: {_ok(met)}"
        + ("." if met else f" ({sum(not r['met'] for r in d['functions'].values())} of {len(d['functions'])} functions over)."),
        "",
        "Every message function imports the same code (`parley.aws.lambda_routes`); the spread of their ratios "
        f"({min(r['ratio'] for n, r in d['functions'].items() if r['clients'] == 'dynamodb+apigw'):.2f}-"
        f"{max(r['ratio'] for n, r in d['functions'].items() if r['clients'] == 'dynamodb+apigw'):.2f}x) is this machine's "
        "noise; their median is "
        f"{sorted(r['ratio'] for r in d['functions'].values() if r['clients'] == 'dynamodb+apigw')[len([1 for r in d['functions'].values() if r['clients'] == 'dynamodb+apigw']) // 2]:.2f}x. "
        "What is left above the floor is pydantic (the Powertools Parser models and the protocol models, about 50 ms with "
        "pydantic_core), `parley` itself (mostly building those pydantic models), Powertools and PynamoDB: all needed by "
        "the first invocation, so deferring them would only move the cost, not remove it.",
        "",
        f"Where the worst function (`{d['worst']}`) spends its import time, by top-level package "
        "(`python -X importtime`, self time summed, one run), next to the floor:",
        "",
        "| package | function | floor |",
        "| --- | ---: | ---: |",
    ]
    for package, ms in d["worst_importtime_ms"]:
        lines.append(f"| `{package}` | {ms:.1f} ms | {floor.get(package, 0):.1f} ms |")
    lines += ["", "![cold start against the floor](cold_start.png)", ""]
    return lines


def section_memory(d: dict) -> list[str]:
    lines = [
        *heading("Memory", "memory"),
        "Peak RSS (`resource.getrusage(...).ru_maxrss`) of a fresh child process that imports the function's `app` and "
        "runs its handler once against a seeded room (moto's DynamoDB server and the `@connections` stand-in, 0 ms added, "
        "64 calls in flight).",
        "",
        "| function | connections in the room | after import | peak | handler time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in d["runs"]:
        lines.append(f"| `{r['function']}` | {r['members']:,} | {r['import_peak_mb']:.1f} MB | {r['peak_mb']:.1f} MB | {r['seconds']:.2f} s |")
    lines += [
        "",
        f"- Highest peak {d['peak_mb']:.0f} MB against `MemorySize: {d['memory_size_mb']}`: {d['headroom']:.1f}x headroom. "
        f"Fan-out to 5,000 adds only about {max(r['peak_mb'] - r['import_peak_mb'] for r in d['runs']):.0f} MB over the import, "
        "so 256 MB fits every function; Lambda's CPU share grows with memory, so a larger size would buy speed, not room.",
        "",
    ]
    return lines


def render(results: Path, meta: dict, only: list[str]) -> dict[str, list[str]]:
    """The sections of the benchmarks in `only` whose JSON is in `results`, by benchmark name."""
    def load(name: str) -> dict | None:
        path = results / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    builders = {"fanout": section_fanout, "join_storm": section_join_storm, "cost": section_cost,
                "lambda_share": section_lambda_share, "cold_start": section_cold_start, "memory": section_memory,
                "gateway": lambda d: section_gateway(d, load("fanout"))}
    sections: dict[str, list[str]] = {}
    for name in only:
        data = load(name)
        if data is None:
            continue
        if name in MARKDOWN_MODULES:
            import importlib

            lines = importlib.import_module(MARKDOWN_MODULES[name]).markdown(data, command(name))
        else:
            lines = builders[name](data)
        after_command = lines.index("```", 3) + 1  # every section opens with its heading and command
        sections[name] = [*lines[:after_command], "", run_line(meta.get(name)), *lines[after_command:]]
    return sections


def write_doc(sections: dict[str, list[str]]) -> list[str]:
    """Replace each section between its markers (or add it at the end); returns the names added."""
    text, added = DOC.read_text(), []
    for name, lines in sections.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        block = begin + "\n\n" + "\n".join(lines).rstrip() + "\n\n" + end
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + block + rest.split(end, 1)[1]
        else:
            text, added = text.rstrip() + "\n\n" + block + "\n", [*added, name]
    DOC.write_text(text)
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("/tmp/parley-bench"))
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--render-only", action="store_true", help="rewrite the sections from the JSON in --results")
    args = parser.parse_args()
    meta_path = args.results / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not args.render_only:
        run_benches(args.results, args.only, meta, meta_path)
    import plots

    docs = ROOT / "docs"
    for name, fn, png in (("fanout", plots.plot_fanout, "fanout.png"), ("cost", plots.plot_cost, "cost.png"),
                          ("cold_start", plots.plot_cold_start, "cold_start.png"), ("peers", plots.plot_peers, "peers.png")):
        path = args.results / f"{name}.json"
        if name in args.only and path.exists():
            fn(json.loads(path.read_text()), docs / png)
    sections = render(args.results, meta, args.only)
    added = write_doc(sections)
    print(f"rewrote {', '.join(sections) or 'no'} section(s) of {DOC.relative_to(ROOT)}"
          + (f" (added at its end: {', '.join(added)})" if added else ""))


if __name__ == "__main__":
    main()
