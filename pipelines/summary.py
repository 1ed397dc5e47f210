"""The end-of-build table: docs and bytes in/out per step, and drops by reason."""

from __future__ import annotations

from corpus.catalog import StepStatRow


def format_summary(rows: list[StepStatRow]) -> str:
    header = ("step", "docs in", "docs out", "MB in", "MB out", "seconds", "dropped (by reason)")
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
                f"{r.seconds:.1f}",
                drops,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                c.ljust(w) if i in (0, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
