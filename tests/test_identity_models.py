"""ArcFace / FaceNet identity embedders: published key layout, strict loading, outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from facecli.models.arcface import ArcFaceEmbedder, IResNet, load_arcface
from facecli.models.facenet import FaceNetEmbedder, InceptionResnetV1, load_facenet
from facecli.models.weights import WeightsError
from tests.support.identity_weights import write_random_arcface, write_random_facenet

from tests.paths import KEYS_DIR as SPEC_KEYS


def _read_key_list(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    path = SPEC_KEYS / name  # the spec's list, copied into tests/data/keys
    entries = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        entries[key] = (tuple(int(d) for d in shape.strip("()").split(",") if d.strip()), dtype)
    return entries


def _layout(module: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in module.state_dict().items()
    }


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory) -> Path:
    return write_random_arcface(tmp_path_factory.mktemp("arc") / "arcface_r50.safetensors")


@pytest.fixture(scope="module")
def facenet_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fn") / "facenet_20180402_114759_vggface2.pth"
    return write_random_facenet(path)


# ---- layout -------------------------------------------------------------------------------


def test_arcface_layout_matches_spec_key_list():
    assert _layout(IResNet()) == _read_key_list("keys_arcface_r50_net.txt")


def test_facenet_layout_matches_spec_key_list():
    assert _layout(InceptionResnetV1()) == _read_key_list("keys_facenet_net.txt")


def test_parameter_counts_match_published_models():
    # totals from the headers of the spec key lists
    assert _n_params(IResNet()) == 43_578_176
    assert _n_params(InceptionResnetV1()) == 27_910_327


def test_random_arcface_file_has_published_layout(arcface_file):
    tensors = load_file(str(arcface_file))
    assert len(tensors) == 237
    assert not any(k.endswith("num_batches_tracked") or k.startswith("net.") for k in tensors)
    assert tensors["fc.weight"].shape == (512, 512 * 7 * 7)
    assert tensors["layer3.13.conv2.weight"].shape == (256, 256, 3, 3)


def test_random_facenet_file_has_published_layout(facenet_file):
    state = torch.load(str(facenet_file), map_location="cpu", weights_only=True)
    assert len(state) == 716
    assert state["logits.weight"].shape == (8631, 512)
    assert state["repeat_2.9.branch1.2.conv.weight"].shape == (128, 128, 7, 1)


# ---- strict loading -----------------------------------------------------------------------


def test_arcface_missing_key_is_named(arcface_file, tmp_path):
    tensors = load_file(str(arcface_file))
    del tensors["layer2.3.prelu.weight"]
    save_file(tensors, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match=r"missing key 'layer2\.3\.prelu\.weight'"):
        load_arcface(tmp_path / "bad.safetensors")


def test_arcface_prefixed_file_is_rejected(arcface_file, tmp_path):
    tensors = {f"net.{k}": v for k, v in load_file(str(arcface_file)).items()}
    save_file(tensors, str(tmp_path / "prefixed.safetensors"))
    with pytest.raises(WeightsError, match=r"prefixed\.safetensors: missing key"):
        load_arcface(tmp_path / "prefixed.safetensors")


def test_arcface_wrong_shape_is_named(arcface_file, tmp_path):
    tensors = load_file(str(arcface_file))
    tensors["fc.bias"] = torch.zeros(256)
    save_file(tensors, str(tmp_path / "shape.safetensors"))
    with pytest.raises(WeightsError, match=r"'fc\.bias' file \(256,\) vs model \(512,\)"):
        load_arcface(tmp_path / "shape.safetensors")


def test_facenet_unexpected_and_missing_keys_are_named(facenet_file, tmp_path):
    state = torch.load(str(facenet_file), map_location="cpu", weights_only=True)
    torch.save({**state, "extra.weight": torch.zeros(1)}, str(tmp_path / "extra.pth"))
    with pytest.raises(WeightsError, match=r"unexpected key 'extra\.weight'"):
        load_facenet(tmp_path / "extra.pth")
    del state["logits.bias"]
    torch.save(state, str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match=r"missing key 'logits\.bias'"):
        load_facenet(tmp_path / "missing.pth")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(WeightsError, match="nowhere.safetensors: file not found"):
        load_arcface(tmp_path / "nowhere.safetensors")


# ---- outputs ------------------------------------------------------------------------------


def test_arcface_embeddings(arcface_file):
    model = load_arcface(arcface_file)
    assert isinstance(model, ArcFaceEmbedder) and not model.training
    chips = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        emb = model(chips)
        # preprocessing is a plain bilinear resize to 112 and x*2-1 in front of the network
        small = torch.nn.functional.interpolate(chips, size=(112, 112), mode="bilinear")
        direct = model.net(small * 2 - 1)
    assert emb.shape == (2, 512) and emb.dtype == torch.float32
    torch.testing.assert_close(emb, direct)
    assert not torch.allclose(emb.norm(dim=1), torch.ones(2))  # not L2-normalised
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)


def test_facenet_embeddings_are_unit_length(facenet_file):
    model = load_facenet(facenet_file)
    assert isinstance(model, FaceNetEmbedder) and not model.training
    chips = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        emb = model(chips)
        direct = model.net(torch.nn.functional.interpolate(chips, size=(112, 112), mode="bilinear"))
    assert emb.shape == (2, 512) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(emb, direct)
    assert not torch.allclose(emb[0], emb[1], atol=1e-3)


def test_embedders_accept_an_empty_batch(arcface_file, facenet_file):
    with torch.inference_mode():
        assert load_arcface(arcface_file)(torch.zeros(0, 3, 256, 256)).shape == (0, 512)
        assert load_facenet(facenet_file)(torch.zeros(0, 3, 256, 256)).shape == (0, 512)
