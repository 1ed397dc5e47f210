"""Near-duplicate removal speed: datasketch vs datatrove vs corpusforge's minhash_dedup.

    PYTHONPATH=. nice python benchmarks/dedup.py [--mb 200] [--datasketch-mb 10] [--datatrove-mb 10]

One generated corpus (English-like and Chinese legal-style sentences, 10% near-duplicates) is
written once under bench-data/dedup/. Every system runs in its own child process limited to one
thread (POLARS_MAX_THREADS=1 etc.), so "MB/s" is per core and peak RSS is that process's own:

- (a) datasketch: Python shingling that yields exactly our shingles (our normalisation, CJK
  characters as tokens, word/character 5-grams; the shingle counts are printed side by side),
  then `MinHash(num_perm=128).update_batch` per document.
- (b) datatrove: its four-stage MinHash pipeline (signatures, buckets, clusters, filter) with the
  same banding (9 x 13), one task per stage, English word tokenizer (its default), Parquet in/out.
- (c) ours: signatures alone (shingle + sign + band hashes over the shards), and the whole
  `minhash_dedup` build (import, ingest, scan, reduce, process, publish) with one worker.

The slow baselines run on the first N MB of the same corpus (their MB/s does not depend on
size); ours runs on all of it and on a quarter of it, and peak RSS is extrapolated linearly in
the number of documents to 1M documents. Rates are wall-clock (the table and the first ratio
lines) and, on a separate line, CPU time of each child: the machine may be shared, and CPU time
is what other jobs on the cores do not inflate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

DATA = Path("bench-data/dedup")
ONE_THREAD = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cpu_s() -> float:
    """CPU seconds of this process and its finished children: unlike wall time, not inflated when
    other jobs share the cores (reported next to the wall-clock rates)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# -- corpus ------------------------------------------------------------------------------------
def generate(mb: float, seed: int = 1) -> Path:
    """Parquet + JSONL corpus of about ``mb`` MB of text; reused when already there."""
    from pipelines.dedup.gen import Vocabulary, edit, en_sentence, join, zh_sentence

    out = DATA / f"corpus-{mb:g}mb.parquet"
    if out.exists():
        return out
    rng = random.Random(seed)
    vocab = Vocabulary.english(rng)
    pools = {"en": [en_sentence(rng, vocab) for _ in range(60_000)], "zh": [zh_sentence(rng) for _ in range(60_000)]}
    texts, langs, target, size = [], [], mb * 1e6, 0
    while size < target:
        lang = "en" if rng.random() < 0.5 else "zh"
        sentences = rng.choices(pools[lang], k=rng.randint(5, 40))
        docs = [join(sentences, lang)]
        if rng.random() < 0.1:
            docs.append(edit(rng, sentences, lang, vocab, 0.05))
        for t in docs:
            texts.append(t)
            langs.append(lang)
            size += len(t.encode())
    df = pl.DataFrame({"id": [f"d{i}" for i in range(len(texts))], "text": texts, "lang": langs})
    DATA.mkdir(parents=True, exist_ok=True)
    df.write_parquet(out)
    return out


def subset(corpus: Path, mb: float) -> tuple[Path, Path]:
    """The first ``mb`` MB of the corpus as Parquet and as JSONL (for datatrove)."""
    df = pl.read_parquet(corpus)
    cum = df.get_column("text").str.len_bytes().cum_sum()
    part = df.filter(cum <= mb * 1e6)
    stem = DATA / f"{corpus.stem}-first{mb:g}mb"
    part.write_parquet(stem.with_suffix(".parquet"))
    part.write_ndjson(stem.with_suffix(".jsonl"))
    return stem.with_suffix(".parquet"), stem.with_suffix(".jsonl")


# -- systems (each runs in a child process) -------------------------------------------------------
def run_datasketch(path: Path) -> dict:
    """datasketch on the same shingles as ours: the same normalisation (Polars), CJK characters
    as tokens of their own, 5-grams of tokens joined by spaces, one shingle for shorter texts."""
    import re

    from datasketch import MinHash

    from pipelines.dedup.shingle import CJK_RANGES, nfkc, normalize_for_shingles

    cjk = "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in CJK_RANGES)
    token = re.compile(f"[{cjk}]|[^\\s{cjk}]+")
    df = pl.read_parquet(path)
    t0, c0 = time.perf_counter(), cpu_s()
    norm = (
        pl.DataFrame({"t": nfkc(df.get_column("text"))})
        .select(normalize_for_shingles(pl.col("t")))
        .to_series()
        .to_list()
    )
    shingles = []
    n = 5  # ours uses word 5-grams and CJK character 5-grams (ngram = cjk_ngram = 5)
    for text in norm:
        toks = token.findall(text)
        if not toks:
            shingles.append([])
            continue
        grams = [" ".join(toks[i : i + n]) for i in range(max(1, len(toks) - n + 1))]
        shingles.append([g.encode() for g in grams])
    t1, c1 = time.perf_counter(), cpu_s()
    for sh in shingles:
        m = MinHash(num_perm=128)
        m.update_batch(sh)
    t2, c2 = time.perf_counter(), cpu_s()
    mb = df.get_column("text").str.len_bytes().sum() / 1e6
    count = sum(len(sh) for sh in shingles)
    return {
        "mb": mb,
        "docs": df.height,
        "shingle_s": t1 - t0,
        "sign_s": t2 - t1,
        "shingle_cpu": c1 - c0,
        "sign_cpu": c2 - c1,
        "shingles": count,
    }


def run_datatrove(source: Path, work: Path) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig

    shutil.rmtree(work, ignore_errors=True)
    # sha1: datatrove 0.10's xxhash path passes str to xxhash 4, which rejects it
    cfg = MinhashConfig(n_grams=5, num_buckets=9, hashes_per_bucket=13, hash_config=HashConfig(64, "sha1"))
    folder, name = str(source.parent), source.name

    def reader() -> ParquetReader:
        return ParquetReader(folder, glob_pattern=name, text_key="text", id_key="id")

    stages = [
        ([reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)], 1),
        ([MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=cfg)], 9),
        ([MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=cfg)], 1),
        ([reader(), MinhashDedupFilter(input_folder=str(work / "remove")), ParquetWriter(str(work / "out"))], 1),
    ]
    times, cpus = [], []
    for i, (pipeline, tasks) in enumerate(stages):
        t, c = time.perf_counter(), cpu_s()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / f"logs{i}")).run()
        times.append(time.perf_counter() - t)
        cpus.append(cpu_s() - c)
    removed = 0
    for f in (work / "remove").glob("*.remove"):
        removed += f.stat().st_size // 4
    df = pl.read_parquet(source)
    mb = df.get_column("text").str.len_bytes().sum() / 1e6
    return {
        "mb": mb,
        "docs": df.height,
        "sign_s": times[0],
        "whole_s": sum(times),
        "sign_cpu": cpus[0],
        "whole_cpu": sum(cpus),
        "removed": removed,
    }


def count_our_shingles(path: Path) -> dict:
    """Our shingle count on a file (to check that datasketch hashed the same shingles)."""
    from pipelines.dedup.shingle import shingle_texts

    df = pl.read_parquet(path)
    sh = shingle_texts(df.get_column("text"), df.get_column("lang"), ngram=5, cjk_ngram=5)
    return {"shingles": int(sh.counts.sum())}


def run_ours_signatures(path: Path) -> dict:
    from pipelines.dedup.minhash import optimal_bands, sign_documents

    df = pl.read_parquet(path)
    bands, rows = optimal_bands(0.8, 128)
    t0, c0 = time.perf_counter(), cpu_s()
    step = 20_000  # documents per shard, about 32 MB: the size of a work shard
    for lo in range(0, df.height, step):
        part = df.slice(lo, step)
        sign_documents(
            part.get_column("text"),
            part.get_column("lang"),
            ngram=5,
            cjk_ngram=5,
            num_perm=128,
            seed=1,
            bands=bands,
            rows=rows,
        )
    t1, c1 = time.perf_counter(), cpu_s()
    mb = df.get_column("text").str.len_bytes().sum() / 1e6
    return {"mb": mb, "docs": df.height, "sign_s": t1 - t0, "sign_cpu": c1 - c0}


def run_ours_whole(path: Path, work: Path) -> dict:
    from pipelines.config import BuildConfig, SourceSpec
    from pipelines.runner import run_build
    from pipelines.steps.minhash_dedup import MinHashDedup

    shutil.rmtree(work, ignore_errors=True)
    cfg = BuildConfig(root=work, workers=1, sources=[SourceSpec(path, "bench")], steps=[MinHashDedup()])
    t, c = time.perf_counter(), cpu_s()
    result = run_build(cfg, progress=False)
    whole, whole_cpu = time.perf_counter() - t, cpu_s() - c
    stage = result.stages[-1]
    mb = pl.read_parquet(path, columns=["text"]).get_column("text").str.len_bytes().sum() / 1e6
    # keep the scan files: the reduce and scan phases are measured again, each in a fresh process
    keep = DATA / f"scans-{path.stem}"
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(stage.directory / "scan", keep)
    shutil.copy(sorted(result.stages[0].directory.glob("part-*.parquet"))[0], keep / "input-shard.parquet")
    shutil.rmtree(work, ignore_errors=True)
    return {
        "mb": mb,
        "docs": result.docs_in,
        "whole_s": whole,
        "whole_cpu": whole_cpu,
        "step_s": stage.stats.seconds,
        "removed": result.docs_rejected,
        "scans": str(keep),
    }


def run_ours_reduce(scans: Path, work: Path) -> dict:
    """The reduce phase alone on a finished build's scan files (no state: incremental=False)."""
    from pipelines.steps.minhash_dedup import MinHashDedup

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    files = sorted(scans.glob("part-*.parquet"))
    t = time.perf_counter()
    MinHashDedup(incremental=False).reduce(files, work, work)
    took = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    return {"reduce_s": took}


def run_ours_scan(scans: Path, work: Path) -> dict:
    """The scan phase alone on one work shard (what one worker holds at a time)."""
    from pipelines.step import ShardContext
    from pipelines.steps.minhash_dedup import MinHashDedup

    df = pl.read_parquet(scans / "input-shard.parquet")
    t = time.perf_counter()
    MinHashDedup(incremental=False).scan(df, ShardContext(0, work, work))
    return {"scan_s": time.perf_counter() - t, "shard_mb": df.get_column("text").str.len_bytes().sum() / 1e6}


def rss_now_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM; ru_maxrss would include the parent's, kept across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(argv: list[str]) -> dict:
    """Run one system in a fresh single-threaded process; returns its result and peak RSS."""
    env = {**os.environ, **ONE_THREAD}
    out = subprocess.run([sys.executable, __file__, "--child", *argv], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200)
    ap.add_argument("--datasketch-mb", type=float, default=10)
    ap.add_argument("--datatrove-mb", type=float, default=10)
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        name, *rest = args.child
        fn = {
            "datasketch": run_datasketch,
            "datatrove": run_datatrove,
            "sig": run_ours_signatures,
            "count": count_our_shingles,
            "reduce": run_ours_reduce,
            "scan": run_ours_scan,
            "whole": run_ours_whole,
        }[name]
        result = fn(*map(Path, rest))
        result["rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return

    t = time.perf_counter()
    corpus = generate(args.mb)
    full = pl.read_parquet(corpus, columns=["text"])
    print(
        f"corpus: {corpus} ({full.height} docs, {full.get_column('text').str.len_bytes().sum() / 1e6:.0f} MB text,"
        f" generated/loaded in {time.perf_counter() - t:.0f} s)"
    )
    ds_parquet, _ = subset(corpus, args.datasketch_mb)
    dt_parquet, _ = subset(corpus, args.datatrove_mb)
    quarter, _ = subset(corpus, args.mb / 4)
    res = {
        "datasketch": child(["datasketch", str(ds_parquet)]),
        "datatrove": child(["datatrove", str(dt_parquet), str(DATA / "datatrove-work")]),
        "ours_sig": child(["sig", str(corpus)]),
        "ours_whole": child(["whole", str(corpus), str(DATA / "ours-work")]),
        "ours_whole_q": child(["whole", str(quarter), str(DATA / "ours-work-q")]),
        "ours_on_dt": child(["whole", str(dt_parquet), str(DATA / "ours-work-dt")]),
    }
    ds, dt, sig, whole, wq, odt = (res[k] for k in res)
    ours_count = child(["count", str(ds_parquet)])["shingles"]
    red = child(["reduce", whole["scans"], str(DATA / "reduce-work")])
    red_q = child(["reduce", wq["scans"], str(DATA / "reduce-work")])
    scan = child(["scan", whole["scans"], str(DATA / "reduce-work")])
    ds_sign = ds["mb"] / ds["sign_s"]
    ds_all = ds["mb"] / (ds["sign_s"] + ds["shingle_s"])
    dt_sign, dt_whole = dt["mb"] / dt["sign_s"], dt["mb"] / dt["whole_s"]
    our_sign, our_whole = sig["mb"] / sig["sign_s"], whole["mb"] / whole["whole_s"]
    print(f"\n{'system':<44} {'MB':>7} {'docs':>8} {'sig MB/s':>9} {'whole MB/s':>11} {'peak RSS MB':>12}")
    print(
        f"{'(a) datasketch update_batch (hash only)':<44} {ds['mb']:>7.0f} {ds['docs']:>8} {ds_sign:>9.2f}"
        f" {'':>11} {ds['rss_mb']:>12.0f}"
    )
    print(f"{'(a) datasketch incl. Python shingling':<44} {'':>7} {'':>8} {ds_all:>9.2f}")
    print(
        f"{'(b) datatrove MinHash, 4 stages':<44} {dt['mb']:>7.0f} {dt['docs']:>8} {dt_sign:>9.2f} {dt_whole:>11.2f}"
        f" {dt['rss_mb']:>12.0f}"
    )
    print(
        f"{'(c) ours: signatures (shingle+sign+bands)':<44} {sig['mb']:>7.0f} {sig['docs']:>8} {our_sign:>9.2f}"
        f" {'':>11} {sig['rss_mb']:>12.0f}"
    )
    print(
        f"{'(c) ours: whole minhash_dedup build':<44} {whole['mb']:>7.0f} {whole['docs']:>8} {'':>9}"
        f" {our_whole:>11.2f} {whole['rss_mb']:>12.0f}"
    )
    print(
        f"{'(c) ours: minhash_dedup step alone (in whole)':<44} {whole['mb']:>7.0f} {whole['docs']:>8} {'':>9}"
        f" {whole['mb'] / whole['step_s']:>11.2f}"
    )
    print(
        f"{'(c) ours: whole build, quarter corpus':<44} {wq['mb']:>7.0f} {wq['docs']:>8} {'':>9}"
        f" {wq['mb'] / wq['whole_s']:>11.2f} {wq['rss_mb']:>12.0f}"
    )
    print(
        f"{'(c) ours: whole build, datatrove subset':<44} {odt['mb']:>7.0f} {odt['docs']:>8} {'':>9}"
        f" {odt['mb'] / odt['whole_s']:>11.2f} {odt['rss_mb']:>12.0f}"
    )
    r_per_doc = (red["rss_mb"] - red_q["rss_mb"]) / max(1, whole["docs"] - wq["docs"])
    r_est = red["rss_mb"] + r_per_doc * (1_000_000 - whole["docs"])
    print(
        f"reduce phase alone (fresh process): {red['reduce_s']:.1f} s, peak RSS {red['rss_mb']:.0f} MB "
        f"({red_q['rss_mb']:.0f} MB for the quarter): {r_per_doc * 1e6 / 1024:.2f} KB/doc, "
        f"linear estimate for 1M documents: {r_est:.0f} MB"
    )
    print(
        f"scan phase alone on one {scan['shard_mb']:.0f} MB work shard: {scan['scan_s']:.1f} s, peak RSS "
        f"{scan['rss_mb']:.0f} MB (per worker, independent of corpus size)"
    )
    per_doc = (whole["rss_mb"] - wq["rss_mb"]) / max(1, whole["docs"] - wq["docs"])
    est = whole["rss_mb"] + per_doc * (1_000_000 - whole["docs"])
    print(
        f"\nsignatures: ours / datasketch update_batch = {our_sign / ds_sign:.1f}x per core "
        f"(/ datasketch incl. shingling = {our_sign / ds_all:.1f}x)"
    )
    print(
        f"same shingles: datasketch hashed {ds['shingles']} shingles on its {ds['mb']:.0f} MB, "
        f"ours makes {ours_count} from the same documents"
    )
    print(f"whole dedup: ours / datatrove = {our_whole / dt_whole:.1f}x per core")
    c_ds, c_ds_all = ds["mb"] / ds["sign_cpu"], ds["mb"] / (ds["sign_cpu"] + ds["shingle_cpu"])
    c_dt_sign, c_dt_whole = dt["mb"] / dt["sign_cpu"], dt["mb"] / dt["whole_cpu"]
    c_sign, c_whole = sig["mb"] / sig["sign_cpu"], whole["mb"] / whole["whole_cpu"]
    print(
        f"by CPU time instead (MB per CPU-second, not inflated by other jobs on the cores): datasketch hash "
        f"{c_ds:.2f} (incl. shingling {c_ds_all:.2f}), datatrove sig {c_dt_sign:.2f} whole {c_dt_whole:.2f}, "
        f"ours sig {c_sign:.2f} whole {c_whole:.2f}: signatures {c_sign / c_ds:.1f}x datasketch "
        f"({c_sign / c_ds_all:.1f}x incl. shingling), whole {c_whole / c_dt_whole:.1f}x datatrove"
    )
    print(
        f"removed on the datatrove subset: datatrove {dt['removed']}, ours {odt['removed']} "
        f"(the corpus has about {int(dt['docs'] / 11)} generated near-duplicates)"
    )
    print(
        f"whole-build peak RSS: {per_doc * 1e6 / 1024:.2f} KB/doc between the quarter and the full run; "
        f"linear estimate for 1M documents: {est:.0f} MB (includes importing one big input file and ingest)"
    )
    print(f"(total {time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
