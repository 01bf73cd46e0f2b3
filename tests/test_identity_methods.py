"""Identity clustering: metrics on hand-worked tables, the linkage method against a plain loop,
the track accumulator streamed vs whole, and quality on synthetic identities vs leader."""

from __future__ import annotations

import numpy as np
import pytest

from facecli.identity.cluster import LeaderClustering, cluster_items
from facecli.identity.constrained import agglomerate
from facecli.identity.metrics import bcubed_prf, clustering_scores, pairwise_prf
from facecli.identity.tracks import TrackAccumulator, track_identities
from tests.support.synthetic_identities import make_faces


def test_metrics_hand_worked():
    truth = np.array([0, 0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1, 1])
    # true pairs {01, 02, 12, 34}; predicted {01, 23, 24, 34}; shared {01, 34}
    pw = pairwise_prf(truth, pred)
    assert (pw.precision, pw.recall, pw.f) == (0.5, 0.5, 0.5)
    # BCubed precision per face: 1, 1, 1/3, 2/3, 2/3; recall: 2/3, 2/3, 1/3, 1, 1
    bc = bcubed_prf(truth, pred)
    assert bc.precision == pytest.approx(11 / 15) and bc.recall == pytest.approx(11 / 15)
    # -1 = a face alone; all alone: precision 1, recall = 3 faces alone of classes 3 and 2
    alone = bcubed_prf(truth, np.full(5, -1))
    assert alone.precision == 1 and alone.recall == pytest.approx((3 * 1 / 3 + 2 * 1 / 2) / 5)
    assert pairwise_prf(truth, np.full(5, -1)).recall == 0
    perfect = clustering_scores(truth, np.array([5, 5, 5, 2, 2]))
    assert perfect["pairwise_f"] == perfect["bcubed_f"] == perfect["ari"] == perfect["nmi"] == 1
    assert perfect["identities"] == 2


def _plain_linkage(sums: np.ndarray, cannot: set, t: float, counts) -> list[int]:
    """Greedy average linkage over all pairs (mean cosine of faces), one best merge at a time."""
    clusters = [{i} for i in range(len(sums))]
    while True:
        best, pair = t, None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                if any((x, y) in cannot or (y, x) in cannot for x in clusters[a] for y in clusters[b]):
                    continue
                sa, sb = sums[list(clusters[a])].sum(0), sums[list(clusters[b])].sum(0)
                cos = sa @ sb / counts[list(clusters[a])].sum() / counts[list(clusters[b])].sum()
                if cos >= best:
                    best, pair = cos, (a, b)
        if pair is None:
            break
        a, b = pair
        clusters[a] |= clusters.pop(b)
    label = [0] * len(sums)
    for k, c in enumerate(sorted(clusters, key=min)):
        for i in c:
            label[i] = k
    return label


def test_linkage_matches_plain_greedy_merging():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 6))
    sums = np.concatenate([centres[i % 4] + 0.6 * rng.normal(size=(1, 6)) for i in range(24)])
    cannot = {(0, 4), (1, 5), (8, 12)}  # same-person pairs forbidden
    counts = rng.integers(1, 5, size=24).astype(float)
    sums = sums / np.linalg.norm(sums, axis=1, keepdims=True) * counts[:, None]  # sums of unit faces
    ij = np.array([(i, j) for i in range(24) for j in range(i + 1, 24)]).T  # complete graph
    cl = np.array(sorted(cannot))
    for t in (0.2, 0.5, 0.8):
        want = _plain_linkage(sums, cannot, t, counts)
        assert _same_partition(agglomerate(sums, (ij[0], ij[1]), cl, t, counts, attach_single_faces=False), want)


def test_single_faces_join_the_nearest_identity_unless_seen_with_it():
    rng = np.random.default_rng(6)
    basis = np.linalg.qr(rng.normal(size=(32, 32)))[0]
    person, away = basis[:, 0], basis[:, 1:3].T  # orthonormal
    faces = person + 0.9 * rng.normal(size=(10, 32)) / np.sqrt(32)
    unit = faces / np.linalg.norm(faces, axis=1, keepdims=True)
    track = unit.sum(0)  # one track of 10 faces
    blurred = 0.5 * person + np.sqrt(0.75) * away  # two degraded faces at cosine 0.5 to the person
    sums = np.stack([track, blurred[0], blurred[1]])
    counts = np.array([10.0, 1.0, 1.0])
    mean_cos = sums[1:] @ track / 10
    centroid_cos = sums[1:] @ track / np.linalg.norm(track)
    t = float((mean_cos.max() + centroid_cos.min()) / 2)
    assert mean_cos.max() < t <= centroid_cos.min()  # alone by mean cosine, close to the centroid
    ij = (np.array([0, 0, 1]), np.array([1, 2, 2]))
    assert len(set(agglomerate(sums, ij, np.zeros((0, 2)), t, counts, attach_single_faces=False))) == 3
    assert len(set(agglomerate(sums, ij, np.zeros((0, 2)), t, counts))) == 1
    # a face seen in the same frame as the track never joins it
    assert len(set(agglomerate(sums, ij, np.array([[0, 2]]), t, counts))) == 2


def _same_partition(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return all(len(set(b[a == v])) == 1 for v in set(a)) and all(len(set(a[b == v])) == 1 for v in set(b))


def test_leader_method_is_todays_rule():
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(40, 8)).astype(np.float32)
    emb[3] = np.nan
    want = LeaderClustering(0.3).assign(emb)
    got = cluster_items(emb, threshold=0.3, method="leader")
    assert [None if g < 0 else f"Person_{g}" for g in got] == want


def test_accumulator_streamed_equals_whole_and_keeps_cross_batch_pairs():
    data = make_faces(people=6, videos=1, frames=60, seed=5)
    emb = data.embeddings.copy()
    emb[::7] = np.nan  # faces without an embedding add nothing
    whole = TrackAccumulator()
    whole.add(data.track, data.frame, emb)
    parts = TrackAccumulator()
    for lo in range(0, len(data), 13):  # batch edges fall inside frames
        parts.add(data.track[lo : lo + 13], data.frame[lo : lo + 13], emb[lo : lo + 13])
    assert np.allclose(whole.sums(), parts.sums(), atol=1e-5)
    assert (whole.cannot_link() == parts.cannot_link()).all() and len(whole.cannot_link())
    for item, track in enumerate(whole.keys()):
        rows = (data.track == track) & np.isfinite(emb).all(1)
        unit = emb[rows] / np.linalg.norm(emb[rows], axis=1, keepdims=True)
        assert np.allclose(whole.means()[item], unit.mean(0) / np.linalg.norm(unit.mean(0)), atol=1e-5)
    pairs = {(data.track[i], data.track[j]) for i in range(len(data)) for j in range(len(data))
             if i < j and data.frame[i] == data.frame[j]}
    keys = whole.keys()
    assert {(keys[a], keys[b]) for a, b in whole.cannot_link()} == {tuple(sorted(p)) for p in pairs}
    labels = track_identities(whole, threshold=0.6)
    assert set(labels) == set(data.track.tolist())


def _same_frame_violations(pred, video, frame) -> int:
    key = video * 10**6 + frame
    seen: set = set()
    bad = 0
    for k, p in zip(key.tolist(), pred.tolist()):
        if p >= 0 and (k, p) in seen:
            bad += 1
        seen.add((k, p))
    return bad


def test_linkage_beats_leader_on_synthetic_identities():
    """Look-alike pairs, 3 appearance conditions per person, 10% degraded faces, 2-4 people per
    frame, people recurring across videos. The default clusters tracks (mean cosine between the
    faces of two groups); leader (today's rule) clusters faces in row order. Both swept."""
    data = make_faces(people=40, videos=40, lookalike_cos=0.7, condition_norm=0.7, noise=0.8, seed=11)
    acc = TrackAccumulator()
    items = acc.add(data.video * 10_000 + data.track, data.video * 10**6 + data.frame, data.embeddings)
    cl = acc.cannot_link()
    faces = TrackAccumulator(singletons=True)  # no tracks: every face an item, same-frame pairs
    face_items = faces.add(None, data.video * 10**6 + data.frame, data.embeddings)
    sweep = np.round(np.arange(0.2, 0.81, 0.05), 2)
    linkage, untracked, leader = [], [], []
    for t in sweep:
        pred = cluster_items(acc.sums(), cl, threshold=float(t), counts=acc.embedded())[items]
        assert _same_frame_violations(pred, data.video, data.frame) == 0
        linkage.append((float(t), clustering_scores(data.person, pred)))
        pred = cluster_items(faces.sums(), faces.cannot_link(), threshold=float(t), counts=faces.embedded())
        assert _same_frame_violations(pred[face_items], data.video, data.frame) == 0
        untracked.append((float(t), clustering_scores(data.person, pred[face_items])))
        lab = LeaderClustering(float(t)).assign(data.embeddings)
        pred = np.array([int(x.split("_")[1]) for x in lab])
        leader.append((float(t), clustering_scores(data.person, pred), _same_frame_violations(pred, data.video, data.frame)))
    best = lambda rows: max(rows, key=lambda r: r[1]["pairwise_f"])  # noqa: E731
    (t_link, s_link), (t_face, s_face) = best(linkage), best(untracked)
    t_lead, s_lead, v_lead = best(leader)
    print(f"\n{len(data)} faces, {len(np.unique(data.person))} people, {acc.num_items} tracks, "
          f"{len(cl)} same-frame track pairs")
    print(f"{'method (best threshold of the sweep)':38s} {'thr':>5s} {'pairF':>6s} {'B3F':>6s} {'ARI':>6s} {'NMI':>6s} {'#ids':>5s}")
    for name, t, s in (("linkage on tracks (default)", t_link, s_link), ("linkage on faces (no track column)", t_face, s_face),
                       ("leader on faces (today's rule)", t_lead, s_lead)):
        print(f"{name:38s} {t:5.2f} {s['pairwise_f']:6.3f} {s['bcubed_f']:6.3f} {s['ari']:6.3f} {s['nmi']:6.3f} {s['identities']:5d}")
    print("sweep, pairwise F: " + " ".join(f"{t:.2f}:{s['pairwise_f']:.2f}/{u['pairwise_f']:.2f}/{lead['pairwise_f']:.2f}"
                                           for (t, s), (_, u), (_, lead, _) in zip(linkage, untracked, leader)))
    print(f"leader at its best threshold puts {v_lead} same-frame faces into one identity")
    for key in ("pairwise_f", "bcubed_f", "ari", "nmi"):
        assert s_link[key] > s_lead[key] + 0.03, key
    assert abs(s_link["identities"] - 38) <= 3
    good = [t for t, s in linkage if s["pairwise_f"] > s_lead["pairwise_f"]]
    assert len(good) >= 2, "the default beats leader's best over a range of thresholds, not one point"


