"""feat-v2 multitask model: config validation, published key layout, strict loading, outputs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from facecli.models.multitask import (
    AU_NAMES_20,
    EMOTION_NAMES_7,
    EMOTION_NAMES_8,
    FaceMultitaskV2,
    MultitaskConfig,
    UnsupportedModelConfig,
    load_multitask,
)
from facecli.models.multitask.gaze import bin_centers, rotation_matrix, yaw_pitch_from_direction
from facecli.models.multitask.graph import knn_adjacency
from facecli.models.weights import WeightsError
from tests.support.multitask_weights import (
    KEY_LISTS,
    SPEC_KEYS_DIR,
    V25_CONFIG,
    V28_CONFIG,
    model_key_table,
    randomize_,
    read_key_list,
    write_random_multitask,
)

# ---------------------------------------------------------------- config


def test_from_metadata_reads_json_ignores_unknown_and_keeps_defaults():
    text = json.dumps({**V28_CONFIG, "lr": 3e-4, "gaze_bin_lo_deg": -90})
    config = MultitaskConfig.from_metadata(text)
    assert config == MultitaskConfig.from_metadata(json.loads(text))
    assert (config.n_au, config.gaze_bins, config.gaze_eye_roi) == (20, 180, True)
    assert config.gaze_bin_lo_deg == -90.0 and isinstance(config.gaze_bin_lo_deg, float)
    assert config.knn_k == 4 and config.unified_lmk_dim == 256 and config.gaze_hidden == 0
    assert config.au_names == AU_NAMES_20
    assert config.emotion_names == EMOTION_NAMES_7
    assert MultitaskConfig(n_au=20, n_emotion=8).emotion_names == EMOTION_NAMES_8
    config.check_supported()


@pytest.mark.parametrize(
    "metadata, needle",
    [("{not json", "JSON"), ("[1, 2]", "object"), ({"n_au": "20"}, "n_au"), ({"drop_mefl": 1}, "drop_mefl")],
)
def test_from_metadata_rejects_invalid(metadata, needle):
    with pytest.raises(WeightsError, match=needle):
        MultitaskConfig.from_metadata(metadata)


@pytest.mark.parametrize(
    "change, flag",
    [
        ({"use_head_v3": False}, "use_head_v3"),
        ({"drop_mefl": False}, "drop_mefl"),
        ({"use_head_v2": True}, "use_head_v2"),
        ({"mesh_normalized": False}, "mesh_normalized"),
        ({"n_mesh": 468}, "n_mesh"),
        ({"backbone": "convnext_tiny.fb_in1k"}, "backbone"),
        ({"image_size": 256}, "image_size"),
        ({"n_au": 24}, "n_au"),
        ({"n_emotion": 6}, "n_emotion"),
        ({"n_blendshape": 0}, "n_blendshape"),
        ({"mefl_channels": 256}, "mefl_channels"),
        ({"knn_k": 20}, "knn_k"),
        ({"gaze_bins": 90, "gaze_head_frame": True}, "gaze_bins"),
        ({"gaze_bins": 90, "gaze_bin_lo_deg": 10.0, "gaze_bin_hi_deg": -10.0}, "gaze_bin_lo_deg"),
        ({"gaze_hidden": -1}, "gaze_hidden"),
    ],
)
def test_unsupported_config_names_the_flag(change, flag):
    config = MultitaskConfig.from_metadata({**V25_CONFIG, **change})
    with pytest.raises(UnsupportedModelConfig, match=flag) as info:
        FaceMultitaskV2(config)
    assert isinstance(info.value, WeightsError)
    assert f"{flag}={change[flag]!r}" in str(info.value)


# ---------------------------------------------------------------- published key layout


@pytest.mark.parametrize("version, config", [("v25", V25_CONFIG), ("v28", V28_CONFIG)])
def test_key_set_equals_spec_key_list(version, config):
    path = SPEC_KEYS_DIR / KEY_LISTS[version]  # copied from the spec into tests/data/keys
    header_config, expected = read_key_list(path)
    assert header_config == config
    ours = model_key_table(FaceMultitaskV2(MultitaskConfig.from_metadata(config)))
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


# ---------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def v25_file(tmp_path_factory):
    return write_random_multitask(tmp_path_factory.mktemp("multitask") / "v25.safetensors", V25_CONFIG, seed=3)


def _rewrite(src, dst, edit_tensors=None, metadata=None):
    tensors = load_file(str(src))
    if edit_tensors is not None:
        edit_tensors(tensors)
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def test_load_roundtrip_is_exact_and_in_eval_mode(v25_file):
    model = load_multitask(v25_file)
    assert not model.training
    stored = load_file(str(v25_file))
    loaded = model.state_dict()
    assert set(stored) == set(loaded)
    assert all(torch.equal(stored[k], loaded[k]) for k in stored)


def test_load_missing_key_names_file_and_key(v25_file, tmp_path):
    bad = _rewrite(v25_file, tmp_path / "missing.safetensors", lambda t: t.pop("fgg.W_self.weight"),
                   {"config": json.dumps(V25_CONFIG)})
    with pytest.raises(WeightsError, match=r"missing key.*fgg\.W_self\.weight") as info:
        load_multitask(bad)
    assert "missing.safetensors" in str(info.value)


def test_load_unexpected_key_names_it(v25_file, tmp_path):
    bad = _rewrite(v25_file, tmp_path / "extra.safetensors",
                   lambda t: t.__setitem__("mefl.alpha_fam", torch.zeros(())), {"config": json.dumps(V25_CONFIG)})
    with pytest.raises(WeightsError, match=r"unexpected key.*mefl\.alpha_fam"):
        load_multitask(bad)


def test_load_v25_tensors_under_v28_config_fails(v25_file, tmp_path):
    bad = _rewrite(v25_file, tmp_path / "mixed.safetensors", metadata={"config": json.dumps(V28_CONFIG)})
    with pytest.raises(WeightsError, match=r"gaze"):
        load_multitask(bad)


@pytest.mark.parametrize(
    "metadata, error, needle",
    [
        (None, WeightsError, "'config'"),
        ({"config": "{oops"}, WeightsError, "JSON"),
        ({"config": json.dumps({**V25_CONFIG, "drop_mefl": False})}, UnsupportedModelConfig, "drop_mefl=False"),
    ],
)
def test_load_bad_config_names_the_file(v25_file, tmp_path, metadata, error, needle):
    bad = _rewrite(v25_file, tmp_path / "badconfig.safetensors", metadata=metadata)
    with pytest.raises(error, match=needle) as info:
        load_multitask(bad)
    assert "badconfig.safetensors" in str(info.value)


# ---------------------------------------------------------------- outputs

GAZE_VARIANTS = {
    "v25": V25_CONFIG,
    "v28": V28_CONFIG,
    "hidden_head_frame": {**V25_CONFIG, "gaze_eye_roi": True, "gaze_hidden": 32, "gaze_head_frame": True},
    "pose6d_bins_8emotions": {
        **V25_CONFIG, "gaze_pose_6d": True, "gaze_bins": 60, "gaze_bin_lo_deg": -60.0, "gaze_bin_hi_deg": 60.0,
        "n_emotion": 8, "emotion_use_au_prob": False,
    },
}


@pytest.mark.parametrize("name", list(GAZE_VARIANTS))
def test_predict_shapes_and_ranges(name):
    config = MultitaskConfig.from_metadata(GAZE_VARIANTS[name])
    model = randomize_(FaceMultitaskV2(config), seed=5).eval()
    chips = torch.rand(3, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    out = model.predict(chips)
    n = 3
    assert len(out) == n
    assert out.au.shape == (n, 20) and out.au_names == AU_NAMES_20
    assert out.emotion.shape == (n, config.n_emotion) and len(out.emotion_names) == config.n_emotion
    assert out.valence.shape == out.arousal.shape == (n,)
    assert out.gaze.shape == (n, 2) and out.pose.shape == (n, 6)
    assert out.mesh.shape == (n, 478, 3) and out.blendshapes.shape == (n, 52)
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in vars(out).values() if torch.is_tensor(t))
    assert 0 <= out.au.min() and out.au.max() <= 1
    assert torch.allclose(out.emotion.sum(-1), torch.ones(n)) and (out.emotion >= 0).all()
    assert out.valence.abs().max() <= 1 and out.arousal.abs().max() <= 1
    assert 0 <= out.blendshapes.min() and out.blendshapes.max() <= 1
    if config.gaze_bins:  # an expectation over bin centres stays inside the bin range
        assert out.gaze.abs().max() <= math.radians(60)
    if config.gaze_head_frame:  # yaw in (-pi, pi], pitch in [-pi/2, pi/2]
        assert out.gaze[:, 0].abs().max() <= math.pi and out.gaze[:, 1].abs().max() <= math.pi / 2
    # No coupling across the batch: one chip alone gives the same prediction.
    single = model.predict(chips[1:2])
    assert torch.allclose(single.gaze, out.gaze[1:2], atol=1e-5)
    assert torch.allclose(single.au, out.au[1:2], atol=1e-5)


def test_preprocess_resizes_whole_chip_and_normalises():
    model = FaceMultitaskV2(MultitaskConfig.from_metadata(V25_CONFIG))
    chips = torch.zeros(1, 3, 256, 256)
    chips[..., :128] = 1.0  # left half white: a resize keeps the edge at the middle, a crop would not
    x = model.preprocess(chips)
    assert x.shape == (1, 3, 224, 224)
    white = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[0, :, 100, 0], white) and torch.allclose(x[0, :, 100, 110], white)
    assert (x[0, :, 100, 114] < 0).all()


# ---------------------------------------------------------------- pure functions


def test_rotation_matrix_against_known_rotations():
    quarter_z = rotation_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]]))[0]
    assert torch.allclose(quarter_z @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    rvec = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    r = rotation_matrix(rvec)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(5), atol=1e-5)
    assert torch.allclose(r @ rvec.unsqueeze(-1), rvec.unsqueeze(-1), atol=1e-5)  # the axis is fixed
    assert torch.allclose(rotation_matrix(torch.zeros(1, 3)), torch.eye(3)[None])


def test_yaw_pitch_inverts_direction_convention():
    yaw, pitch = torch.tensor([0.3, -1.2, 2.5]), torch.tensor([0.1, -0.7, 0.4])
    direction = torch.stack([torch.sin(yaw) * torch.cos(pitch), torch.sin(pitch), -torch.cos(yaw) * torch.cos(pitch)], -1)
    assert torch.allclose(yaw_pitch_from_direction(3.0 * direction), torch.stack([yaw, pitch], -1), atol=1e-5)


def test_bin_centers_are_midpoints_in_radians():
    centres = bin_centers(4, -40.0, 40.0)
    assert torch.allclose(centres, torch.deg2rad(torch.tensor([-30.0, -10.0, 10.0, 30.0])))


def test_knn_adjacency_matches_loop():
    nodes = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(2))
    k = 2
    adjacency = knn_adjacency(nodes, k)
    for b in range(2):
        unit = nodes[b] / nodes[b].norm(dim=-1, keepdim=True)
        for i in range(6):
            sims = [float(unit[i] @ unit[j]) for j in range(6)]
            chosen = sorted(range(6), key=lambda j: -sims[j])[: k + 1]
            neighbours = [j for j in chosen if j != i]
            expected = torch.zeros(6)
            expected[neighbours] = 1.0 / len(neighbours)
            assert torch.allclose(adjacency[b, i], expected, atol=1e-6)


@pytest.mark.parametrize("channels_last", [True, False])
def test_grn_matches_timm(channels_last):
    from timm.layers.grn import GlobalResponseNorm as TimmGRN

    from facecli.models.multitask.grn import GlobalResponseNorm

    torch.manual_seed(0)
    ref = TimmGRN(96, channels_last=channels_last)
    torch.nn.init.normal_(ref.weight)
    torch.nn.init.normal_(ref.bias)
    ours = GlobalResponseNorm(96, channels_last=channels_last)
    ours.load_state_dict(ref.state_dict())
    ref.requires_grad_(False)
    ours.requires_grad_(False)
    x = torch.randn(3, 14, 14, 96) * 4
    x = x if channels_last else x.permute(0, 3, 1, 2)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xb = x.bfloat16()
        got, want = ours(xb), ref(xb).bfloat16()  # timm's is float32 under autocast; the next Linear rounds it
    assert got.dtype == torch.bfloat16
    assert float((got.float() - want.float()).abs().max()) <= 2 * float(want.float().abs().max()) / 128  # 2 ulp


@pytest.mark.parametrize("arch, blocks", [("convnextv2_atto", 2 + 2 + 6 + 2), ("convnextv2_tiny", 3 + 3 + 9 + 3)])
def test_replace_grn_swaps_every_block_keeping_keys_and_outputs(arch, blocks):
    import timm
    from timm.layers.grn import GlobalResponseNorm as TimmGRN

    from facecli.models.multitask.grn import replace_grn

    torch.manual_seed(0)
    backbone = timm.create_model(arch, pretrained=False, features_only=True).eval()
    for m in backbone.modules():
        if isinstance(m, TimmGRN):  # timm starts them at zero (an identity): make them do something
            torch.nn.init.normal_(m.weight, std=0.5)
            torch.nn.init.normal_(m.bias, std=0.5)
    state = backbone.state_dict()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        before = backbone(x)
    assert replace_grn(backbone) == blocks
    assert not any(isinstance(m, TimmGRN) for m in backbone.modules())
    backbone.load_state_dict(state, strict=True)
    with torch.inference_mode():
        after = backbone(x)
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
