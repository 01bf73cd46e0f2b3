"""``facecli cluster-identities``: dataset-wide identities for existing facecli outputs.

Two passes. The first (:mod:`facecli.identity.dataset`, files in parallel with joblib) reduces
every file to per-track sums and same-frame pairs; all files' items are clustered together
(:func:`facecli.identity.cluster.cluster_items`). The second streams each file's row groups
again, replaces ``Identity`` with the dataset-wide ``Person_<k>`` (numbered by first appearance
in input order) and writes the same rows and columns, plus ``_identities.parquet``. Everything
is written below a temporary folder beside the target and moved into place only when all of it
is done, so a failure leaves no partial output.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from facecli.identity.cluster import (
    DEFAULT_METHOD,
    METHODS,
    LeaderClustering,
    cluster_items,
)
from facecli.identity.dataset import (
    FileInfo,
    FileScan,
    InputFile,
    RelabelError,
    embeddings_of,
    expand_inputs,
    inspect,
    open_batches,
    scan,
)
from facecli.io.writers import open_writer
from facecli.schema import METADATA_KEY

__all__ = ["RelabelError", "RelabelSummary", "relabel_dataset"]

SUMMARY_NAME = "_identities.parquet"
REP_FIELDS = ("input", "frame", "time_s", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")


@dataclass(frozen=True)
class RelabelSummary:
    files: int
    rows: int
    faces: int  # rows with an identity
    identities: int
    output: Path
    summary: Path
    threshold: float
    method: str


def relabel_dataset(
    inputs: list[str],
    output: Path,
    *,
    method: str = DEFAULT_METHOD,
    threshold: float | None = None,
    jobs: int = 2,
    progress=None,
) -> RelabelSummary:
    """Cluster identities across ``inputs`` and write them to ``output``.

    Args:
        inputs: files, folders (``_manifest.jsonl`` honoured) and globs.
        output: a ``.parquet``/``.csv`` file (one input only) or a folder mirroring the inputs.
        method: "linkage" or "leader".
        threshold: None: the model set's default for the method.
        jobs: files read in parallel in the first pass.
        progress: a :class:`facecli.pipeline.report.ProgressTask` or None.

    Raises:
        RelabelError: bad inputs (one line naming the file); OSError: the output cannot be written.
    """
    if method not in METHODS:
        raise RelabelError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    files = expand_inputs(inputs)
    infos = [inspect(f.path) for f in files]
    kind, dim = _check_compatible(files, infos)
    if threshold is None:
        recorded = {info.defaults.get(f"{method}_threshold") for info in infos} - {None}
        if len(recorded) != 1:
            raise RelabelError(
                f"the inputs record {'no' if not recorded else 'different'} default {method} threshold"
                f"{'' if not recorded else ' (' + ', '.join(map(str, sorted(recorded))) + ')'}; pass --threshold"
            )
        threshold = float(recorded.pop())
    single = len(files) == 1 and output.suffix.lower() in (".parquet", ".csv")
    if output.suffix.lower() in (".parquet", ".csv") and not single:
        raise RelabelError(f"{output}: {len(files)} inputs need an output folder, not a file")
    if not output.parent.exists():
        raise RelabelError(f"{output}: output folder {output.parent} does not exist")
    if progress is not None:
        progress.input_started("reading", len(files))
    scans = _scan_all(files, infos, jobs, progress)
    labels, centroids = _cluster(files, infos, scans, method, threshold)
    n_ids = centroids.shape[0]
    targets = [Path(output.name) if single else f.rel for f in files]
    summary_path = output.with_name(output.stem + "_identities.parquet") if single else output / SUMMARY_NAME
    staging = output.parent / f".{output.name}.part-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if progress is not None:
            progress.input_started("writing", sum(s.rows for s in scans))
        summary = _Summary(centroids)
        for f, info, lab, target in zip(files, infos, labels, targets):
            _write_file(f, info, lab, staging / target, target, method, threshold, summary, progress)
        _write_table(staging / "summary.parquet", summary.table())
        _commit(staging, output, single, targets, summary_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RelabelSummary(
        files=len(files),
        rows=sum(s.rows for s in scans),
        faces=int(sum((lab >= 0).sum() for lab in labels)),
        identities=n_ids,
        output=output,
        summary=summary_path,
        threshold=float(threshold),
        method=method,
    )


def _check_compatible(files: list[InputFile], infos: list[FileInfo]) -> tuple[str | None, int]:
    kind, dim, first = None, None, None
    for f, info in zip(files, infos):
        d = len(info.embedding)
        if dim is not None and d != dim:
            raise RelabelError(f"{f.path}: {d}-d embeddings, but {first} has {dim}-d; cluster one model set at a time")
        if info.kind and kind and info.kind != kind:
            raise RelabelError(
                f"{f.path}: embeddings of {info.kind}, but earlier files have {kind}; cannot mix model sets"
            )
        dim, first, kind = d, first or f.path, kind or info.kind
    return kind, int(dim or 0)


def _scan_all(files: list[InputFile], infos: list[FileInfo], jobs: int, progress) -> list[FileScan]:
    from joblib import Parallel, delayed

    out = []
    run = Parallel(n_jobs=max(1, min(jobs, len(files))), prefer="threads", return_as="generator")
    for result in run(delayed(scan)(f.path, info) for f, info in zip(files, infos)):
        out.append(result)
        if progress is not None:
            progress.advance(1)
    return out


def _cluster(
    files: list[InputFile], infos: list[FileInfo], scans: list[FileScan], method: str, threshold: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-row identity numbers of every file, and the identities' unit centroids [K, D]."""
    dim = scans[0].sums.shape[1] if scans and scans[0].sums.ndim == 2 else len(infos[0].embedding)
    if method == "leader":  # today's rule: rows in input order, one face at a time
        leader = LeaderClustering(threshold)
        labels = []
        for f, info in zip(files, infos):
            parts = []
            _, batches = open_batches(f.path, info.embedding)
            for batch in batches:
                got = leader.assign(embeddings_of(batch, info.embedding))
                parts.append(np.array([-1 if x is None else int(x[7:]) for x in got], dtype=np.int64))
            labels.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
        sums = np.zeros((leader.num_identities, dim), dtype=np.float64)
        return labels, _centroids_from_rows(files, infos, labels, sums)
    offsets = np.cumsum([0] + [s.sums.shape[0] for s in scans])
    sums = np.concatenate([s.sums.reshape(-1, dim) for s in scans]) if scans else np.zeros((0, dim), np.float32)
    counts = np.concatenate([s.embedded for s in scans])
    cl = np.concatenate([s.cannot_link + o for s, o in zip(scans, offsets)]) if scans else np.zeros((0, 2), np.int64)
    item_label = cluster_items(sums, cl, threshold=threshold, method="linkage", counts=counts)
    labels = [np.where(s.row_item >= 0, item_label[np.maximum(s.row_item, 0) + o], -1) for s, o in zip(scans, offsets)]
    k = int(item_label.max(initial=-1)) + 1
    cent = np.zeros((k, dim), dtype=np.float64)
    ok = item_label >= 0
    np.add.at(cent, item_label[ok], sums[ok])
    return labels, _unit(cent)


def _centroids_from_rows(files, infos, labels, sums: np.ndarray) -> np.ndarray:
    for f, info, lab in zip(files, infos, labels):
        lo = 0
        _, batches = open_batches(f.path, info.embedding)
        for batch in batches:
            emb = embeddings_of(batch, info.embedding).astype(np.float64)
            part = lab[lo : lo + batch.num_rows]
            lo += batch.num_rows
            ok = (part >= 0) & np.isfinite(emb).all(1)
            np.add.at(sums, part[ok], _unit(emb[ok]))
    return _unit(sums)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _Summary:
    """Per identity, gathered while writing: faces, tracks, videos, first and last appearance,
    and the face most similar to the identity's centroid (the representative)."""

    def __init__(self, centroids: np.ndarray) -> None:
        self.centroids = centroids
        k = centroids.shape[0]
        self.faces = np.zeros(k, dtype=np.int64)
        self.tracks: list[set] = [set() for _ in range(k)]
        self.videos: list[set] = [set() for _ in range(k)]
        self.first: list[dict | None] = [None] * k
        self.last: list[dict | None] = [None] * k
        self.sim = np.full(k, -np.inf)
        self.rep: list[dict | None] = [None] * k

    def update(self, file: str, batch: pa.RecordBatch, labels: np.ndarray, emb: np.ndarray) -> None:
        ok = np.flatnonzero(labels >= 0)
        if not len(ok):
            return
        lab = labels[ok]
        self.faces += np.bincount(lab, minlength=len(self.faces))
        src = _column(batch, "input", ok)
        track = _column(batch, "track", ok)
        for k, s, tr in set(zip(lab.tolist(), src, track)):
            self.videos[k].add((file, s))
            if tr is not None and tr >= 0:
                self.tracks[k].add((file, s, tr))
        _, first = np.unique(lab, return_index=True)
        _, last = np.unique(lab[::-1], return_index=True)
        for i in first.tolist():
            if self.first[lab[i]] is None:
                self.first[lab[i]] = _where(file, batch, int(ok[i]))
        for i in (len(lab) - 1 - last).tolist():
            self.last[lab[i]] = _where(file, batch, int(ok[i]))
        good = np.isfinite(emb[ok]).all(1)
        if not good.any():
            return
        rows, lab = ok[good], lab[good]
        sims = np.einsum("nd,nd->n", _unit(emb[rows].astype(np.float64)), self.centroids[lab])
        order = np.lexsort((-sims, lab))
        head = np.ones(len(order), dtype=bool)
        head[1:] = lab[order][1:] != lab[order][:-1]
        for i in order[head].tolist():
            k = int(lab[i])
            if sims[i] > self.sim[k]:
                self.sim[k], self.rep[k] = float(sims[i]), _where(file, batch, int(rows[i]))

    def table(self) -> pa.Table:
        k = len(self.faces)
        cols: dict[str, pa.Array] = {
            "identity": pa.array([f"Person_{c}" for c in range(k)], pa.string()),
            "faces": pa.array(self.faces, pa.int64()),
            "tracks": pa.array([len(s) for s in self.tracks], pa.int64()),
            "videos": pa.array([len(s) for s in self.videos], pa.int64()),
        }
        for name, rows, fields in (("first", self.first, REP_FIELDS[:3]), ("last", self.last, REP_FIELDS[:3]),
                                   ("rep", self.rep, REP_FIELDS)):
            cols[f"{name}_file"] = pa.array([None if r is None else r["file"] for r in rows], pa.string())
            for c in fields:
                values = [None if r is None else r.get(c) for r in rows]
                cols[f"{name}_{c}"] = pa.array(values, _TYPES.get(c, pa.float32()))
        cols["rep_similarity"] = pa.array([None if not np.isfinite(s) else float(s) for s in self.sim], pa.float32())
        return pa.table(cols)


_TYPES = {"input": pa.string(), "frame": pa.int64(), "time_s": pa.float64()}


def _column(batch: pa.RecordBatch, name: str, rows: np.ndarray) -> list:
    if name not in batch.schema.names:
        return [None] * len(rows)
    return batch.column(name).take(pa.array(rows)).to_pylist()


def _where(file: str, batch: pa.RecordBatch, row: int) -> dict:
    out: dict = {"file": file}
    for c in REP_FIELDS:
        if c in batch.schema.names:
            v = batch.column(c)[row].as_py()
            out[c] = None if isinstance(v, float) and not np.isfinite(v) else v
    return out


def _write_file(f: InputFile, info: FileInfo, labels: np.ndarray, target: Path, target_rel: Path, method: str,
                threshold: float, summary: _Summary, progress) -> None:
    schema, batches = open_batches(f.path, None)
    meta = dict(schema.metadata or {})
    if METADATA_KEY in meta:
        data = json.loads(meta[METADATA_KEY])
        settings = data.setdefault("settings", {})
        settings.update({"identity_threshold": threshold, "identity_method": method, "identity_scope": "dataset"})
        meta[METADATA_KEY] = json.dumps(data, sort_keys=True).encode()
    at = schema.get_field_index("Identity")
    schema = schema.set(at, pa.field("Identity", pa.string())).with_metadata(meta or None)
    fmt = "csv" if target.suffix.lower() == ".csv" else "parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = open_writer(target, schema, fmt)
    lo = 0
    try:
        for batch in batches:
            part = labels[lo : lo + batch.num_rows]
            if len(part) != batch.num_rows:
                raise RelabelError(f"{f.path}: changed while being read")
            lo += batch.num_rows
            summary.update(str(target_rel), batch, part, embeddings_of(batch, info.embedding))
            arrays = list(batch.columns)
            arrays[at] = pa.array([None if v < 0 else f"Person_{v}" for v in part.tolist()], type=pa.string())
            writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema))
            if progress is not None:
                progress.advance(batch.num_rows)
        writer.close()
    except pa.ArrowInvalid as exc:
        writer.abort()
        raise RelabelError(f"{f.path}: unreadable rows ({str(exc).splitlines()[0]})") from None
    except BaseException:
        writer.abort()
        raise


def _write_table(path: Path, table: pa.Table) -> None:
    writer = open_writer(path, table.schema, "parquet")
    try:
        for batch in table.to_batches():
            writer.write(batch)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def _commit(staging: Path, output: Path, single: bool, targets: list[Path], summary_path: Path) -> None:
    """Move the finished files into place, then remove the staging folder."""
    if single:
        os.replace(staging / targets[0], output)
        os.replace(staging / "summary.parquet", summary_path)
    elif not output.exists():
        os.replace(staging / "summary.parquet", staging / SUMMARY_NAME)
        os.rename(staging, output)
        return
    else:
        if not output.is_dir():
            raise RelabelError(f"{output}: exists and is not a folder")
        for rel in targets:
            (output / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, output / rel)
        os.replace(staging / "summary.parquet", output / SUMMARY_NAME)
    shutil.rmtree(staging, ignore_errors=True)
