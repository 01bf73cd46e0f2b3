"""`facecli bench`: the real video pipeline timed stage by stage, on a generated or a given clip.

Speed is never asserted; these tests check that the report describes the run that happened
(frames, faces, stages of the engine and the model set, forward passes) and that
``--random-weights`` makes feat-v2 runnable without any download.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from facecli.cli import app
from facecli.timing import StageTimer, count, stage, timed_iter, timing

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_stage_timer_nests_per_thread_and_is_a_no_op_when_inactive():
    import threading

    import torch

    assert stage("anything") is stage("other")  # one shared no-op without a timer
    timer = StageTimer()
    net = torch.nn.Linear(4, 4)
    handles = timer.watch({"linear": net})
    with timing(timer):
        with stage("outer"):
            with stage("inner"):
                net(torch.zeros(1, 4))
            net(torch.zeros(1, 4))
        worker = threading.Thread(target=lambda: list(timed_iter(range(3), "produce")), name="worker")
        worker.start()
        worker.join()
    for handle in handles:
        handle.remove()
    net(torch.zeros(1, 4))  # no longer timed
    totals = {(t.thread, t.path): t for t in timer.totals()}
    assert totals[("main", "outer/inner/linear")].forward and totals[("main", "outer/linear")].calls == 1
    assert totals[("main", "outer")].calls == 1 and not totals[("main", "outer")].forward
    assert totals[("worker", "produce")].calls == 4  # three items and the end
    assert totals[("main", "outer")].seconds >= totals[("main", "outer/inner")].seconds
    with timing(timer):
        count("events", 2)
        count("events")
    count("events", 5)  # no timer active: nothing counted
    assert timer.counts() == {"events": 3}
    timer.reset()
    assert timer.counts() == {} and timer.totals() == []


def test_bench_lite_on_a_generated_clip(tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("bench", "--models", "lite", "--frames", "12", "--size", "320x240", "--batch-size", "4",
                    "--detect-every", "3", "--device", "cpu", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["model_set"] == "lite" and report["frames"] == 12 and report["detect_every"] == 3
    assert report["clip"].startswith("generated") and (report["width"], report["height"]) == (320, 240)
    assert report["faces"] >= 10  # the generated clip holds one real face in every frame
    paths = {s["path"] for s in report["stages"] if s["thread"] == "main"}
    assert {"detect", "analyze", "analyze/mesh", "analyze/mesh/facemesh", "analyze/iris/iris", "track",
            "rows", "write", "output file", "follow"} <= paths
    forwards = {s["path"].rsplit("/", 1)[-1] for s in report["stages"] if s["forward"]}
    assert forwards == {"blazeface", "facemesh", "iris", "fer", "dlib"}
    decode = [s for s in report["stages"] if s["path"] == "decode"]
    assert decode and decode[0]["thread"] == "facecli-decode"
    detect = next(s for s in report["stages"] if s["path"] == "detect" and s["thread"] == "main")
    # 12 frames in 3 batches, detection on frames 0, 3, 6, 9 only: 0 and 9 full, 3 and 6 coarse
    # (one call per kind and batch)
    assert detect["calls"] <= 4
    assert report["frames_detected"] == 4 and "detector ran on 4 of 12 frames" in result.stdout
    assert next(s for s in report["stages"] if s["path"] == "detect/blazeface")["calls"] >= detect["calls"]
    identity = next(s for s in report["stages"] if s["path"] == "analyze/identity/dlib")
    assert identity["calls"] <= 4
    assert 0 < report["forward_ms_per_frame"] <= 1000 * report["seconds"] / report["frames"]
    assert report["peak_rss_mb"] > 100 and report["fps"] > 0
    assert "network forward passes" in result.stdout and "faces/s" in result.stdout


def test_bench_max_faces_one_lite_detects_once(tmp_path):
    """--max-faces 1 with lite: the one face is followed, so the detector runs on the first frame only."""
    out = tmp_path / "bench.json"
    result = invoke("bench", "--models", "lite", "--frames", "12", "--size", "320x240", "--batch-size", "4",
                    "--detect-every", "3", "--max-faces", "1", "--device", "cpu", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["max_faces"] == 1 and report["faces"] == 12 and "max faces 1" in result.stdout
    detect = next(s for s in report["stages"] if s["path"] == "detect" and s["thread"] == "main")
    assert detect["calls"] == 1 and report["frames_detected"] == 1
    iris = next(s for s in report["stages"] if s["path"] == "analyze/iris/iris")
    assert iris["calls"] <= 3 + 1  # the followed frames of each batch completed in one call (plus the detection)


def test_bench_featv2_random_weights_on_a_given_clip(tmp_path, astronaut):
    from tests.conftest import write_video

    frames = [np.ascontiguousarray(astronaut[i * 4 : 256 + i * 4, 100 : 356]) for i in range(6)]
    clip = write_video(tmp_path / "clip.mp4", frames, fps=10)
    out = tmp_path / "bench.json"
    result = invoke("bench", clip, "--random-weights", "--frames", "4", "--batch-size", "2", "--device", "cpu",
                    "--detect-size", "full", "--detect-every", "1", "--precision", "fp32", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["model_set"] == "feat-v2" and report["random_weights"] and report["frames"] == 4
    assert report["clip"] == str(clip) and report["precision"] == "fp32"
    forwards = {s["path"] for s in report["stages"] if s["forward"]}
    assert forwards == {"detect/retinaface", "analyze/multitask", "analyze/arcface"}
    assert report["faces"] > 0  # the random detector is calibrated on the clip's own frames
    assert report["frames_detected"] == 4  # --detect-every 1: every frame


def test_bench_bad_input_is_one_line(tmp_path):
    missing = invoke("bench", tmp_path / "none.mp4", "--models", "lite")
    assert missing.exit_code == 2 and "none.mp4" in missing.stderr and "Traceback" not in missing.output
    bad = invoke("bench", "--models", "lite", "--size", "12x7")
    assert bad.exit_code == 2 and "--size" in bad.stderr


@pytest.mark.parametrize("option", [("--precision", "fp16"), ("--detect-every", "0")])
def test_bench_bad_settings_are_one_line(option):
    result = invoke("bench", "--models", "lite", *option)
    assert result.exit_code == 2 and option[0] in result.stderr
