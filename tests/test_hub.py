"""Weight-file registry and resolution order: weights folder, Hub cache, download."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from facecli.models import hub
from facecli.models.hub import FEAT_V2_FILES, WeightsUnavailable
from facecli.models.weights import WeightsError

RETINAFACE = FEAT_V2_FILES["retinaface"]
ARCFACE = FEAT_V2_FILES["arcface"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No weights folder, an empty Hub cache under tmp_path, no proxies, offline by default."""
    for name in ("FACECLI_WEIGHTS_DIR", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT",
                 "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _put(path: Path, content: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _fake_hf_cache(
    cache: Path, file: hub.WeightFile, name: str, content: bytes = b"cached"
) -> Path:
    """A huggingface_hub cache entry: models--owner--name/{refs/main, snapshots/<commit>/name}."""
    repo = cache / ("models--" + file.repo_id.replace("/", "--"))
    _put(repo / "refs" / "main", COMMIT.encode())
    return _put(repo / "snapshots" / COMMIT / name, content)


# ---- registry -----------------------------------------------------------------------------


def test_registry_lists_the_feat_v2_files():
    assert list(FEAT_V2_FILES) == ["retinaface", "multitask", "arcface", "facenet"]
    assert RETINAFACE.names == ("model.safetensors", "retinaface_r34.safetensors")
    multitask = FEAT_V2_FILES["multitask"]
    assert (multitask.repo_id, multitask.filename) == (
        "py-feat/face_multitask_v2",
        "face_multitask_v28.safetensors",
    )
    assert FEAT_V2_FILES["facenet"].filename == "facenet_20180402_114759_vggface2.pth"
    for key, entry in FEAT_V2_FILES.items():
        assert entry.key == key and entry.license and entry.description
        assert entry.approx_size.startswith("approx ") and 50e6 < entry.approx_bytes < 250e6
    with pytest.raises(dataclasses.FrozenInstanceError):
        ARCFACE.filename = "other.safetensors"  # type: ignore[misc]


# ---- local lookup ---------------------------------------------------------------------------


def test_weights_dir_layout(tmp_path):
    expected = _put(tmp_path / "w" / "py-feat" / "retinaface_r34" / "model.safetensors")
    assert hub.find_local(RETINAFACE, tmp_path / "w") == expected
    assert hub.resolve(RETINAFACE, str(tmp_path / "w")) == expected
    # a flat folder is not the documented layout
    _put(tmp_path / "flat" / "model.safetensors")
    assert hub.find_local(RETINAFACE, tmp_path / "flat") is None


def test_weights_dir_from_environment(tmp_path, monkeypatch):
    expected = _put(tmp_path / "env" / "py-feat" / "arcface_r50" / "arcface_r50.safetensors")
    monkeypatch.setenv("FACECLI_WEIGHTS_DIR", str(tmp_path / "env"))
    assert hub.resolve(ARCFACE) == expected
    # an explicit folder wins over the variable
    explicit = _put(tmp_path / "arg" / "py-feat" / "arcface_r50" / "arcface_r50.safetensors")
    assert hub.resolve(ARCFACE, tmp_path / "arg") == explicit


def test_fallback_filename(tmp_path):
    folder = tmp_path / "w" / "py-feat" / "retinaface_r34"
    old = _put(folder / "retinaface_r34.safetensors")
    assert hub.find_local(RETINAFACE, tmp_path / "w") == old
    new = _put(folder / "model.safetensors")
    assert hub.find_local(RETINAFACE, tmp_path / "w") == new  # the current name comes first


def test_hf_cache_under_hf_home(tmp_path):
    cached = _fake_hf_cache(tmp_path / "hf-home" / "hub", RETINAFACE, "model.safetensors")
    assert hub.find_local(RETINAFACE) == cached
    assert hub.resolve(RETINAFACE) == cached
    assert hub.find_local(ARCFACE) is None  # another repository is not cached


def test_hf_cache_from_hf_hub_cache_and_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    cached = _fake_hf_cache(tmp_path / "elsewhere", RETINAFACE, "retinaface_r34.safetensors")
    assert hub.find_local(RETINAFACE) == cached


def test_hf_cache_snapshot_not_on_main_is_ignored(tmp_path):
    cached = _fake_hf_cache(tmp_path / "hf-home" / "hub", ARCFACE, "arcface_r50.safetensors")
    (cached.parents[2] / "refs" / "main").write_text("f" * 40)  # main points at another commit
    assert hub.find_local(ARCFACE) is None


def test_weights_dir_comes_before_cache(tmp_path):
    _fake_hf_cache(tmp_path / "hf-home" / "hub", ARCFACE, "arcface_r50.safetensors")
    local = _put(tmp_path / "w" / "py-feat" / "arcface_r50" / "arcface_r50.safetensors")
    assert hub.resolve(ARCFACE, tmp_path / "w") == local


# ---- unavailable ----------------------------------------------------------------------------


def test_offline_and_missing_raises_one_line(tmp_path):
    with pytest.raises(WeightsUnavailable) as info:
        hub.resolve(ARCFACE, tmp_path / "empty")
    message = str(info.value)
    assert isinstance(info.value, WeightsError)
    assert "\n" not in message
    assert "py-feat/arcface_r50/arcface_r50.safetensors" in message
    assert "HF_HUB_OFFLINE" in message
    assert "facecli models download --to DIR" in message
    assert "--weights-dir DIR" in message and "FACECLI_WEIGHTS_DIR" in message


def test_downloads_disabled_never_probes(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: pytest.fail("probed the network"))
    with pytest.raises(WeightsUnavailable, match="downloads disabled"):
        hub.resolve(ARCFACE, allow_download=False)


def test_unreachable_hub_raises_without_download(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(
        "huggingface_hub.hf_hub_download", lambda *a, **k: pytest.fail("tried to download")
    )
    with pytest.raises(WeightsUnavailable, match="unreachable"):
        hub.resolve(ARCFACE)


# ---- download (hf_hub_download replaced by a fake) ------------------------------------------


@pytest.fixture
def fake_hub(monkeypatch):
    """Online, with a Hub that holds only the files in ``repo`` ({repo_id: {name: bytes}})."""
    from huggingface_hub.utils import EntryNotFoundError

    repo: dict[str, dict[str, bytes]] = {}
    calls: list[tuple[str, str, dict]] = []

    def fake_download(repo_id, filename, **options):
        calls.append((repo_id, filename, options))
        if filename not in repo.get(repo_id, {}):
            raise EntryNotFoundError(f"{repo_id}/{filename} not found")
        if "local_dir" in options:
            target = Path(options["local_dir"]) / filename
        else:
            target = Path(options["cache_dir"]) / "downloaded" / filename
        return str(_put(target, repo[repo_id][filename]))

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    return repo, calls


def test_resolve_downloads_into_the_hub_cache(fake_hub, tmp_path):
    repo, calls = fake_hub
    repo["py-feat/arcface_r50"] = {"arcface_r50.safetensors": b"arc"}
    path = hub.resolve(ARCFACE)
    assert path.read_bytes() == b"arc"
    assert calls[0][2]["cache_dir"] == tmp_path / "hf-home" / "hub"


def test_download_tries_fallback_name(fake_hub, tmp_path):
    repo, calls = fake_hub
    repo["py-feat/retinaface_r34"] = {"retinaface_r34.safetensors": b"old"}
    path = hub.download(RETINAFACE, tmp_path / "w")
    assert path == tmp_path / "w" / "py-feat" / "retinaface_r34" / "retinaface_r34.safetensors"
    assert [name for _, name, _ in calls] == ["model.safetensors", "retinaface_r34.safetensors"]
    assert hub.find_local(RETINAFACE, tmp_path / "w") == path
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # staging removed


def test_download_to_dir_copies_from_cache_offline(tmp_path):
    _fake_hf_cache(tmp_path / "hf-home" / "hub", ARCFACE, "arcface_r50.safetensors", b"abc")
    path = hub.download(ARCFACE, tmp_path / "out")
    assert path == tmp_path / "out" / "py-feat" / "arcface_r50" / "arcface_r50.safetensors"
    assert path.read_bytes() == b"abc" and not path.is_symlink()
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_download_offline_and_uncached_leaves_nothing(tmp_path):
    with pytest.raises(WeightsUnavailable, match="py-feat/facenet/facenet_20180402"):
        hub.download(FEAT_V2_FILES["facenet"], tmp_path / "out")
    assert list((tmp_path / "out" / "py-feat" / "facenet").iterdir()) == []


# ---- network probe --------------------------------------------------------------------------


def test_hub_reachable_offline_does_not_probe(monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("probed"))
    assert hub.hub_reachable() is False


def test_hub_reachable_false_on_refused_port(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as s:  # a port that was just free: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert hub.hub_reachable(timeout=1.0) is False


def test_hub_reachable_gives_up_on_a_silent_server(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as server:  # accepts TCP connections (backlog) but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub.hub_reachable(timeout=0.3) is False


@pytest.fixture
def local_endpoint(monkeypatch):
    """An HTTP server on localhost as HF_ENDPOINT; returns (set_status, seen_paths)."""
    status = {"code": 302}
    seen: list[str] = []

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - http.server naming
            seen.append(self.path)
            self.send_response(status["code"])
            if status["code"] == 302:
                self.send_header("Location", "http://127.0.0.1:9/cdn")  # must not be followed
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield (lambda code: status.update(code=code)), seen
    server.shutdown()
    server.server_close()


def test_hub_reachable_when_the_file_is_served(local_endpoint):
    set_status, seen = local_endpoint
    assert hub.hub_reachable(timeout=5.0) is True  # a redirect to the CDN is an answer
    assert seen == ["/py-feat/retinaface_r34/resolve/main/model.safetensors"]
    set_status(200)
    assert hub.hub_reachable(timeout=5.0, file=ARCFACE) is True
    assert seen[-1] == "/py-feat/arcface_r50/resolve/main/arcface_r50.safetensors"


def test_hub_not_reachable_behind_an_error_page(local_endpoint):
    set_status, _ = local_endpoint
    set_status(404)  # what an intercepting proxy without the Hub answers
    assert hub.hub_reachable(timeout=5.0) is False


# ---- integrity ------------------------------------------------------------------------------


def test_sha256_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 41 + b"tail"
    path = _put(tmp_path / "blob.bin", data)
    assert hub.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert hub.sha256_file(path, chunk_bytes=7) == hashlib.sha256(data).hexdigest()
    assert hub.sha256_file(_put(tmp_path / "empty", b"")) == hashlib.sha256(b"").hexdigest()


def test_verify_file_counts_parameters(tmp_path):
    from tests.support.identity_weights import write_random_arcface

    path = write_random_arcface(tmp_path / "arcface_r50.safetensors")
    assert hub.verify_file(ARCFACE, path) == 43_578_176
    with pytest.raises(WeightsError, match="arcface_r50.safetensors"):
        hub.verify_file(FEAT_V2_FILES["facenet"], path)  # not a torch state dict


@pytest.mark.parametrize(
    ("key", "loader"),
    [
        ("retinaface", "facecli.models.retinaface.load_retinaface"),
        ("multitask", "facecli.models.multitask.load_multitask"),
    ],
)
def test_verify_file_uses_the_model_loader(monkeypatch, tmp_path, key, loader):
    import torch

    seen: list[Path] = []

    def fake_loader(path):
        seen.append(path)
        return torch.nn.Linear(3, 2)  # 8 parameters

    monkeypatch.setattr(loader, fake_loader)
    assert hub.verify_file(FEAT_V2_FILES[key], str(tmp_path / "file")) == 8
    assert seen == [tmp_path / "file"]
