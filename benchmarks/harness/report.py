"""The report: results/latest.md (tables, ratios, the aims checked) and results/latest.png (a chart)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from harness.common import log
from harness.targets import ALL_TARGETS, SCENARIO_TEXT, SCENARIOS, TARGET_TEXT

AROUTERS = ("arouter", "arouter-embedded", "arouter-exact")
# the aims from the performance issue
AIM_ADDED_P50_US = 250.0
AIM_ADDED_P99_US = 1000.0
AIM_PASSTHROUGH_US = 10.0
AIM_TRANSLATED_US = 30.0
AIM_IDLE_RSS_MB = 60.0
AIM_STREAMS = 10000


def fmt_us(us: float | None) -> str:
    if us is None:
        return "-"
    if abs(us) >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_rps(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 10 else f"{v:.1f}"


def fmt_x(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


def pct1(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def fmt_mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} MB"


def med(results: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in results]
    return statistics.median(vals) if vals else None


def summarize(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario, by_target in data["runs"].items():
        out[scenario] = {}
        for target, by_c in by_target.items():
            one, many = by_c.get("1", []), by_c.get("32", [])
            if not one and not many:
                continue
            s: dict[str, Any] = {
                "non2xx": sum(r["non2xx"] for r in one + many),
                "socket_errors": sum(r["socket_errors"] for r in one + many),
                "requests": sum(r["requests"] for r in one + many),
                "rounds": max(len(one), len(many)),
            }
            for tag, rs in (("1", one), ("32", many)):
                for k in ("p50", "p90", "p99", "rps"):
                    s[f"{k}_{tag}"] = med(rs, k)
            out[scenario][target] = s
    return out


def worker_mb(mem: list[dict[str, Any]] | None, key: str) -> float | None:
    if not mem:
        return None
    vals = [m[key] for m in mem if m.get("role") == "worker" and m.get(key) is not None]
    return sum(vals) if vals else None


def ordered(names: list[str] | Any) -> list[str]:
    return [t for t in ALL_TARGETS if t in names]


# ----------------------------------------------------------------------------------------- markdown


def render(data: dict[str, Any], chart: Path | None = None) -> str:
    meta = data["meta"]
    summ = summarize(data)
    tinfo: dict[str, dict[str, Any]] = data.get("targets", {})
    names = ordered(meta.get("chosen") or list(tinfo))
    versions = ", ".join(f"{n} {tinfo[n]['version']}" for n in names if tinfo.get(n, {}).get("version"))
    el = meta.get("elapsed_s") or {}
    lines = [
        "# arouter benchmark",
        "",
        f"{meta.get('date', '?')} · gateway {meta['git']} · {meta['host']} · Python {meta['python']} "
        f"· nginx {meta['nginx']} · {meta['wrk']} · node {meta.get('node', '-')}",
        "",
        f"Versions: {versions}." if versions else "",
        "",
        "Method: nginx serves recorded answers from files (the upstream is never the bottleneck); wrk "
        f"(1 thread, a Lua script for the POST body) and nginx are pinned to core {meta['cpu_load']}, every "
        f"gateway-like target (one worker or process) to core {meta['cpu_gateway']}. All targets are up at "
        f"once and measured in the same run, interleaved (the order flips every round): {meta['duration_s']:g} s "
        f"per run, {meta['repeat']} round(s), figures are medians over rounds, after a {meta['warmup_s']:g} s "
        "warm-up at 32 connections per target and scenario. Latency is wrk's: request written to whole answer "
        "read (for a stream, the whole stream). 1 connection gives the latency, 32 connections saturation. "
        "Added latency = target - direct at 1 connection. Everything on 127.0.0.1."
        + (f" Run time: main table {el['table'] / 60:.1f} min, all {el['total'] / 60:.1f} min." if el else "")
        + (
            f" Load average (1 min) at the start {meta['loadavg_start'][0]:.2f}, at the end "
            f"{meta['loadavg_end'][0]:.2f}: anything above what this run itself adds is other work on the machine."
            if meta.get("loadavg_start") and meta.get("loadavg_end")
            else ""
        ),
        "",
        "## Targets",
        "",
    ]
    for n in names:
        lines.append(f"- **{n}**: {TARGET_TEXT.get(n, '')}")
    lines.append("")
    for scenario in SCENARIOS:
        lines += scenario_section(scenario, summ.get(scenario, {}), names, tinfo)
    lines += memory_section(names, tinfo)
    lines += micro_section(data.get("micro"))
    lines += streams_section(data.get("open_streams") or [])
    lines += aims_section(data, summ)
    lines += notes_section(data, names)
    if chart is not None:
        lines += ["## Chart", "", f"![req/s and added latency per target]({chart.name})", ""]
    return "\n".join(lines).replace("\n\n\n", "\n\n")


def scenario_section(
    scenario: str, by_target: dict[str, dict[str, Any]], names: list[str], tinfo: dict[str, dict[str, Any]]
) -> list[str]:
    lines = [
        f"## {scenario}",
        "",
        SCENARIO_TEXT[scenario] + ".",
        "",
        "| target | p50 @1 | p90 @1 | p99 @1 | req/s @1 | p50 @32 | p90 @32 | p99 @32 | req/s @32 "
        "| non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        s = by_target.get(n)
        if s is None:
            why = tinfo.get(n, {}).get("skipped", {}).get(scenario, "not run")
            lines.append(f"| {n} | {why} | | | | | | | | | |")
            continue
        lines.append(
            f"| {n} | {fmt_us(s['p50_1'])} | {fmt_us(s['p90_1'])} | {fmt_us(s['p99_1'])} | {fmt_rps(s['rps_1'])} "
            f"| {fmt_us(s['p50_32'])} | {fmt_us(s['p90_32'])} | {fmt_us(s['p99_32'])} | {fmt_rps(s['rps_32'])} "
            f"| {s['non2xx']} | {s['socket_errors']} |"
        )
    d, y = by_target.get("direct"), by_target.get("yardstick")
    rows = []
    for n in names:
        s = by_target.get(n)
        if s is None or n == "direct":
            continue
        chunks = tinfo.get(n, {}).get("chunks", {}).get(scenario)
        rows.append(
            f"| {n} | {fmt_us(s['p50_1'] - d['p50_1']) if d else '-'} "
            f"| {fmt_us(s['p99_1'] - d['p99_1']) if d else '-'} "
            f"| {fmt_x(s['p50_1'], d['p50_1']) if d else '-'} "
            f"| {fmt_x(s['rps_32'], y['rps_32']) if y else '-'} "
            f"| {(100 * s['rps_32'] / d['rps_32']) if d and d['rps_32'] else 0:.1f}% "
            f"| {chunks if chunks else '-'} |"
        )
    if rows:
        lines += [
            "",
            "| target | added p50 @1 | added p99 @1 | p50 @1 / direct | req/s @32 / yardstick "
            "| req/s @32, % of direct | events per answer |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    lines.append("")
    return lines


def memory_section(names: list[str], tinfo: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    for n in names:
        t = tinfo.get(n, {})
        idle, after = t.get("memory_idle"), t.get("memory_after")
        if not idle and not after:
            continue
        rows.append(
            f"| {n} | {fmt_mb(worker_mb(idle, 'rss_mb'))} | {fmt_mb(worker_mb(after, 'rss_mb'))} "
            f"| {fmt_mb(worker_mb(after, 'hwm_mb'))} | {pct1(t.get('idle_cpu_pct'))} |"
        )
    if not rows:
        return []
    return [
        "## Memory",
        "",
        "RSS of each target's worker process(es) (gunicorn/nginx masters left out): idle after start-up and one "
        "request per scenario, and after the main table. Idle CPU: the whole target (all its processes) over 2 s "
        "before the measurements, i.e. what it takes from the gateway core while the others are measured.",
        "",
        "| target | worker RSS idle | worker RSS after the run | worker peak RSS | idle CPU |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def micro_section(micro: dict[str, Any] | None) -> list[str]:
    if not micro:
        return []
    if "error" in micro:
        return ["## Per-chunk cost", "", f"not run: {micro['error']}", ""]
    return [
        "## Per-chunk cost",
        "",
        "`benchmarks/micro.py`, in process on the gateway core (no sockets): µs per event, best of several runs.",
        "",
        "| relay | µs per event |",
        "|---|---:|",
        f"| passed through, one event per read (the 22-chunk OpenAI stream) | {micro['passthrough_event']:.2f} |",
        f"| passed through, in 97-byte fragments | {micro['passthrough_fragments']:.2f} |",
        f"| translated, Anthropic text stream → OpenAI chunks (`anthropic_stream.sse`) "
        f"| {micro['translated_text']:.2f} |",
        f"| translated, Anthropic tool-use stream → OpenAI chunks | {micro['translated_tool_use']:.2f} |",
        "",
    ]


def streams_section(levels: list[dict[str, Any]]) -> list[str]:
    if not levels:
        return []
    lines = [
        "## Open streams",
        "",
        "One arouter worker (everything on, no concurrency limit), started fresh for each row, in front of "
        "`benchmarks/slow_upstream.py` (one event per stream per second). `benchmarks/open_streams.py` opens "
        "the streams, at most 100 being set up at a time (an aiohttp server listens with a backlog of 128), "
        "waits until each has its first event, holds them all, then has the upstream finish them; an error is "
        "any stream that did not end with `data: [DONE]` (refused, non-200, error event, cut, never opened). "
        "RSS, CPU and descriptors are the worker's, from /proc.",
        "",
        "| configuration | streams asked | streams held | errors | s to open all | worker RSS idle "
        "| worker RSS holding | worker peak RSS | worker CPU opening | worker CPU holding | worker fds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes: list[str] = []
    load: list[str] = []
    for r in levels:
        asked = r.get("asked", r.get("streams", 0))
        if r.get("not_run"):
            lines.append(f"| {r['config']} | {asked:,} | not run: {r['not_run']} | | | | | | | | |")
            continue
        held = r.get("open_at_end_of_hold", 0)
        cpu = r.get("cpu_hold_pct")
        opening = f"{r['open_s']:.1f}" if r["all_opened"] else f"not all: {r['opened']:,} in {r['open_s']:.0f}"
        lines.append(
            f"| {r['config']} | {asked:,} | {held:,} of {r['streams']:,} | {r['errors']:,} | {opening} "
            f"| {fmt_mb(r.get('rss_idle_mb'))} "
            f"| {fmt_mb(r.get('rss_hold_mb'))} | {fmt_mb(r.get('hwm_mb'))} "
            f"| {pct(r.get('cpu_open_pct'))} | {pct(cpu)} | {r.get('fds_hold', '-')} |"
        )
        load.append(
            f"{r['config']} {r['streams']:,}: client {pct(r.get('client_cpu_pct'))}, "
            f"upstream {pct(r.get('upstream_cpu_pct'))}"
        )
        if r.get("capped"):
            notes.append(f"- {r['config']}: {r['capped']} streams held (the hard limit here cannot be raised).")
        if r.get("errors"):
            notes.append(
                f"- {r['config']} {r['streams']:,}: statuses {r.get('statuses')}, connect errors "
                f"{r.get('connect_errors')}, cut {r.get('cut', 0) + r.get('cut_before_open', 0)}, never opened "
                f"{r.get('not_opened')}, opened but never ended {r.get('unfinished')} (upstream streams the "
                f"gateway dropped: {r.get('upstream_cut', '-')}), listen-queue overflows "
                f"{r.get('listen_overflows', '-')}; first error: {r.get('first_error') or '-'}"
            )
        if r.get("gateway_log_errors"):
            notes.append(
                f"- {r['config']} {r['streams']:,}: the gateway logged: " + "; ".join(r["gateway_log_errors"][:3])
            )
    lines.append("")
    if load:
        lines += ["Load core (client and slow upstream, CPU while opening and holding): " + "; ".join(load) + ".", ""]
    if notes:
        lines += [*notes, ""]
    return lines


# -------------------------------------------------------------------------------------------- aims


def aims_section(data: dict[str, Any], summ: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    tinfo = data.get("targets", {})
    arouters = [a for a in AROUTERS if any(a in summ.get(s, {}) for s in SCENARIOS) or a in tinfo]
    if not arouters:
        return []
    passthrough = ("json", "stream")

    def verdict(ok: bool | None, text: str) -> str:
        if ok is None:
            return f"- {text}" if text else "-"
        return f"**{'met' if ok else 'not met'}**: {text}"

    def vs_yardstick(a: str, factor: float) -> str:
        parts, oks = [], []
        for s in passthrough:
            t, y = summ.get(s, {}).get(a), summ.get(s, {}).get("yardstick")
            if t and y and y["rps_32"]:
                r = t["rps_32"] / y["rps_32"]
                parts.append(f"{s} {fmt_rps(t['rps_32'])} vs {fmt_rps(y['rps_32'])} req/s ({r:.2f}x)")
                oks.append(r >= factor)
        return verdict(all(oks) if oks else None, "; ".join(parts))

    def added(a: str, key: str, limit: float) -> str:
        parts, oks = [], []
        for s in passthrough:
            t, d = summ.get(s, {}).get(a), summ.get(s, {}).get("direct")
            if t and d:
                v = t[key] - d[key]
                parts.append(f"{s} {fmt_us(v)}")
                oks.append(v <= limit)
        return verdict(all(oks) if oks else None, ", ".join(parts))

    micro = data.get("micro") or {}
    has_micro = "passthrough_event" in micro

    def chunk_cost(key: str, limit: float, extra: str = "") -> str:
        if not has_micro:
            return "-"
        return verdict(micro[key] <= limit, f"{micro[key]:.2f} µs{extra}")

    def idle_rss(a: str) -> str:
        v = worker_mb(tinfo.get(a, {}).get("memory_idle"), "rss_mb")
        return verdict(None, "") if v is None else verdict(v < AIM_IDLE_RSS_MB, f"{v:.1f} MB")

    def streams(a: str) -> str:
        rows = [
            r
            for r in data.get("open_streams") or []
            if r.get("config") == a and r.get("asked", r.get("streams")) == AIM_STREAMS
        ]
        if not rows:
            return "-"
        r = rows[0]
        if r.get("not_run"):
            return verdict(False if not r.get("capped") else None, f"not run: {r['not_run']}")
        opened = (
            f"all open in {r['open_s']:.1f} s"
            if r["all_opened"]
            else f"{r['opened']:,} opened in {r['open_s']:.0f} s"
        )
        text = f"{r['errors']:,} errors in {r['streams']:,} streams, {opened}"
        if r.get("capped"):
            # fewer streams than the aim: errors there settle it; none there settle nothing
            return verdict(False if r["errors"] else None, f"{text} (only {r['streams']:,} fit: {r['capped']})")
        return verdict(r["errors"] == 0, text)

    head = "| aim | " + " | ".join(arouters) + " |"
    rows = [
        ("throughput @32 conns ≥ the yardstick (json, stream)", [vs_yardstick(a, 1.0) for a in arouters]),
        ("throughput @32 conns ≥ 2x the yardstick (the aim)", [vs_yardstick(a, 2.0) for a in arouters]),
        ("added p50 @1 conn ≤ 250 µs (json, stream)", [added(a, "p50_1", AIM_ADDED_P50_US) for a in arouters]),
        ("added p99 @1 conn ≤ 1 ms (json, stream)", [added(a, "p99_1", AIM_ADDED_P99_US) for a in arouters]),
        (
            "≤ 10 µs per passed-through chunk (micro, one event per read)",
            [chunk_cost("passthrough_event", AIM_PASSTHROUGH_US)] * len(arouters),
        ),
        (
            "≤ 30 µs per translated chunk (micro, Anthropic text stream)",
            [chunk_cost("translated_text", AIM_TRANSLATED_US)] * len(arouters),
        ),
        ("idle worker RSS < 60 MB", [idle_rss(a) for a in arouters]),
        ("10k open streams without an error", [streams(a) for a in arouters]),
    ]
    return [
        "## Aims",
        "",
        "The performance issue's targets, checked on this run's figures (the per-chunk cost is the same code "
        "in every configuration).",
        "",
        head,
        "|---|" + "---|" * len(arouters),
        *[f"| {aim} | " + " | ".join(cells) + " |" for aim, cells in rows],
        "",
    ]


def notes_section(data: dict[str, Any], names: list[str]) -> list[str]:
    notes = []
    tinfo = data.get("targets", {})
    for n in names:
        t = tinfo.get(n, {})
        if t.get("died"):
            notes.append(f"- {n} died during the run.")
        if t.get("log_errors"):
            notes.append(f"- {n} logged errors: " + "; ".join(t["log_errors"][:5]))
        for scenario, why in (t.get("skipped") or {}).items():
            if str(why).startswith("not run"):
                notes.append(f"- {n} {scenario}: {why}")
    if not notes:
        return []
    return ["## Notes", "", *notes, ""]


# ------------------------------------------------------------------------------------------- chart


def render_chart(data: dict[str, Any], path: Path) -> Path | None:
    """Grouped bars per scenario: req/s @32 conns and added p50 @1 conn, both on a log scale."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return None
    summ = summarize(data)
    names = ordered({t for by in summ.values() for t in by})
    if not names:
        return None
    colors = {
        "direct": "#9e9e9e",
        "nginx-proxy": "#607d8b",
        "yardstick": "#ffb300",
        "arouter": "#1565c0",
        "arouter-embedded": "#42a5f5",
        "arouter-exact": "#00897b",
        "litellm": "#c62828",
        "portkey": "#6a1b9a",
    }
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.6))
    panels = (
        (axes[0], names, lambda s, d: s["rps_32"], "requests/s at 32 connections (log)", "{:,.0f}"),
        (
            axes[1],
            [n for n in names if n != "direct"],
            lambda s, d: max(1.0, s["p50_1"] - d["p50_1"]) if d else None,
            "added p50 latency at 1 connection, µs (log)",
            "{:,.0f}",
        ),
    )
    for ax, who, value, title, label in panels:
        w = 0.8 / max(1, len(who))
        for i, n in enumerate(who):
            xs, ys = [], []
            for j, scenario in enumerate(SCENARIOS):
                s = summ.get(scenario, {}).get(n)
                d = summ.get(scenario, {}).get("direct")
                v = value(s, d) if s else None
                if v:
                    xs.append(j - 0.4 + w * (i + 0.5))
                    ys.append(v)
            if not xs:
                continue
            bars = ax.bar(xs, ys, w, label=n, color=colors.get(n))
            for b, v in zip(bars, ys, strict=True):
                ax.annotate(
                    label.format(v),
                    (b.get_x() + b.get_width() / 2, v),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        if ax is axes[1]:
            aim = ax.axhline(AIM_ADDED_P50_US, color="#2e7d32", linestyle="--", linewidth=1)
            ax.legend([aim], ["aim: added p50 ≤ 250 µs"], loc="upper left", fontsize=7, frameon=False)
        ax.set_yscale("log")
        ax.set_xticks(range(len(SCENARIOS)))
        ax.set_xticklabels(SCENARIOS)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.margins(y=0.15)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    meta = data["meta"]
    fig.suptitle(
        f"arouter benchmark · {meta.get('date', '')} · {meta['git']} · one worker per target on one core",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
