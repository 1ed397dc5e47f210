"""The end-of-build table: docs and bytes in/out per step, drops by reason, and where time went."""

from __future__ import annotations

from corpus.catalog import StepStatRow

LEGEND = (
    "task s: seconds of the stage's tasks summed over workers (parallel work counts once per worker, "
    "and resumed tasks count what they took in the earlier run); CPU s: CPU seconds of the processes "
    "running them, over the tasks (a worker's start-up in its first task); MB/CPU-s: MB in per CPU "
    "second; peak MB: the largest peak RSS of one task's worker; wall s: time this run spent on it; "
    "resumed: tasks an earlier, interrupted run had finished"
)


def format_summary(rows: list[StepStatRow]) -> str:
    header = (
        "step",
        "docs in",
        "docs out",
        "MB in",
        "MB out",
        "CPU s",
        "MB/CPU-s",
        "peak MB",
        "task s",
        "wall s",
        "resumed",
        "dropped (by reason)",
    )
    lines = [header]
    for r in rows:
        drops = ", ".join(f"{k}={v}" for k, v in r.drops.items()) or "-"
        lines.append(
            (
                f"{r.step_index}:{r.step}",
                str(r.docs_in),
                str(r.docs_out),
                f"{r.bytes_in / 1e6:.2f}",
                f"{r.bytes_out / 1e6:.2f}",
                f"{r.cpu_seconds:.1f}",
                f"{r.bytes_in / 1e6 / r.cpu_seconds:.2f}" if r.cpu_seconds > 0 else "-",
                f"{r.peak_rss_mb:.0f}",
                f"{r.seconds:.1f}",
                f"{r.wall_seconds:.1f}",
                f"{r.reused_tasks}/{r.tasks}" if r.reused_tasks else "-",
                drops,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = (0, len(header) - 1)
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    total = sum(r.cpu_seconds for r in rows)
    peak = max((r.peak_rss_mb for r in rows), default=0.0)
    totals = f"total: {total:.1f} CPU s, the largest task's peak RSS {peak:.0f} MB"
    return "\n".join([*out, "", totals, "", LEGEND])
