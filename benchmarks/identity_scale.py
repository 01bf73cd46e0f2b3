"""Identity clustering at dataset scale: time, peak memory and quality for 1e5 .. 1e6 faces.

    .venv/bin/python benchmarks/identity_scale.py [--faces 100000 1000000] [--dim 128]
        [--track-frames 5 40] [--no-tracks] [--exact-max 100000] [--json out.json]

Synthetic faces (tests/support/synthetic_identities.py: look-alike pairs, appearance conditions,
degraded faces, several people per frame, people recurring across videos) are generated in
memory, then, timed separately: the track accumulator (what the first pass of
``cluster-identities`` does per file), the kNN graph and the constrained linkage, and today's
leader rule over the faces in row order as the baseline measured in the same run. Peak RSS is
the process's high-water mark after each size (``resource.getrusage``), generation included.
Quality: pairwise F, BCubed F, ARI, NMI and the number of identities against the truth.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facecli.identity.cluster import LeaderClustering, cluster_items  # noqa: E402
from facecli.identity.metrics import clustering_scores  # noqa: E402
from facecli.identity.tracks import TrackAccumulator  # noqa: E402
from tests.support.synthetic_identities import make_faces  # noqa: E402


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run(n_faces: int, args: argparse.Namespace) -> dict:
    videos = max(1, n_faces // 120)  # about 120 faces per video (3 people, ~2 tracks each)
    people = max(40, n_faces // 500)
    t0 = time.perf_counter()
    data = make_faces(people=people, videos=videos, dim=args.dim, segment_frames=tuple(args.track_frames),
                      lookalike_cos=0.7, condition_norm=0.7, noise=0.8, seed=1)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = TrackAccumulator(singletons=args.no_tracks)
    frame_key = data.video * 10**6 + data.frame
    track = None if args.no_tracks else data.video * 10_000 + data.track
    step = 65_536
    items = np.concatenate([acc.add(None if track is None else track[lo:lo + step], frame_key[lo:lo + step],
                                    data.embeddings[lo:lo + step]) for lo in range(0, len(data), step)])
    cl = acc.cannot_link()
    acc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = cluster_items(acc.sums(), cl, threshold=args.threshold, counts=acc.embedded(), exact_max=args.exact_max)
    link_s = time.perf_counter() - t0
    pred = labels[items]
    rss_after_linkage = _rss_gb()
    quality = clustering_scores(data.person, pred)
    lead_s, lead_q = None, None
    if len(data) <= args.leader_max:
        t0 = time.perf_counter()
        leader = LeaderClustering(args.leader_threshold)
        lead = np.concatenate([[int(x[7:]) for x in leader.assign(data.embeddings[lo:lo + step])]
                               for lo in range(0, len(data), step)])
        lead_s = round(time.perf_counter() - t0, 2)
        lead_q = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in clustering_scores(data.person, lead).items()}
    return {
        "faces": len(data), "people": int(len(np.unique(data.person))), "videos": videos, "items": acc.num_items,
        "cannot_link_pairs": int(len(cl)), "dim": args.dim, "exact_knn": acc.num_items <= args.exact_max,
        "generate_s": round(gen_s, 1), "accumulate_s": round(acc_s, 2), "linkage_s": round(link_s, 2),
        "leader_s": lead_s,
        "leader_over_linkage_time": None if lead_s is None else round(lead_s / max(link_s + acc_s, 1e-9), 2),
        "peak_rss_gb_after_linkage": round(rss_after_linkage, 2), "peak_rss_gb": round(_rss_gb(), 2),
        "linkage": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in quality.items()},
        "leader": lead_q,
        "load_avg_1min": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--track-frames", type=int, nargs=2, default=[5, 40])
    p.add_argument("--no-tracks", action="store_true", help="every face an item (outputs without a track column)")
    p.add_argument("--threshold", type=float, default=0.35, help="linkage threshold (best of the synthetic sweep)")
    p.add_argument("--leader-threshold", type=float, default=0.45, help="leader threshold (best of the sweep)")
    p.add_argument("--exact-max", type=int, default=100_000)
    p.add_argument("--leader-max", type=int, default=200_000, help="run the leader baseline up to this many faces")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = []
    for n in args.faces:
        r = run(n, args)
        results.append(r)
        print(json.dumps(r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
