"""Writers: row groups as the run goes, atomic rename, nothing left behind on failure."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facecli.io.writers import CsvWriter, ParquetWriter

SCHEMA = pa.schema([pa.field("a", pa.float32()), pa.field("b", pa.string())], metadata={b"k": b"v"})


def _batch(n: int, start: int = 0) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array([float(i) for i in range(start, start + n)], pa.float32()), pa.array([str(i) for i in range(n)])],
        schema=SCHEMA,
    )


def test_parquet_row_groups_and_atomic_rename(tmp_path):
    target = tmp_path / "out.parquet"
    w = ParquetWriter(target, SCHEMA, row_group_rows=10)
    for k in range(5):
        w.write(_batch(6, 6 * k))
    assert not target.exists(), "target must not appear before close"
    assert any(p.name.startswith(".out.parquet.part-") for p in tmp_path.iterdir())
    w.close()
    pf = pq.ParquetFile(target)
    assert pf.metadata.num_rows == 30 and pf.metadata.num_row_groups >= 2
    assert pf.schema_arrow.metadata[b"k"] == b"v"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_abort_leaves_no_file_and_keeps_old_output(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_bytes(b"previous")
    w = ParquetWriter(target, SCHEMA)
    w.write(_batch(3))
    w.abort()
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_csv_writer(tmp_path):
    target = tmp_path / "out.csv"
    w = CsvWriter(target, SCHEMA)
    w.write(_batch(2))
    w.write(_batch(2, 2))
    w.close()
    lines = target.read_text().splitlines()
    assert lines[0] == '"a","b"' and len(lines) == 5


def test_missing_output_folder(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        ParquetWriter(tmp_path / "nope" / "x.parquet", SCHEMA)


def test_many_small_batches_are_merged_and_kept_in_order(tmp_path):
    target = tmp_path / "out.parquet"
    w = ParquetWriter(target, SCHEMA, row_group_rows=1000)
    for k in range(100):
        w.write(_batch(3, 3 * k))
    assert len(w._pending) < 32, "pending chunks are merged as they pile up"
    w.close()
    table = pq.read_table(target)
    assert table.column("a").to_pylist() == [float(i) for i in range(300)]


def test_failure_while_opening_leaves_no_file(tmp_path, monkeypatch):
    import pyarrow.parquet as pq_module

    real = pq_module.ParquetWriter

    def opens_then_fails(path, *args, **kwargs):
        real(path, *args, **kwargs)  # the file now exists, as when a signal lands mid-constructor
        raise KeyboardInterrupt

    monkeypatch.setattr(pq_module, "ParquetWriter", opens_then_fails)
    with pytest.raises(KeyboardInterrupt):
        ParquetWriter(tmp_path / "out.parquet", SCHEMA)
    assert list(tmp_path.iterdir()) == []
