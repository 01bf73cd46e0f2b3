"""Plot one person's emotions, action units and head pose over time from a facecli output.

    python examples/plot_identity.py OUTPUT [--identity Person_0] [--input VIDEO] [-o person.png]

OUTPUT is anything facecli.read takes: an output file, an output folder or a glob. Identity labels
are per output file (per run with ``-o FILE``) unless ``facecli cluster-identities`` has labelled
a whole dataset, so with several videos name the one to plot with ``--input`` (default: the first
video the identity appears in). The default identity is the one with the most faces. Panels:
emotion probabilities, the six AUs with the highest mean (feat-v2 only; the lite set has no AUs),
and Pitch / Yaw / Roll in degrees. Needs matplotlib (the ``plot`` extra: ``pip install -e ".[plot]"``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="facecli output: file, folder or glob")
    parser.add_argument("--identity", help="Identity label to plot (default: the one with the most faces)")
    parser.add_argument("--input", help="The video to plot, as in the 'input' column (default: the first)")
    parser.add_argument("-o", "--png", default="identity.png", help="PNG file to write (default: identity.png)")
    parser.add_argument("--top-aus", type=int, default=6, help="AUs to plot, highest mean first (default: 6)")
    args = parser.parse_args(argv)

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('error: plotting needs matplotlib: pip install matplotlib (or pip install -e ".[plot]")', file=sys.stderr)
        return 2
    import facecli
    from facecli import columns as C

    wanted = ["input", "frame", "time_s", "FaceScore", "Identity", *C.EMOTIONS, *C.AUS, "Pitch", "Yaw", "Roll"]
    try:
        names = set(facecli.dataset(args.output).schema.names)
        df = facecli.read(args.output, columns=[c for c in wanted if c in names], filters=[("FaceScore", ">", 0)])
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if df.empty or df["Identity"].isna().all():
        print(f"error: {args.output}: no faces with an identity label", file=sys.stderr)
        return 1
    identity = args.identity or df["Identity"].value_counts().idxmax()
    rows = df[df["Identity"] == identity]
    if rows.empty:
        print(f"error: {args.output}: no faces labelled {identity}", file=sys.stderr)
        return 1
    video = args.input or rows["input"].iloc[0]
    rows = rows[rows["input"] == video].sort_values("frame")
    if rows.empty:
        print(f"error: {identity} does not appear in {video}", file=sys.stderr)
        return 1
    t = rows["time_s"].to_numpy() if "time_s" in rows else rows["frame"].to_numpy(dtype=float)
    emotions, aus = C.present(rows, C.EMOTIONS), C.present(rows, C.AUS)
    top_aus = list(rows[aus].mean().sort_values(ascending=False).index[: args.top_aus]) if aus else []

    panels = [("emotion probability", emotions)] + ([("AU probability", top_aus)] if top_aus else [])
    panels.append(("head pose (degrees)", C.present(rows, ("Pitch", "Yaw", "Roll"))))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), sharex=True, squeeze=False)
    for ax, (label, cols) in zip(axes[:, 0], panels):
        for col in cols:
            values = rows[col].to_numpy(dtype=float)
            ax.plot(t, np.degrees(values) if "pose" in label else values, label=col, linewidth=1.4)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        if "probability" in label:
            ax.set_ylim(-0.02, 1.02)
    axes[-1, 0].set_xlabel("time (s)" if "time_s" in rows else "frame")
    model_set = df.attrs.get("facecli", {}).get("model_set", "?")
    fig.suptitle(f"{identity} in {video} ({len(rows)} faces, model set {model_set})", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"{args.png}: {identity}, {len(rows)} faces of {video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
