"""End-to-end `facecli` runs on generated media with random feat-v2 weights in the published layout."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from facecli.cli import app
from facecli.schema import read_metadata
from tests.conftest import write_video

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def featv2(weights) -> list[str]:
    return ["--models", "feat-v2", "--weights-dir", str(weights), "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut):
    """12 frames: the astronaut drifting right and zooming, then 3 blank frames."""
    frames = []
    for i in range(9):
        crop = astronaut[10 + i * 4: 394 + i * 4, 40 + i * 6: 424 + i * 6]
        frames.append(np.ascontiguousarray(crop[::2, ::2]))
    frames += [np.full_like(frames[0], 127)] * 3
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, fps=12)


@pytest.fixture(scope="module")
def video_run(tmp_path_factory, clip, featv2_weights):
    out = tmp_path_factory.mktemp("video_run") / "out.parquet"
    result = invoke("video", clip, "-o", out, *featv2(featv2_weights), "--batch-size", "4")
    assert result.exit_code == 0, result.output
    return out


def test_video_rows_times_and_metadata(video_run, featv2_weights, clip):
    df = pd.read_parquet(video_run)
    assert sorted(df["frame"].unique()) == list(range(12))
    faces = df[df["FaceScore"] > 0]
    assert len(set(faces["frame"]) & set(range(9))) >= 5, "random weights still find faces in most frames"
    blank = df[df["frame"] >= 9]
    assert len(blank) == 3 and (blank["FaceScore"] == 0).all() and blank["AU01"].isna().all()
    assert np.allclose(df.groupby("frame")["time_s"].first().to_numpy(), np.arange(12) / 12)
    assert df["approx_time"].iloc[0] == "00:00" and (df["input"] == str(clip)).all()
    assert df["Identity"][df["FaceScore"] > 0].str.startswith("Person_").all()
    # boxes are the expanded squares in frame pixels, mesh inside the frame-sized neighbourhood
    assert np.allclose(faces["FaceRectWidth"], faces["FaceRectHeight"])
    assert (faces["FrameWidth"] == 192).all() and (faces["FrameHeight"] == 192).all()
    meta = read_metadata(pq.read_schema(video_run))
    assert meta["model_set"] == "feat-v2" and meta["settings"]["kind"] == "video"
    assert meta["settings"]["identity_model"] == "arcface"
    assert meta["settings"]["identity_method"] == "linkage" and meta["settings"]["identity_threshold"] == 0.5
    assert meta["model_set_defaults"] == {"leader_threshold": 0.8, "linkage_threshold": 0.5}
    tracked = df[df["FaceScore"] > 0]
    assert tracked["track"].notna().all() and df.loc[df["FaceScore"] == 0, "track"].isna().all()
    assert not tracked.duplicated(["frame", "track"]).any(), "a track never holds two faces of one frame"
    want = hashlib.sha256((featv2_weights / "py-feat/retinaface_r34/model.safetensors").read_bytes()).hexdigest()
    assert meta["weights"]["retinaface"] == want
    assert set(meta["weights"]) == {"retinaface", "multitask", "arcface"}


def test_skip_frames_csv_and_facenet(tmp_path, clip, featv2_weights, video_run):
    out = tmp_path / "out.csv"
    result = invoke("video", clip, "-o", out, *featv2(featv2_weights), "--skip-frames", "4",
                    "--identity-model", "facenet")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert sorted(df["frame"].unique()) == [0, 4, 8]
    ref = pd.read_parquet(video_run)
    # frame 0 is a detection frame in both runs (--detect-every counts processed frames), same
    # detector and multitask: identical measurements; identity differs (facenet)
    a = df[df["frame"] == 0].reset_index(drop=True)
    b = ref[ref["frame"] == 0].reset_index(drop=True)
    assert np.allclose(a["AU12"], b["AU12"], atol=1e-4) and np.allclose(a["mesh_x_1"], b["mesh_x_1"], atol=1e-2)
    emb = a[[f"Identity_{i}" for i in range(1, 513)]].to_numpy()
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4), "facenet embeddings are L2-normalised"


def test_bad_inputs_are_reported_and_others_written(tmp_path, astronaut, featv2_weights):
    good = tmp_path / "good.png"
    Image.fromarray(astronaut[::2, ::2]).save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0garbage")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "readme.txt").write_text("not an image")
    out = tmp_path / "out.parquet"
    result = invoke("detect", good, tmp_path / "missing.png", corrupt, folder, "-o", out, *featv2(featv2_weights))
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    errors = sorted(line for line in lines if line.startswith("error: "))
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(errors) == 3 and len(lines) == 4
    assert "corrupt.jpg" in errors[0] and "holds no supported media" in errors[1] and "missing.png" in errors[2]
    assert "ignored 1 file" in warnings[0] and ".txt" in warnings[0]
    df = pd.read_parquet(out)
    assert set(df["input"]) == {str(good)} and (df["FaceScore"] > 0).any()


def test_all_inputs_bad_writes_nothing(tmp_path, featv2_weights):
    out = tmp_path / "out.parquet"
    result = invoke("detect", tmp_path / "nope.jpg", "-o", out, *featv2(featv2_weights))
    assert result.exit_code == 1 and not out.exists() and list(tmp_path.iterdir()) == []


def test_corrupt_video_among_good_ones(tmp_path, clip, featv2_weights):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = tmp_path / "out.parquet"
    result = invoke("video", bad, clip, "-o", out, *featv2(featv2_weights))
    assert result.exit_code == 1 and "bad.mp4" in result.stderr and "Traceback" not in result.output
    assert set(pd.read_parquet(out)["input"]) == {str(clip)}


def test_missing_weights_one_line_exit_2(tmp_path, clip):
    out = tmp_path / "out.parquet"
    result = invoke("video", clip, "-o", out, "--models", "feat-v2", "--weights-dir", tmp_path, "--quiet")
    assert result.exit_code == 2 and not out.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "py-feat/retinaface_r34/model.safetensors" in lines[0] and "facecli models download" in lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "nope"], "--models"),
        (["--batch-size", "0"], "--batch-size"),
        (["--detect-size", "big"], "--detect-size"),
        (["--device", "cuda:7"], "cuda"),
        (["--lite-detector", "medium"], "--lite-detector"),
        (["--lite-min-face", "2"], "--lite-min-face"),
    ],
)
def test_usage_errors_exit_2(tmp_path, clip, args, message):
    result = invoke("video", clip, "-o", tmp_path / "o.parquet", *args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_output_suffix_and_folder(tmp_path, clip):
    assert invoke("video", clip, "-o", tmp_path / "o.txt").exit_code == 2
    result = invoke("video", clip, "-o", tmp_path / "no" / "o.parquet")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_unsupported_multitask_config_names_the_flag(tmp_path, clip, featv2_weights):
    from safetensors.torch import load_file, save_file

    from tests.support.multitask_weights import V28_CONFIG

    weights = tmp_path / "w"
    shutil.copytree(featv2_weights, weights)
    target = weights / "py-feat/face_multitask_v2/face_multitask_v28.safetensors"
    save_file(load_file(target), target, metadata={"config": json.dumps({**V28_CONFIG, "drop_mefl": False})})
    result = invoke("video", clip, "-o", tmp_path / "o.parquet", *featv2(weights))
    assert result.exit_code == 2 and "drop_mefl" in result.stderr


def test_detect_size_maps_back_to_full_frame(tmp_path, astronaut, featv2_weights):
    img = tmp_path / "a.png"
    Image.fromarray(astronaut).save(img)
    out = tmp_path / "o.parquet"
    result = invoke("detect", img, "-o", out, *featv2(featv2_weights), "--detect-size", "256")
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert (df["FrameWidth"] == 512).all()
    assert read_metadata(pq.read_schema(out))["settings"]["detect_size"] == 256
    faces = df[df["FaceScore"] > 0]
    assert len(faces) and (faces["FaceRectX"] + faces["FaceRectWidth"] > 256).any(), "boxes in full-frame pixels"


def df0_labels(path):
    return pd.read_parquet(path)["Identity"].fillna("")


def test_cluster_identities_relabels(tmp_path, video_run):
    df0 = pd.read_parquet(video_run)
    # --method leader is today's rule: threshold -1 joins every face into one identity
    one = tmp_path / "one.parquet"
    result = invoke("cluster-identities", video_run, "-o", one, "--method", "leader", "--threshold", "-1", "--quiet")
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(one)
    labels = df.loc[df["FaceScore"] > 0, "Identity"]
    assert set(labels) == {"Person_0"} and df.loc[df["FaceScore"] == 0, "Identity"].isna().all()
    assert list(df.columns) == list(df0.columns) and len(df) == len(df0)
    assert read_metadata(pq.read_schema(one))["settings"]["identity_threshold"] == -1
    many = tmp_path / "many.csv"
    assert invoke("cluster-identities", video_run, "-o", many, "--method", "leader", "-t", "0.99999", "-q").exit_code == 0
    # one identity per distinct embedding (between detections a followed face carries its embedding)
    distinct = df0.loc[df0["FaceScore"] > 0, [f"Identity_{i}" for i in range(1, 513)]].drop_duplicates()
    assert pd.read_csv(many)["Identity"].nunique() == len(distinct) > 1
    default = tmp_path / "default.parquet"
    assert invoke("cluster-identities", video_run, "-o", default, "--method", "leader", "-q").exit_code == 0
    assert read_metadata(pq.read_schema(default))["settings"]["identity_threshold"] == 0.8  # the file's set
    from facecli.identity.cluster import cluster_identities

    emb = df0[[f"Identity_{i}" for i in range(1, 513)]].to_numpy(np.float32)
    leader = [lab or "" for lab in cluster_identities(emb, 0.8)]  # py-feat's rule in row order, as before
    assert list(pd.read_parquet(default)["Identity"].fillna("")) == leader
    # the default (linkage) at -1 merges all it may: never two faces of one frame (random weights
    # find up to 7 faces in a frame here), so as many identities as the busiest frame needs or a few more
    linked = tmp_path / "linked.parquet"
    assert invoke("cluster-identities", video_run, "-o", linked, "-t", "-1", "-q").exit_code == 0
    faces = pd.read_parquet(linked).query("FaceScore > 0")
    per_frame = faces.groupby("frame")["Identity"]
    assert (per_frame.nunique() == per_frame.size()).all()
    assert per_frame.size().max() <= faces["Identity"].nunique() < len(faces)
    meta = read_metadata(pq.read_schema(linked))["settings"]
    assert meta["identity_method"] == "linkage" and meta["identity_scope"] == "dataset"
    summary = pd.read_parquet(tmp_path / "linked_identities.parquet")
    assert summary["faces"].sum() == len(faces) and len(summary) == faces["Identity"].nunique()
    bad = invoke("cluster-identities", tmp_path / "missing.parquet", "-o", tmp_path / "x.parquet")
    assert bad.exit_code == 2 and "missing.parquet" in bad.stderr and "Traceback" not in bad.output


def fill_hf_cache(tmp_path, featv2_weights, monkeypatch) -> None:
    """A Hugging Face cache (HF_HUB_CACHE) holding the retinaface, multitask and arcface files."""
    from facecli.models import hub
    from tests.test_hub import _fake_hf_cache

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for role in ("retinaface", "multitask", "arcface"):
        wf = hub.FEAT_V2_FILES[role]
        _fake_hf_cache(cache, wf, wf.filename, (featv2_weights / wf.repo_id / wf.filename).read_bytes())


def test_models_list_verify_download(tmp_path, featv2_weights, monkeypatch):
    listing = invoke("models", "list", "--weights-dir", featv2_weights)
    assert listing.exit_code == 0, listing.output
    for name in ("retinaface_r34", "face_multitask_v2", "arcface_r50", "blazeface_short", "facemesh", "dlib"):
        assert name in listing.stdout
    verify = invoke("models", "verify", featv2_weights)
    assert verify.exit_code == 0, verify.output
    assert "retinaface: ok" in verify.stdout and "multitask: ok" in verify.stdout and "lite" in verify.stdout
    # download (offline here) copies from the local Hugging Face cache into DIR/<repo_id>/<filename>
    fill_hf_cache(tmp_path, featv2_weights, monkeypatch)
    to = tmp_path / "downloaded"
    result = invoke("models", "download", "--to", to, "--identity-model", "arcface")
    assert result.exit_code == 0, result.output
    assert (to / "py-feat/face_multitask_v2/face_multitask_v28.safetensors").read_bytes() == (
        featv2_weights / "py-feat/face_multitask_v2/face_multitask_v28.safetensors"
    ).read_bytes()
    missing = invoke("models", "download", "--to", tmp_path / "d2", "--identity-model", "facenet")
    assert missing.exit_code == 2 and "py-feat/facenet" in missing.stderr


def test_auto_uses_hub_cache_feat_v2(tmp_path, clip, featv2_weights, monkeypatch):
    """--models auto picks feat-v2, silently, when its files are in the Hugging Face cache."""
    fill_hf_cache(tmp_path, featv2_weights, monkeypatch)
    out = tmp_path / "o.parquet"
    result = invoke("video", clip, "-o", out, "--device", "cpu", "--skip-frames", "6")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    assert read_metadata(pq.read_schema(out))["model_set"] == "feat-v2"


def test_same_size_images_are_batched_with_identical_results(tmp_path, astronaut, featv2_weights):
    paths = []
    for i, (y, x) in enumerate(((0, 0), (40, 60), (90, 30))):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(np.ascontiguousarray(astronaut[y : y + 320, x : x + 320])).save(paths[-1])
    small = tmp_path / "small.png"
    Image.fromarray(np.ascontiguousarray(astronaut[:200, :240])).save(small)
    inputs = [paths[0], paths[1], small, paths[2]]
    one, three = tmp_path / "one.parquet", tmp_path / "three.parquet"
    assert invoke("detect", *inputs, "-o", one, *featv2(featv2_weights), "--batch-size", "1").exit_code == 0
    assert invoke("detect", *inputs, "-o", three, *featv2(featv2_weights), "--batch-size", "3").exit_code == 0
    a, b = pd.read_parquet(one), pd.read_parquet(three)
    assert list(a["input"]) == list(b["input"]) and list(a["frame"]) == list(b["frame"])
    assert list(a["input"].drop_duplicates()) == [str(p) for p in inputs]
    numeric = a.select_dtypes("number").columns
    assert np.allclose(a[numeric].to_numpy(), b[numeric].to_numpy(), atol=1e-3, equal_nan=True)


def test_write_failure_is_one_line_leaves_no_output_and_a_rerun_finishes(tmp_path, clip, monkeypatch):
    """Disk full while the final file is written: one line, exit 1, no output and no temporary file;
    the finished work stays in the hidden in-progress folder, so the same command then completes."""
    import errno

    from facecli.io import writers

    real = writers.ParquetWriter.write

    def failing_write(self, batch):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.ParquetWriter, "write", failing_write)
    out = tmp_path / "o.parquet"
    args = ("video", clip, "-o", out, "--models", "lite", "--batch-size", "4", "-q")
    result = invoke(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [f"error: {out}: cannot write the output (No space left on device)"]
    assert [p.name for p in tmp_path.iterdir()] == [".o.parquet.facecli-partial"], "no output, no temporary file"
    monkeypatch.setattr(writers.ParquetWriter, "write", real)
    assert invoke(*args).exit_code == 0
    assert [p.name for p in tmp_path.iterdir()] == ["o.parquet"]
    assert sorted(pd.read_parquet(out)["frame"].unique()) == list(range(12))


def test_a_failure_inside_the_models_loses_only_that_input(tmp_path, astronaut, monkeypatch):
    from facecli.pipeline import work

    real = work.measure

    def flaky(model_set, batch, *args):
        if any("bad" in s for s in batch.sources):
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail")
        return real(model_set, batch, *args)

    monkeypatch.setattr(work, "measure", flaky)
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.fromarray(astronaut).save(good)
    Image.fromarray(astronaut[::2, ::2]).save(bad)
    out = tmp_path / "o.parquet"
    result = invoke("detect", bad, good, "-o", out, "--models", "lite", "--batch-size", "1", "-q")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: processing failed (RuntimeError: CUDA error: an illegal memory access was encountered)"
    ]
    assert set(pd.read_parquet(out)["input"]) == {str(good)}


def test_max_faces_keeps_the_best_faces_and_is_recorded(tmp_path):
    from tests.support.faces import grid_frame, skimage_faces

    image, _ = grid_frame(skimage_faces()[:2], 2, 120, columns=2)
    path = tmp_path / "two.png"
    Image.fromarray(image).save(path)
    every, best = tmp_path / "every.parquet", tmp_path / "best.parquet"
    assert invoke("detect", path, "-o", every, "--models", "lite", "-q").exit_code == 0
    result = invoke("detect", path, "-o", best, "--models", "lite", "--max-faces", "1", "-q")
    assert result.exit_code == 0, result.output
    all_faces, one = pd.read_parquet(every), pd.read_parquet(best)
    assert len(all_faces) == 2 and len(one) == 1
    assert one["FaceScore"].iloc[0] == all_faces["FaceScore"].max()
    assert read_metadata(pq.read_schema(best))["settings"]["max_faces"] == 1
    assert read_metadata(pq.read_schema(every))["settings"]["max_faces"] is None
    bad = invoke("detect", path, "-o", tmp_path / "x.parquet", "--models", "lite", "--max-faces", "0", "-q")
    assert bad.exit_code != 0 and "Traceback" not in bad.output
