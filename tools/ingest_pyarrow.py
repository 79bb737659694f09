#!/usr/bin/env python3
"""Time pyarrow reading a benchmark parquet file into Python objects of the same content as
Spotlight's `Item` (id, question, options, answer, image bytes and path, subject, level),
images left encoded. Same file as `cargo bench --bench ingest` (target/bench-data/large.parquet).

Usage: python3 tools/ingest_pyarrow.py FILE [--repeats N]
Installs pyarrow if missing.
"""
import argparse, os, subprocess, sys, time

try:
    import pyarrow.parquet as pq
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "pyarrow"])
    import pyarrow.parquet as pq


def read_items(path):
    items = []
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            image = row["decoded_image"]
            items.append({
                "id": row["id"],
                "question": row["question"],
                "options": row["options"],
                "answer": row["answer"].strip(),
                "image": (image["bytes"], image["path"]) if image else None,
                "subject": row["subject"],
                "level": str(row["level"]),
            })
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    size = os.path.getsize(args.file)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        items = read_items(args.file)
        times.append(time.perf_counter() - t)
    best = min(times)
    times.sort()
    median = times[len(times) // 2]
    print(f"pyarrow {pq.__name__.split('.')[0]} {__import__('pyarrow').__version__}: {len(items)} rows, "
          f"{size/1e6:.1f} MB; median {median:.3f} s ({size/1e6/median:.0f} MB/s, {len(items)/median:.0f} rows/s), best {best:.3f} s")


if __name__ == "__main__":
    main()
