"""Planning: a run's inputs -> an ordered list of outputs (targets), each made of work units.

* ``-o FILE``: one target holding every input of the run (of its shard): one unit per video, or
  units of up to :data:`IMAGE_GROUP` consecutive images.
* ``-o OUTDIR/``: one target per input, mirroring the input's path relative to the inputs'
  common root (``in/a/b/clip.mp4`` -> ``OUTDIR/a/b/clip.parquet``), each a single unit.

Sharding picks every N-th input of the full, deterministic input list before anything else, so
the N shards of a dataset are disjoint and together hold every input exactly once; the common
root and output names are computed from the full list, so they do not depend on the shard.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from facecli.config import FORMAT_SUFFIX, InputKind, RunConfig, Shard
from facecli.io.inputs import InputItem, InputListing, common_root

IMAGE_GROUP = 256  # images per work unit when many images share one output file


@dataclass(frozen=True)
class WorkUnit:
    """One piece of work: one video, or a group of images.

    sources: the input files, in order.
    frames: for images, the ``frame`` number of each source (its place among the output's images).
    position: the unit's index within its target.
    """

    kind: InputKind
    sources: tuple[str, ...]
    frames: tuple[int, ...] = ()
    position: int = 0


@dataclass(frozen=True)
class OverlayTarget:
    """Where the overlays of one output go (drawn from the finished output, see pipeline.overlays).

    videos: (input, its overlay video) for every video of the output.
    image_dir: annotated images go to ``image_dir / (image path relative to image_root)``.
    mesh: draw the 478-point mesh instead of the 68 landmarks.
    """

    videos: tuple[tuple[str, Path], ...] = ()
    image_dir: Path | None = None
    image_root: Path | None = None
    mesh: bool = False


@dataclass(frozen=True)
class Target:
    """One output file and the units whose rows it holds, in order; its overlays, if asked for."""

    output: Path
    units: tuple[WorkUnit, ...]
    overlay: OverlayTarget | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(s for u in self.units for s in u.sources)


@dataclass(frozen=True)
class Plan:
    """What a run (or its shard) will do.

    targets: outputs to make, in order.
    failures: inputs of this shard that cannot be used at all (missing, empty folder, ...).
    shard: the shard, or None.
    total_inputs: inputs before sharding (usable or not).
    """

    targets: tuple[Target, ...]
    failures: tuple[InputItem, ...]
    shard: Shard | None
    total_inputs: int

    @property
    def inputs(self) -> int:
        return sum(len(t.sources) for t in self.targets) + len(self.failures)


def shard_items(items: tuple[InputItem, ...], shard: Shard | None) -> tuple[InputItem, ...]:
    """Every ``shard.count``-th item starting at ``shard.index`` (all items without a shard)."""
    if shard is None:
        return items
    return items[shard.index :: shard.count]


def sharded_output(output: Path, shard: Shard | None) -> Path:
    """``out.parquet`` -> ``out.shard-3-of-10.parquet`` for shard 3/10, so array tasks never share a file."""
    if shard is None:
        return output
    return output.with_name(f"{output.stem}.shard-{shard.index}-of-{shard.count}{output.suffix}")


def mirrored_outputs(items: tuple[InputItem, ...], out_dir: Path, fmt: str) -> dict[str, Path]:
    """Output file of every usable item: its path relative to the items' common root, in ``out_dir``."""
    return mirrored_paths(items, out_dir, FORMAT_SUFFIX[fmt])


def mirrored_paths(items: tuple[InputItem, ...], out_dir: Path, suffix: str) -> dict[str, Path]:
    """``out_dir`` / (every usable item's path relative to the items' common root), with ``suffix``.

    Two inputs that would share a name (``clip.mp4`` and ``clip.mov``) keep their own suffix
    (``clip.mp4.parquet``, ``clip.mov.parquet``).
    """
    usable = [item for item in items if item.error is None]
    root = common_root(usable)
    rel = {item.path: Path(os.path.relpath(os.path.abspath(item.path), root)) for item in usable}
    stems = Counter(str(r.with_suffix("")) for r in rel.values())
    out = {}
    for path, r in rel.items():
        name = r.with_suffix(suffix) if stems[str(r.with_suffix(""))] == 1 else r.with_name(r.name + suffix)
        out[path] = out_dir / name
    return out


def plan_run(config: RunConfig, listing: InputListing) -> Plan:
    """Targets and failures for the run's shard.

    Args:
        config: the run's settings (output, kind, shard).
        listing: every input of the run, in order (see io.inputs.expand_inputs).
    """
    mine = shard_items(listing.items, config.shard)
    failures = tuple(item for item in mine if item.error is not None)
    usable = [item for item in mine if item.error is None]
    targets: list[Target] = []
    overlay = _overlay_plan(config, listing)
    if config.output_is_dir:
        outputs = mirrored_outputs(listing.items, config.output, config.output_format)
        for item in usable:
            unit = WorkUnit(config.kind, (item.path,), (0,) if config.kind == "image" else ())
            targets.append(Target(outputs[item.path], (unit,), overlay(unit.sources)))
    elif usable:
        output = sharded_output(config.output, config.shard)
        if config.kind == "video":
            units = tuple(WorkUnit("video", (item.path,), (), k) for k, item in enumerate(usable))
        else:
            units = tuple(
                WorkUnit(
                    "image",
                    tuple(item.path for item in usable[start : start + IMAGE_GROUP]),
                    tuple(range(start, min(start + IMAGE_GROUP, len(usable)))),
                    k,
                )
                for k, start in enumerate(range(0, len(usable), IMAGE_GROUP))
            )
        targets.append(Target(output, units, overlay(tuple(item.path for item in usable))))
    return Plan(tuple(targets), failures, config.shard, len(listing.items))


def _overlay_plan(config: RunConfig, listing: InputListing):
    """A function: a target's sources -> its OverlayTarget (None without --overlay).

    Overlay paths mirror the inputs from their common root over the whole listing, so they do not
    depend on the shard; overlay videos are ``.mp4`` in a folder, or the ``--overlay`` file itself.
    """
    if config.overlay is None:
        return lambda sources: None
    mesh = config.overlay_mesh
    if config.kind == "image":
        root = Path(common_root(listing.usable))
        return lambda sources: OverlayTarget(image_dir=config.overlay, image_root=root, mesh=mesh)
    if config.overlay_is_dir:
        paths = mirrored_paths(listing.items, config.overlay, ".mp4")
    else:
        paths = {item.path: config.overlay for item in listing.usable}
    return lambda sources: OverlayTarget(videos=tuple((s, paths[s]) for s in sources), mesh=mesh)
