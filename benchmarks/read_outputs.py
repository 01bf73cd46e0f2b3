"""Peak memory of reading a folder of facecli outputs: facecli.read with columns and filters vs whole.

    python benchmarks/read_outputs.py OUTPUT.parquet [--copies 400]

Makes a dataset folder of ``--copies`` copies of one facecli output (each with its own ``input``
value, in 20 subfolders), then, each in a fresh process, measures peak RSS and time of:

* ``filtered``: ``facecli.read(folder, columns=[input, frame, Happy], filters=FaceScore > 0.9)``
* ``columns``: ``facecli.read(folder, columns=[input, frame, Happy])``
* ``whole``: ``facecli.read(folder)`` (every column of every file)
* ``pandas``: ``pd.concat(pd.read_parquet(f) for f in files)`` then the same selection and filter

The figures are ratios against ``baseline`` (the process importing facecli and pandas, reading
nothing) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "baseline": "df = None",
    "filtered": "df = facecli.read(folder, columns=['input', 'frame', 'Happy'], filters=[('FaceScore', '>', 0.9)])",
    "columns": "df = facecli.read(folder, columns=['input', 'frame', 'Happy'])",
    "whole": "df = facecli.read(folder)",
    "pandas": "import glob\n"
              "files = sorted(glob.glob(folder + '/**/*.parquet', recursive=True))\n"
              "df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)\n"
              "df = df.loc[df['FaceScore'] > 0.9, ['input', 'frame', 'Happy']]",
}


def measure(case: str, folder: Path) -> dict:
    code = (
        "import resource, sys, time\nimport pandas as pd\nimport facecli, facecli.results\n"
        f"folder = {str(folder)!r}\nt = time.perf_counter()\n{CASES[case]}\n"
        "rows = 0 if df is None else len(df)\n"
        "print(rows, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout.split()
    return {"rows": int(out[0]), "seconds": float(out[1]), "peak_rss_mb": int(out[2]) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output", type=Path, help="one facecli output (.parquet)")
    parser.add_argument("--copies", type=int, default=400)
    args = parser.parse_args()
    table = pq.read_table(args.output)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "out"
        for k in range(args.copies):
            sub = folder / f"part{k % 20:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            copy = table.set_column(table.schema.get_field_index("input"), "input",
                                    pa.array([f"video{k:05d}.mp4"] * table.num_rows))
            pq.write_table(copy, sub / f"video{k:05d}.parquet", compression="zstd")
        size = sum(f.stat().st_size for f in folder.rglob("*.parquet")) / 1e6
        print(f"{args.copies} files, {args.copies * table.num_rows} rows x {table.num_columns} columns, {size:.0f} MB")
        results = {case: measure(case, folder) for case in CASES}
    base = results["baseline"]["peak_rss_mb"]
    for case, r in results.items():
        print(f"{case:9s} rows {r['rows']:7d}  {r['seconds']:6.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB "
              f"(+{r['peak_rss_mb'] - base:6.0f} MB over baseline)")
    print(json.dumps(results))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.0f} s")
