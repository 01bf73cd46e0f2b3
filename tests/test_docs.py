"""Every command in README.md and docs/*.md, run the way a newcomer would run it.

Fenced blocks labelled ``bash``, ``sh``, ``shell`` or ``console`` are shell commands and run one
by one; ``python`` blocks run too. Each document runs in its own copy of a sandbox folder that
holds the example files the documents use (HOME points there, so ``~`` does too):

    examples/astronaut.mp4       the first 4 frames of the shipped clip; examples/*: the repo's scripts
    clip.mp4                     the same 4 frames
    videos/a.mp4, videos/session2/b.mp4   3 frames each of the astronaut's face
    videos.txt                   those two paths, one per line
    photos/astronaut.jpg, photos/trip/portrait.png
    out/astronaut.parquet        a lite run of examples/astronaut.mp4 (what the quickstart makes), with
    out/_manifest.jsonl          its manifest line
    ~/facecli-weights/           random feat-v2 weights in the published layout

The hub is offline, so ``--models auto`` means lite. Plain ``facecli ...`` lines run in this
process (no interpreter start-up per command); anything with shell syntax runs in bash, with
``facecli`` and ``python`` on PATH running this checkout. Commands that cannot run in a test are
listed in EXEMPT with the reason, and still checked: facecli's options are parsed as the command
line would parse them, scripts are syntax-checked, make targets dry-run, pip extras looked up.
A block labelled ``bash file=PATH`` is a listing of PATH and must equal it. Relative links must
point at files that exist.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image
from typer.testing import CliRunner

from facecli.cli import app
from tests.conftest import write_video
from tests.paths import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
# links to documents other branches are writing (the lead merges them); each with its reason
PENDING_LINKS: dict[str, str] = {}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    info: str  # the rest of the info string (e.g. "file=examples/x.sbatch")
    text: str


def blocks(doc: Path) -> list[Block]:
    out, inside, start, lang, info, body = [], False, 0, "", "", []
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        fence = re.match(r"^```\s*(\S*)\s*(.*)$", line)
        if fence and not inside:
            inside, start, lang, info, body = True, n, fence.group(1).lower(), fence.group(2).strip(), []
        elif line.startswith("```") and inside:
            out.append(Block(doc, start, lang, info, "\n".join(body) + "\n"))
            inside = False
        elif inside:
            body.append(line)
    return out


def commands(block: Block) -> list[tuple[int, str]]:
    """(line number, command) of a shell block; continuation lines joined, comment lines dropped."""
    out, pending, first = [], "", 0
    for k, raw in enumerate(block.text.splitlines()):
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            first = block.line + 1 + k
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((first, (pending + line).strip()))
        pending = ""
    return out


# -- exempt commands, each with why it cannot run here and what is checked instead ---------------


def parse_facecli(argv: list[str]) -> None:
    """Parse a facecli command line as the CLI would (options, types, subcommands), run nothing."""
    import typer

    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("facecli", list(argv))
    while hasattr(cmd, "resolve_command"):
        rest = list(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])) + list(ctx.args)
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)


def check_pip(command: str, sandbox: Path) -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for token in shlex.split(command, comments=True)[2:]:
        m = re.fullmatch(r"\.\[(\w+)\]", token)
        if m:
            assert m.group(1) in extras, f"pyproject.toml has no extra {m.group(1)!r}"
        elif not token.startswith("-") and token != ".":
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+(==[\w.]+)?", token), f"not a requirement: {token}"


def check_make(command: str, sandbox: Path) -> None:
    proc = subprocess.run(["make", "-n", "-C", str(REPO), *shlex.split(command, comments=True)[1:]],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def check_sbatch(command: str, sandbox: Path) -> None:
    tokens = shlex.split(command, comments=True)
    script = next(sandbox / t for t in tokens[1:] if not t.startswith("-"))
    assert script.is_file(), f"{script} does not exist"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH"):
            assert re.fullmatch(r"#SBATCH --[a-z-]+(=\S+)?", line), line


def check_facecli(command: str, sandbox: Path) -> None:
    parse_facecli([os.path.expanduser(t) for t in shlex.split(command, comments=True)[1:]])


def check_script_help(command: str, sandbox: Path) -> None:
    script = shlex.split(command, comments=True)[1]
    proc = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def check_benchmark(command: str, sandbox: Path) -> None:
    """A benchmark script: it runs with --help, and every option the command uses is one it has."""
    tokens = shlex.split(command, comments=True)
    script = next(t for t in tokens if t.endswith(".py"))
    proc = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for option in (t for t in tokens if t.startswith("--")):
        assert re.search(rf"{re.escape(option)}\b", proc.stdout), f"{script} has no option {option}"


def check_gpu_script(command: str, sandbox: Path) -> None:
    """A GPU benchmark script: it exists and parses, and every option it passes is one that the
    command it passes it to has (benchmarks/compare_pyfeat.py's, facecli bench's otherwise)."""
    import typer

    script = REPO / shlex.split(command, comments=True)[0]
    assert script.is_file(), f"{script} does not exist"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    bench = typer.main.get_command(app).commands["bench"]
    known = {opt for param in bench.params for opt in param.opts}
    helper = subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare_pyfeat.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert helper.returncode == 0, helper.stderr
    known_helper = set(re.findall(r"--[a-z][a-z-]+", helper.stdout))
    code = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
    used, used_helper = set(), set()
    for line in code.replace("\\\n", " ").splitlines():  # one command per line, continuations joined
        options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", line))
        (used_helper if "compare_pyfeat.py" in line else used).update(options)
    assert used and used <= known, f"{script.name}: not facecli bench options: {sorted(used - known)}"
    unknown = sorted(used_helper - known_helper)
    assert used_helper and not unknown, f"{script.name}: not compare_pyfeat.py options: {unknown}"


EXEMPT = [
    (r"^pip install", "installs packages from the network", check_pip),
    (r"^make (demo|test|ref-envs)\b", "builds a virtual environment or runs the whole suite", check_make),
    (r"^sbatch ", "needs a SLURM cluster (tests/slurm runs facecli under sbatch; test_slurm_script_as_array_tasks "
     "runs this script as two array tasks)", check_sbatch),
    (r"^facecli models download", "downloads from the Hugging Face Hub, which tests never reach", check_facecli),
    (r"^facecli bench", "a timing run of the whole example clip (minutes)", check_facecli),
    (r"^(PYTHONPATH=\S+ )?python benchmarks/\w+\.py", "a benchmark: minutes of timing, and the peers' reference "
     "environments (py-feat, MediaPipe)", check_benchmark),
    (r"^benchmarks/gpu_bench\.sh", "times a CUDA GPU, which CI machines do not have", check_gpu_script),
    (r"^python scripts/convert_lite\.py", "needs the original model files (tests/lite/test_convert_reproducible.py "
     "runs it)", check_script_help),
]


def exemption(command: str):
    return next(((reason, check) for pattern, reason, check in EXEMPT if re.search(pattern, command)), None)


# -- the sandbox -------------------------------------------------------------------------------


def _face_frames(astronaut: np.ndarray, shift: int, n: int) -> list[np.ndarray]:
    return [np.ascontiguousarray(astronaut[20 + shift + 2 * i: 276 + shift + 2 * i, 100 + i: 356 + i][::2, ::2])
            for i in range(n)]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory, astronaut, camera, featv2_weights) -> Path:
    import av

    root = tmp_path_factory.mktemp("docs") / "sandbox"
    shutil.copytree(REPO / "examples", root / "examples")
    with av.open(str(REPO / "examples" / "astronaut.mp4")) as box:
        head = [f.to_ndarray(format="rgb24") for _, f in zip(range(4), box.decode(video=0))]
    write_video(root / "examples" / "astronaut.mp4", head, fps=15)
    shutil.copy(root / "examples" / "astronaut.mp4", root / "clip.mp4")
    (root / "videos" / "session2").mkdir(parents=True)
    write_video(root / "videos" / "a.mp4", _face_frames(astronaut, 0, 3), fps=10)
    write_video(root / "videos" / "session2" / "b.mp4", _face_frames(astronaut, 12, 3), fps=10)
    (root / "videos.txt").write_text("videos/a.mp4\nvideos/session2/b.mp4\n")
    (root / "photos" / "trip").mkdir(parents=True)
    Image.fromarray(astronaut[::2, ::2]).save(root / "photos" / "astronaut.jpg", quality=92)
    Image.fromarray(astronaut[:300:2, 80:380:2]).save(root / "photos" / "trip" / "portrait.png")
    shutil.copytree(featv2_weights, root / "facecli-weights")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, ["video", "examples/astronaut.mp4", "-o", "out/", "--models", "lite", "-q"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="session")
def shims(tmp_path_factory) -> Path:
    """``facecli`` and ``python`` on PATH, both running this checkout with this interpreter."""
    folder = tmp_path_factory.mktemp("bin")
    for name, target in (("facecli", f'"{sys.executable}" -m facecli'), ("python", f'"{sys.executable}"')):
        (folder / name).write_text(f"#!/bin/sh\nexec {target} \"$@\"\n")
        (folder / name).chmod(0o755)
    return folder


@pytest.fixture
def workdir(sandbox, shims, tmp_path, monkeypatch) -> Path:
    work = tmp_path / "sandbox"
    shutil.copytree(sandbox, work, symlinks=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for var in [v for v in os.environ if v.startswith("SLURM_")]:
        monkeypatch.delenv(var)
    return work


def _in_process(command: str) -> list[str] | None:
    """The arguments of a plain ``facecli ...`` line (no shell syntax), else None."""
    if re.search(r"[|;&<>$`(){}]", command.split(" #")[0]):
        return None
    tokens = shlex.split(command, comments=True)
    if not tokens or tokens[0] != "facecli":
        return None
    return [os.path.expanduser(t) if t.startswith("~") else t for t in tokens[1:]]


def _export(command: str, monkeypatch) -> bool:
    """Apply an ``export A=B ...`` line to the environment of the commands after it."""
    tokens = shlex.split(command, comments=True)
    if not tokens or tokens[0] != "export":
        return False
    for token in tokens[1:]:
        name, _, value = token.partition("=")
        monkeypatch.setenv(name, os.path.expanduser(os.path.expandvars(value)))
    return True


def run_command(command: str, where: str, work: Path) -> None:
    args = _in_process(command)
    if args is not None:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, f"{where}: `{command}` exited {result.exit_code}:\n{result.output[-3000:]}"
        return
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=work, capture_output=True, text=True,
                          timeout=600)
    output = proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"{where}: `{command}` exited {proc.returncode}:\n{output}"


def run_python(block: Block, namespace: dict) -> None:
    code = compile(block.text, f"{block.doc.relative_to(REPO)}:{block.line}", "exec")
    exec(code, namespace)  # noqa: S102 - the documentation's own example code


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_runs(doc, workdir, monkeypatch):
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for block in blocks(doc):
        where = f"{doc.relative_to(REPO)}:{block.line}"
        if block.info.startswith("file="):
            listed = REPO / block.info.split("=", 1)[1]
            assert block.text == listed.read_text(), f"{where}: the listing differs from {listed.relative_to(REPO)}"
            continue
        if block.lang == "python":
            run_python(block, namespace)
            ran += 1
        elif block.lang in SHELL:
            for line, command in commands(block):
                exempt = exemption(command)
                if _export(command, monkeypatch):
                    pass
                elif exempt is None:
                    started = time.perf_counter()
                    run_command(command, f"{doc.relative_to(REPO)}:{line}", workdir)
                    print(f"{time.perf_counter() - started:6.1f} s  {command}")
                else:
                    exempt[1](command, workdir)
                ran += 1
    import matplotlib.pyplot as plt

    plt.close("all")
    print(f"{doc.relative_to(REPO)}: {ran} commands and blocks")


def test_links_point_at_files():
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            if Path(target).name in PENDING_LINKS:
                continue
            assert (doc.parent / target).exists(), f"{doc.relative_to(REPO)}: link to missing {target}"


def test_exemptions_are_used_and_checked(sandbox):
    """Every EXEMPT pattern matches some documented command (no stale entries), and the checks
    catch what they are for: an unknown option, a missing extra, a broken script."""
    used = {pattern: False for pattern, _, _ in EXEMPT}
    for doc in DOCS:
        for block in blocks(doc):
            if block.lang in SHELL and not block.info.startswith("file="):
                for _, command in commands(block):
                    for pattern in used:
                        used[pattern] |= bool(re.search(pattern, command))
    assert all(used.values()), [p for p, u in used.items() if not u]
    with pytest.raises(Exception, match="No such option"):
        check_facecli("facecli models download --to x --no-such-option", sandbox)
    with pytest.raises(AssertionError, match="no extra"):
        check_pip('pip install -e ".[nonexistent]"', sandbox)
    check_facecli("facecli bench --frames 4", sandbox)


def test_slurm_script_as_array_tasks(sandbox, shims, tmp_path, monkeypatch):
    """examples/slurm_array.sbatch run by bash as tasks 0 and 1 of a 2-task array: each task takes
    its share, together they make every output; a rerun of a task skips its finished output."""
    work = tmp_path / "w"
    shutil.copytree(sandbox, work, symlinks=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PATH=f"{shims}{os.pathsep}{env['PATH']}", HOME=str(work), PYTHONPATH=str(REPO),
               SLURM_ARRAY_TASK_COUNT="2", SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX="1")
    script = work / "examples" / "slurm_array.sbatch"
    made = []
    for task in ("0", "1"):
        proc = subprocess.run(["bash", str(script), "videos/", "arr_out", "--models", "lite"], cwd=work,
                              env={**env, "SLURM_ARRAY_TASK_ID": task}, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        made.append(sorted(str(p.relative_to(work / "arr_out")) for p in (work / "arr_out").rglob("*.parquet")))
    assert made[0] == ["a.parquet"] and made[1] == ["a.parquet", "session2/b.parquet"]
    proc = subprocess.run(["bash", str(script), "videos/", "arr_out", "--models", "lite"], cwd=work,
                          env={**env, "SLURM_ARRAY_TASK_ID": "1"}, capture_output=True, text=True, timeout=600)
    import json

    last = json.loads((work / "arr_out" / "_manifest.jsonl").read_text().splitlines()[-1])
    assert proc.returncode == 0 and last["status"] == "skipped" and last["shard"] == "1/2"


def test_plot_identity_with_aus(sandbox, astronaut, tmp_path):
    """The plot script on a feat-v2 output (random weights) draws the AU panel too."""
    frames = [np.ascontiguousarray(astronaut[4 * i: 320 + 4 * i, 96:416]) for i in range(2)]
    clip = write_video(tmp_path / "face.mp4", frames)
    out = tmp_path / "f2.parquet"
    result = CliRunner().invoke(app, ["video", str(clip), "-o", str(out), "--models", "feat-v2", "--weights-dir",
                                      str(sandbox / "facecli-weights"), "-q"])
    assert result.exit_code == 0, result.output
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import plot_identity
    finally:
        sys.path.pop(0)
    png = tmp_path / "p.png"
    assert plot_identity.main([str(out), "-o", str(png)]) == 0
    import matplotlib.pyplot as plt

    assert len(plt.gcf().axes) == 3, "emotions, AUs and pose"
    plt.close("all")
    assert Image.open(png).size[0] > 500
    assert plot_identity.main([str(out), "--identity", "Person_99", "-o", str(png)]) == 1
