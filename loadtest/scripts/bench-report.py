"""Puts the runs of loadtest/scripts/bench.sh into one table.

    python3 bench-report.py OUT_DIR FETCHES_TSV KEY=VALUE...

Reads OUT_DIR/raw/SCENARIO-PROXY.json (outpost-loadtest --json) and the
origin fetch counts (lines of SCENARIO, PROXY, FETCHES, tab-separated);
the KEY=VALUE pairs (machine, versions, settings) are printed above the
table and stored with it. Writes OUT_DIR/results.md and
OUT_DIR/results.json and prints the markdown on stdout.
"""

import datetime
import json
import os
import sys

PROXIES = ["outpost", "nginx", "varnish"]
SCENARIOS = {
    "hit-1k": "hits, 1 KiB",
    "hit-100k": "hits, 100 KiB",
    "zipf": "Zipf over 100k keys",
    "zipf-nginx": "Zipf, Outpost at nginx's memory",
    "zipf-varnish": "Zipf, Outpost at Varnish's memory",
    "stampede": "cold stampede, 1000 clients",
    "https": "HTTPS hits, 1 KiB",
}


def row(scenario, proxy, fetches, raw):
    """The figures of one run, from the load generator's JSON."""
    proxy_cpu = (raw["cpu"].get("proxy") or {})
    peak_kib = (proxy_cpu.get("memory") or {}).get("peak_rss_kib")
    responses = raw["responses"]
    # Requests without an answer, and answers other than 2xx.
    errors = raw["failures"] + sum(
        n for code, n in raw["status"].items() if not 200 <= int(code) < 300
    )
    return {
        "scenario": scenario,
        "proxy": proxy,
        "requests_per_s": raw["throughput_rps"],
        "p50_ms": raw["latency_us"]["p50"] / 1000.0,
        "p99_ms": raw["latency_us"]["p99"] / 1000.0,
        "responses": responses,
        "errors": errors,
        "origin_fetches": fetches,
        # From the origin's count, the same way for every proxy (their
        # Cache-Status headers do not agree on what a coalesced miss is).
        "hit_ratio": (1.0 - fetches / responses) if responses else None,
        "proxy_cpu_s": proxy_cpu.get("cpu", {}).get("total_s"),
        "proxy_cpu_s_per_10k": proxy_cpu.get("cpu_s_per_10k_requests"),
        "proxy_pids": proxy_cpu.get("pids"),
        "peak_rss_mib": peak_kib / 1024.0 if peak_kib is not None else None,
        "elapsed_s": raw["elapsed_s"],
    }


def fmt(value, spec):
    return "—" if value is None else format(value, spec)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def main():
    out, fetches_tsv, *pairs = sys.argv[1:]
    meta = dict(p.split("=", 1) for p in pairs)
    # SCENARIO, PROXY, cache setting MiB, memory the cache took KiB.
    memory = {}
    memory_tsv = meta.pop("memory_tsv", None)
    if memory_tsv and os.path.exists(memory_tsv):
        with open(memory_tsv) as f:
            for line in f:
                scenario, proxy, setting, took = line.rstrip("\n").split("\t")
                memory[(scenario, proxy)] = (int(setting), int(took) / 1024.0)
    meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    runs = []
    with open(fetches_tsv) as f:
        for line in f:
            scenario, proxy, fetches = line.rstrip("\n").split("\t")
            with open(os.path.join(out, "raw", f"{scenario}-{proxy}.json")) as raw:
                runs.append(row(scenario, proxy, int(fetches), json.load(raw)))
    by = {(r["scenario"], r["proxy"]): r for r in runs}
    scenarios = [s for s in SCENARIOS if any(r["scenario"] == s for r in runs)]

    md = [f"{meta['date']}; {meta.get('machine', '')}", ""]
    for key in ("outpost", "nginx", "varnish", "settings"):
        if key in meta:
            md.append(f"- {key}: {meta[key]}")
    md += [
        "",
        "| scenario | proxy | req/s | p50 ms | p99 ms | origin fetches | hit ratio "
        "| proxy CPU s / 10k req | peak RSS MiB | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        for p in PROXIES:
            r = by.get((s, p))
            if r is None:
                continue
            md.append(
                f"| {SCENARIOS[s]} | {p} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.2f} "
                f"| {r['p99_ms']:.2f} | {r['origin_fetches']:,} | {fmt(r['hit_ratio'], '.1%')} "
                f"| {fmt(r['proxy_cpu_s_per_10k'], '.3f')} | {fmt(r['peak_rss_mib'], '.1f')} "
                f"| {r['errors']:,} |"
            )

    # Outpost divided by each peer: above 1 is better for req/s, below 1
    # is better for the others.
    ratios = []
    md += [
        "",
        "Outpost ÷ peer (req/s: above 1 is better for Outpost; p99, CPU and "
        "memory: below 1 is better for Outpost):",
        "",
        "| scenario | peer | req/s | p99 | CPU / 10k req | peak RSS |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        ours = by.get((s, "outpost"))
        if ours is None:
            continue
        for p in PROXIES[1:]:
            theirs = by.get((s, p))
            if theirs is None:
                continue
            q = {
                "scenario": s,
                "peer": p,
                "requests_per_s": ratio(ours["requests_per_s"], theirs["requests_per_s"]),
                "p99": ratio(ours["p99_ms"], theirs["p99_ms"]),
                "cpu_per_10k": ratio(ours["proxy_cpu_s_per_10k"], theirs["proxy_cpu_s_per_10k"]),
                "peak_rss": ratio(ours["peak_rss_mib"], theirs["peak_rss_mib"]),
            }
            ratios.append(q)
            md.append(
                f"| {SCENARIOS[s]} | {p} | {fmt(q['requests_per_s'], '.2f')} "
                f"| {fmt(q['p99'], '.2f')} | {fmt(q['cpu_per_10k'], '.2f')} "
                f"| {fmt(q['peak_rss'], '.2f')} |"
            )

    # The Zipf mix at equal memory: what each cache was set to, what it
    # took, and the hit ratio it got from the same requests; Outpost again
    # at each peer's memory, and the difference in hit ratio.
    equal = []
    if memory:
        md += [
            "",
            "Zipf at equal memory (the same requests for each; memory taken = "
            "the peak, sampled every second, of PSS growth plus nginx's cache "
            "files on tmpfs):",
            "",
            "| run | cache setting MiB | memory taken MiB | hit ratio | origin fetches "
            "| Outpost − peer, hit ratio points |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        runs_in_order = [("zipf", p, p) for p in PROXIES] + [
            (f"zipf-{p}", "outpost", f"outpost, sized to {p}'s memory") for p in PROXIES[1:]
        ]
        for s, p, name in runs_in_order:
            r, m = by.get((s, p)), memory.get((s, p))
            if r is None or m is None:
                continue
            peer = by.get(("zipf", s[len("zipf-"):])) if s != "zipf" else None
            diff = None
            if peer is not None and r["hit_ratio"] is not None and peer["hit_ratio"] is not None:
                diff = 100.0 * (r["hit_ratio"] - peer["hit_ratio"])
            equal.append({"run": name, "setting_mib": m[0], "taken_mib": m[1],
                          "hit_ratio": r["hit_ratio"], "origin_fetches": r["origin_fetches"],
                          "points_over_peer": diff})
            md.append(
                f"| {name} | {m[0]} | {m[1]:.1f} | {fmt(r['hit_ratio'], '.2%')} "
                f"| {r['origin_fetches']:,} | {fmt(diff, '+.2f')} |"
            )

    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "runs": runs, "ratios": ratios, "equal_memory": equal}, f, indent=2)
        f.write("\n")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
