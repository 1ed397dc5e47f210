"""`python -m corpus.audit`: data tests over a built corpus, each a named check in the catalog.

A check is a query that returns the rows that violate it: zero rows is a pass. Built-in checks
are the ``.sql`` files in ``corpus/audits/``, one that needs Python (file checksums), and those
other packages register as entry points (`PLUGIN_GROUP`: the PII and evaluation-contamination
rescans of `pipelines.audits`), so this module imports nothing above `corpus`. Users add their
own ``.sql`` files in a folder given with
``--checks-dir`` or ``audit_checks:`` in the build config. A check file starts with ``--``
comment lines: the first paragraph documents it, ``-- requires: ...`` lines say when it applies
(``table NAME``, ``column VIEW.COLUMN``, ``step NAME`` or ``buckets``); a check whose
requirement is not met is skipped and says why.

Exit status: 0 when every selected check passed (or was skipped), 1 when one failed or errored,
2 on a bad command line or a missing catalog.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import duckdb

from common.config import ConfigError, read_yaml_mapping
from corpus.remote import default_mirror, is_remote
from corpus.store import CorpusLayout, file_mismatch

BUILTIN_DIR = Path(__file__).with_name("audits")
MAX_SHOWN_ROWS = 20
MAX_CELL_CHARS = 60


class AuditError(ValueError):
    """The audit cannot run (no catalog, unknown check, bad check file); the message says which."""


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    origin: str
    requires: tuple[str, ...] = ()
    sql: str | None = None
    func: Callable[[AuditContext], Violations] | None = None
    applies: Callable[[AuditContext], str | None] | None = None  # why it does not apply, or None

    @property
    def summary(self) -> str:
        """The first sentence of the documentation."""
        flat = " ".join(self.description.split())
        head, dot, _ = flat.partition(". ")
        return head + ("." if dot else "")


@dataclass
class Violations:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    total: int | None = None  # when more violations exist than ``rows`` holds

    @property
    def count(self) -> int:
        return self.total if self.total is not None else len(self.rows)


@dataclass
class CheckResult:
    check: Check
    status: str  # pass, fail, skip, error
    violations: Violations = field(default_factory=lambda: Violations([], []))
    message: str = ""


@dataclass
class AuditContext:
    """What a check may use: a read-only connection and the corpus layout."""

    conn: duckdb.DuckDBPyConnection
    layout: CorpusLayout

    def has_table(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [name]
        ).fetchone()
        return bool(row and row[0])

    def has_column(self, relation: str, column: str) -> bool:
        try:
            cols = [d[0] for d in self.conn.execute(f"SELECT * FROM {relation} LIMIT 0").description]
        except duckdb.Error:
            return False
        return column in cols

    def latest_build(self) -> str | None:
        row = self.conn.execute(
            "SELECT run_id FROM runs WHERE kind = 'build' AND status = 'succeeded' "
            "ORDER BY finished_at DESC, run_id DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    def ran_step(self, step: str) -> bool:
        run_id = self.latest_build()
        if run_id is None:
            return False
        row = self.conn.execute("SELECT count(*) FROM step_stats WHERE run_id = ? AND step = ?", [run_id, step])
        return bool(row.fetchone()[0])  # type: ignore[index]

    def has_buckets(self) -> bool:
        row = self.conn.execute("SELECT count(*) FROM documents WHERE bucket::VARCHAR <> 'all'").fetchone()
        return bool(row and row[0])

    def unmet(self, requirement: str) -> str | None:
        """Why ``requirement`` does not hold, or None when it does."""
        kind, _, arg = requirement.strip().partition(" ")
        arg = arg.strip()
        if kind == "table":
            return None if self.has_table(arg) else f"no table {arg!r} in the catalog"
        if kind == "column":
            relation, _, column = arg.partition(".")
            return None if self.has_column(relation, column) else f"{relation} has no column {column!r}"
        if kind == "step":
            return None if self.ran_step(arg) else f"step {arg!r} did not run in the latest build"
        if kind == "buckets":
            return None if self.has_buckets() else "no curriculum buckets (every document is in bucket 'all')"
        raise AuditError(f"unknown requirement {requirement!r} (use: table NAME, column VIEW.COL, step NAME, buckets)")


# -- loading checks -----------------------------------------------------------------------------
def parse_check_file(path: Path) -> Check:
    """A ``.sql`` check: leading ``--`` comments document it, the rest is one query."""
    text = path.read_text(encoding="utf-8")
    doc: list[str] = []
    requires: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("--"):
            break
        body = stripped[2:].strip()
        if body.lower().startswith("requires:"):
            requires.append(body.split(":", 1)[1].strip())
        else:
            doc.append(body)
    query = text.strip().rstrip(";").strip()
    if not query or all(line.strip().startswith("--") or not line.strip() for line in query.splitlines()):
        raise AuditError(f"{path}: no query in the check file")
    description = "\n".join(doc).strip() or "(undocumented check)"
    return Check(path.stem, description, str(path), tuple(requires), sql=query)


def load_sql_checks(directory: Path) -> list[Check]:
    if not directory.is_dir():
        raise AuditError(f"{directory}: checks folder not found")
    return [parse_check_file(p) for p in sorted(directory.glob("*.sql"))]


def all_checks(extra_dirs: Sequence[Path] = ()) -> dict[str, Check]:
    """Built-in SQL and Python checks, then user folders; a user check may not reuse a name."""
    checks: dict[str, Check] = {}
    for check in [*load_sql_checks(BUILTIN_DIR), *PYTHON_CHECKS, *plugin_checks()]:
        checks[check.name] = check
    for directory in extra_dirs:
        for check in load_sql_checks(directory):
            if check.name in checks:
                raise AuditError(
                    f"{check.origin}: check name {check.name!r} already used by {checks[check.name].origin}"
                )
            checks[check.name] = check
    return dict(sorted(checks.items()))


# -- python checks ------------------------------------------------------------------------------
def check_shard_files(ctx: AuditContext) -> Violations:
    rows: list[tuple[Any, ...]] = []
    records = ctx.conn.execute("SELECT path, stage, bytes, checksum FROM shards ORDER BY stage, path").fetchall()
    for rel, stage, size, checksum in records:
        mismatch = file_mismatch(ctx.layout.root / rel, size, checksum)
        if mismatch is not None:
            problem, expected, actual = mismatch
            rows.append((rel, stage, problem, expected, actual or None))
    return Violations(["path", "stage", "problem", "expected", "actual"], rows)


PYTHON_CHECKS: tuple[Check, ...] = (
    Check(
        "shard_files",
        "Every shard the catalog lists (raw, final, rejects) exists on disk with the recorded size and\n"
        "sha256 checksum, so the catalog describes the bytes a trainer will read.",
        "corpus/audit.py:check_shard_files",
        func=check_shard_files,
    ),
)
PLUGIN_GROUP = "corpusforge.audit_checks"  # entry points: checks the layers above add (pipelines.audits)


def plugin_checks() -> list[Check]:
    """Python checks registered by other packages under the `PLUGIN_GROUP` entry point group
    (each names a `Check`), so the audit runs them without importing their packages itself."""
    return [ep.load() for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name)]


def audit_check_dirs(value: Any, *, where: str) -> list[Path]:
    """A config's ``audit_checks``: a folder of ``.sql`` checks or a list of them (the build
    config and the audit read the key the same way)."""
    checks = [value] if isinstance(value, str) else (value or [])
    if not isinstance(checks, list) or not all(isinstance(c, str) for c in checks):
        raise ConfigError(f"{where}: 'audit_checks' must be a folder path or a list of folder paths")
    return [Path(c) for c in checks]


def config_root(root: str) -> Path:
    """The local corpus root a config's ``root`` names (an object-store URL's local mirror)."""
    return default_mirror(root) if is_remote(root) else Path(root)


# -- running ------------------------------------------------------------------------------------
def run_check(ctx: AuditContext, check: Check) -> CheckResult:
    try:
        for reason in [ctx.unmet(r) for r in check.requires] + [check.applies(ctx) if check.applies else None]:
            if reason:
                return CheckResult(check, "skip", message=reason)
        if check.func is not None:
            violations = check.func(ctx)
        else:
            assert check.sql is not None
            cursor = ctx.conn.execute(check.sql)
            violations = Violations([d[0] for d in cursor.description], cursor.fetchall())
    except (duckdb.Error, AuditError, OSError) as exc:
        return CheckResult(check, "error", message=f"{check.origin}: {type(exc).__name__}: {exc}")
    return CheckResult(check, "fail" if violations.count else "pass", violations)


def open_catalog(root: Path) -> duckdb.DuckDBPyConnection:
    layout = CorpusLayout.at(root)
    if not layout.catalog.is_file():
        raise AuditError(f"{layout.catalog}: no catalog (build the corpus first: python -m pipelines.build)")
    conn = duckdb.connect(str(layout.catalog), read_only=True)
    conn.execute("SET enable_progress_bar = false")  # output is a table or a report, not a terminal UI
    return conn


def set_variables(conn: duckdb.DuckDBPyConnection, variables: dict[str, Any]) -> None:
    """Check parameters as DuckDB variables (``getvariable('name')`` in a check): numbers, or a
    mapping of names to numbers (a MAP)."""
    for name, value in variables.items():
        if not name.isidentifier():
            raise AuditError(f"bad check variable name {name!r}")
        if isinstance(value, dict):
            items = ", ".join(f"'{str(k).replace(chr(39), chr(39) * 2)}': {float(v)!r}" for k, v in value.items())
            literal = f"MAP {{{items}}}" if items else "NULL"
        else:
            literal = repr(float(value))
        conn.execute(f"SET VARIABLE {name} = {literal}")


def run_audit(
    root: Path, names: Sequence[str] = (), extra_dirs: Sequence[Path] = (), variables: dict[str, Any] | None = None
) -> list[CheckResult]:
    """Run the named checks (all when ``names`` is empty) against the catalog under ``root``;
    ``variables`` are the checks' parameters (`set_variables`)."""
    checks = all_checks(extra_dirs)
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise AuditError(f"unknown check(s) {', '.join(map(repr, unknown))}; known: {', '.join(checks)}")
    selected = [checks[n] for n in names] if names else list(checks.values())
    conn = open_catalog(root)
    try:
        set_variables(conn, variables or {})
        ctx = AuditContext(conn, CorpusLayout.at(root))
        return [run_check(ctx, c) for c in selected]
    finally:
        conn.close()


# -- output -------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    text = text.replace("\n", "⏎").replace("\t", " ")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], total: int | None = None) -> str:
    shown = [[_cell(v) for v in r] for r in rows[:MAX_SHOWN_ROWS]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(columns)]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "-+-".join("-" * w for w in widths),
    ]
    lines += [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in shown]
    count = total if total is not None else len(rows)
    if count > len(shown):
        lines.append(f"... {count - len(shown)} more")
    return "\n".join("    " + line for line in lines)


def format_results(results: Sequence[CheckResult]) -> str:
    out = []
    for r in results:
        label = r.status.upper().ljust(5)
        line = f"{label} {r.check.name}: {r.check.summary}"
        out.append(line)
        if r.status == "fail":
            out.append(f"    {r.violations.count} violation(s) ({r.check.origin}):")
            out.append(format_table(r.violations.columns, r.violations.rows, r.violations.total))
        elif r.message:
            out.append(f"    {r.message}")
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "error", "skip")}
    out.append("")
    out.append(f"{counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors, {counts['skip']} skipped")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m corpus.audit", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, help="corpus root (default: root from --config, else ./data)")
    p.add_argument("--config", type=Path, help="build config whose 'root' and 'audit_checks' to use")
    p.add_argument("--check", action="append", default=[], metavar="NAME", help="run only this check (repeatable)")
    p.add_argument(
        "--checks-dir", action="append", default=[], type=Path, metavar="DIR", help="folder of extra .sql checks"
    )
    p.add_argument("--list", action="store_true", help="list the checks with their documentation and exit")
    p.add_argument(
        "--max-removed-share",
        action="append",
        default=[],
        metavar="[STEP=]SHARE",
        help="over_filtering: the share of one source a step may remove (default 0.2); STEP=SHARE for one step",
    )
    p.add_argument("--min-source-docs", type=int, help="over_filtering: judge a source from this many documents (20)")
    return p.parse_args(argv)


def filter_limits(values: Sequence[str], min_docs: int | None) -> dict[str, Any]:
    """``--max-removed-share`` / ``--min-source-docs`` as the over_filtering check's variables."""
    out: dict[str, Any] = {}
    by_step: dict[str, float] = {}
    for value in values:
        step, eq, share = value.rpartition("=")
        try:
            number = float(share)
        except ValueError:
            raise AuditError(f"--max-removed-share {value!r}: expected SHARE or STEP=SHARE, SHARE in [0, 1]") from None
        if not 0.0 <= number <= 1.0:
            raise AuditError(f"--max-removed-share {value!r}: the share must be in [0, 1]")
        if eq:
            by_step[step] = number
        else:
            out["max_removed_share"] = number
    if by_step:
        out["max_removed_share_by_step"] = by_step
    if min_docs is not None:
        out["min_source_docs"] = min_docs
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root
    extra: list[Path] = list(args.checks_dir)
    try:
        if args.config is not None:
            try:
                config = read_yaml_mapping(args.config)
                root = root or config_root(str(config.get("root", "data")))
                extra.extend(audit_check_dirs(config.get("audit_checks"), where=str(args.config)))
            except ConfigError as exc:
                raise AuditError(str(exc)) from None
        root = root or Path("data")
        if args.list:
            for check in all_checks(extra).values():
                requires = f" [requires: {', '.join(check.requires)}]" if check.requires else ""
                print(f"{check.name} ({check.origin}){requires}")
                print("    " + check.description.replace("\n", "\n    "))
            return 0
        results = run_audit(root, args.check, extra, filter_limits(args.max_removed_share, args.min_source_docs))
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    return 1 if any(r.status in ("fail", "error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
