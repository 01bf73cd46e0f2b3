"""Fixtures for tests that run jobs on a real SLURM cluster.

``slurm_cluster`` (session) finds a usable cluster: the one ``$SLURM_CONF`` names (CI starts it with
scripts/slurm_cluster.sh), else, when the SLURM daemons are installed and we are root, one it starts
itself in a temporary folder and stops at the end (set FACECLI_SLURM_AUTOSTART=0 to forbid that).
Without a usable cluster the tests skip, or fail where CI demands the references
(FACECLI_REQUIRE_REFERENCES=1).

``slurm`` (per test) is a :class:`tests.slurm.cluster.Slurm` on that cluster; jobs a test leaves
behind are cancelled when it ends, so the next test finds an idle node.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm.cluster import Slurm, SlurmError, start_cluster, stop_cluster, usable

DAEMONS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")


def _unusable(reason: str) -> None:
    message = f"no usable SLURM cluster: {reason}"
    if os.environ.get("FACECLI_REQUIRE_REFERENCES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[Path]:
    """The slurm.conf of a cluster whose node is idle."""
    given = os.environ.get("SLURM_CONF")
    if given:
        reason = usable(Path(given))
        if reason:
            _unusable(reason)
        yield Path(given)
        return
    missing = [b for b in DAEMONS if shutil.which(b) is None]
    if missing:
        _unusable(f"SLURM_CONF is not set and {', '.join(missing)} not installed "
                  "(apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        _unusable("SLURM_CONF is not set and starting a cluster needs root")
    if os.environ.get("FACECLI_SLURM_AUTOSTART") == "0":
        _unusable("SLURM_CONF is not set and FACECLI_SLURM_AUTOSTART=0")
    folder = tmp_path_factory.mktemp("slurm-cluster")
    try:
        conf = start_cluster(folder)
    except (SlurmError, OSError) as exc:
        _unusable(str(exc))
    try:
        yield conf
    finally:
        stop_cluster(folder)


@pytest.fixture
def slurm(slurm_cluster) -> Iterator[Slurm]:
    """Submit and watch jobs on the session's cluster; leftover jobs are cancelled afterwards."""
    client = Slurm(slurm_cluster)
    try:
        yield client
    finally:
        client.cancel_all()
