"""Leader clustering: against a plain reimplementation of the rule, and streamed == whole."""

import numpy as np

from facecli.identity.cluster import LeaderClustering, cluster_identities


def _plain(emb: np.ndarray, threshold: float) -> list:
    cents, counts, labels = [], [], []
    for row in emb:
        if not np.isfinite(row).all():
            labels.append(None)
            continue
        e = row / np.linalg.norm(row)
        sims = [float(c @ e) for c in cents]
        if sims and max(sims) >= threshold:
            k = int(np.argmax(sims))
            counts[k] += 1
            c = cents[k] + (e - cents[k]) / counts[k]
            cents[k] = c / np.linalg.norm(c)
            labels.append(f"Person_{k}")
        else:
            cents.append(e)
            counts.append(1)
            labels.append(f"Person_{len(cents) - 1}")
    return labels


def test_matches_plain_rule_and_streams():
    rng = np.random.default_rng(0)
    people = rng.normal(size=(3, 16))
    emb = np.concatenate([people[i % 3] + 0.3 * rng.normal(size=(1, 16)) for i in range(30)]).astype(np.float32)
    emb[7] = np.nan
    whole = cluster_identities(emb, 0.8)
    assert whole == _plain(emb, 0.8)
    assert whole[7] is None
    assert set(x for x in whole if x) == {"Person_0", "Person_1", "Person_2"}
    streamed = LeaderClustering(0.8)
    parts = streamed.assign(emb[:11]) + streamed.assign(emb[11:])
    assert parts == whole and streamed.num_identities == 3


def test_threshold_controls_merging():
    a = np.array([[1.0, 0.0], [0.9, 0.436]], dtype=np.float32)  # cosine ~0.9
    assert cluster_identities(a, 0.8) == ["Person_0", "Person_0"]
    assert cluster_identities(a, 0.95) == ["Person_0", "Person_1"]
