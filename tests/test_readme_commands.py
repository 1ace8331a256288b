"""Every command in the README and in the docs it links works as written (issue 24).

The commands are read from the markdown itself: every fenced ``bash``/``sh`` block, every other fenced block whose
lines start with a command word, and every backticked table cell that starts with one. They run in document order
(README first, then the linked pages in the order of their first link) through ``bash -c`` in a copy of the
repository in a temporary folder, whose ``.venv`` is a light venv over the test's own environment (so
``scripts/setup_env.sh`` and ``source .venv/bin/activate`` run too), with that venv first on PATH as after
``source .venv/bin/activate``, and ``OMP_NUM_THREADS=1`` (CI's two cores). Each command's inputs come from
the commands before it.

The one table of changes is ``PLAN`` below: for each command, what is appended (``add``), which placeholder is
replaced (``sub``), what is put in place first that the command would get from the internet or from the reader
(``before``), and whether it must run, must fail in one clear line (internet, GPU), or cannot run here at all
(then it is checked with ``bash -n`` or ``--help`` and the reason is given). One rule holds for every command:
optional parts written ``[--flag value]`` are run with the brackets removed, i.e. with the option. A command in
the docs without a row in ``PLAN`` (or a row whose command is no longer in the docs) fails the test.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMAND_WORDS = ("python ", "bash ", "source ", "torchrun ", "srun ", "sbatch ", ".venv/bin/python ",
                 "OMP_WAIT_POLICY=PASSIVE ")
TINY = "--preset tiny --num_workers 0 --no_progress"
EVAL_TINY = "--preset tiny --no_progress"
CKPT = "runs/crosspoint_dgcnn_cls/checkpoints/point_encoder_best.pth"
OWN_MESHES = {"vessel": ["teapot.stl", "fuze.ply", "sphere.ply", "whitespace.off"],
              "block": ["comments.off", "BoxInterleaved.glb", "multibody.stl", "nested.glb"],
              "figure": ["rabbit.obj", "rabbit.mtl", "two_objects.obj", "multibody.stl"]}
NO_INTERNET = "needs the internet (none here): must fail in one clear line"
NO_GPU = "needs a CUDA GPU (none here): must say so in one line (benchmarks skip it and exit 0)"
BENCH = "a timing run of minutes, too long for CI: its options are checked with --help"

# command as written (comment removed) -> how it runs here. mode: run (exit 0) | fail (non-zero exit, a message,
# no traceback) | no_gpu (exactly one line of output, naming CUDA or the GPU) | check | covered (not run here: the
# check, or the named test, instead).
PLAN: dict[str, dict] = {
    # README, "Install"
    "bash scripts/setup_env.sh": {"mode": "run"},
    "source .venv/bin/activate": {"mode": "run"},
    # README, "The paper's pipeline"
    "bash data/download_data.sh": {"mode": "fail", "why": NO_INTERNET},
    "python -m datasets.synthetic --root data --preset tiny": {"mode": "run"},
    "python -m datasets.check --root data --full": {"mode": "run"},
    "python train_crossmodal.py --model dgcnn --exp_name crosspoint_dgcnn_cls": {"mode": "run", "add": TINY},
    "python train_crossmodal.py --model dgcnn_seg --exp_name crosspoint_dgcnn_seg": {"mode": "run", "add": TINY},
    f"bash scripts/eval_svm.sh {CKPT}": {"mode": "run", "add": EVAL_TINY},
    f"python eval_fewshot.py --model_path {CKPT} --dataset modelnet40 --k_way 5 --m_shot 10":
        {"mode": "run", "add": EVAL_TINY, "sub": {"--m_shot 10": "--m_shot 2"},
         "why": "the tiny set has too few shapes per class for 10 shots"},
    "python train_partseg.py --pretrained_path runs/crosspoint_dgcnn_seg --exp_name dgcnn_partseg":
        {"mode": "run", "add": TINY},
    "python train_cls.py --pretrained_path runs/crosspoint_dgcnn_cls --dataset scanobjectnn --variant obj_bg":
        {"mode": "run", "add": TINY},
    "python train_cls.py --pretrained_path runs/crosspoint_dgcnn_cls --dataset scanobjectnn --recipe pointmae "
    "--exp_name cls_pointmae": {"mode": "run", "add": TINY},
    "bash scripts/download_checkpoints.sh": {"mode": "fail", "why": NO_INTERNET},
    "python scripts/verify_checkpoints.py checkpoints/official":
        {"mode": "run", "before": "official",
         "why": "the published files cannot be downloaded: checkpoints/official/dgcnn_cls_best.pth is this "
                "project's tiny pretrained encoder in the published format (the weights without their sidecar)"},
    "python eval_svm.py --model_path checkpoints/official/dgcnn_cls_best.pth --dataset modelnet40 --k 15":
        {"mode": "run", "add": EVAL_TINY},
    ".venv/bin/jupyter lab eval_ssl.ipynb":
        {"mode": "covered", "by": "tests/test_notebook.py::test_jupyter_lab_serves_the_notebook_and_runs_it_on_its_kernel",
         "why": "a server that runs until stopped; the named test starts it on 127.0.0.1, fetches the notebook "
                "through its contents API and runs its cells on its kernel",
         "check": ["python", "-m", "jupyterlab", "--version"]},
    # README, "Quickstart"
    "bash scripts/quickstart.sh":
        {"mode": "covered", "by": "tests/test_quickstart.py::test_quickstart_tiny_end_to_end",
         "why": "the default (preset small) takes 11 min; the named test runs it with --preset tiny"},
    "bash scripts/run_tests.sh": {"mode": "check", "why": "it runs the test suite this test is part of"},
    # README, "Your own data"
    "python -m datasets.prepare_meshes --input my_meshes/ --output data/mine":
        {"mode": "run", "before": "meshes", "add": "--views 2 --quiet",
         "why": "my_meshes/ = real meshes of tests/data/meshes in three class folders; 2 views instead of 24"},
    "python -m datasets.check --root data/mine --full": {"mode": "run"},
    "python train_crossmodal.py --data_root data/mine --probe_dataset custom --exp_name mine":
        {"mode": "run", "add": f"{TINY} --batch_size 4 --probe_val_fraction 0.3",
         "why": "12 objects: a smaller batch and a larger probe split"},
    "python eval_svm.py --model_path runs/mine/checkpoints/point_encoder_best.pth --dataset custom "
    "--data_root data/mine": {"mode": "run", "add": EVAL_TINY},
    "python eval_fewshot.py --model_path runs/mine/checkpoints/point_encoder_best.pth --dataset custom "
    "--data_root data/mine": {"mode": "run", "add": f"{EVAL_TINY} --k_way 2 --m_shot 1 --n_query 1",
                              "why": "three classes of three or four objects"},
    "python train_cls.py --pretrained_path runs/mine --dataset custom --data_root data/mine --exp_name cls_mine":
        {"mode": "run", "add": f"{TINY} --batch_size 4 --val_fraction 0.3", "why": "12 objects"},
    "python embed.py --model_path runs/mine/checkpoints/point_encoder_best.pth --input my_meshes/ "
    "--output features.npz": {"mode": "run", "add": "--num_points 256 --no_progress"},
    # docs/cluster.md
    "srun torchrun --nnodes $SLURM_NNODES --nproc_per_node $GPUS --rdzv_id $SLURM_JOB_ID --rdzv_backend c10d "
    "--rdzv_endpoint $MASTER:29500 train_crossmodal.py ... --resume auto":
        {"mode": "covered", "by": "tests/test_cluster.py::test_sbatch_scripts_parse_and_run_documented_commands",
         "check": ["bash", "-n", "scripts/slurm/pretrain_multinode.sbatch"],
         "why": "an excerpt of scripts/slurm/*_multinode.sbatch: needs SLURM; the named test parses those scripts "
                "and their training flags"},
    # data/README.md
    "bash data/download_data.sh --root /big/disk": {"mode": "fail", "why": NO_INTERNET,
                                                    "sub": {"/big/disk": "big_disk"}},
    "bash data/download_data.sh --archives DIR":
        {"mode": "fail", "sub": {"DIR": "no_archives"}, "before": "empty_archives",
         "why": "DIR = a folder without archives (none can be downloaded): must fail in one clear line"},
    "python -m datasets.check --root data": {"mode": "run"},
    "python -m datasets.check --root data --full [--workers 4] [--num_points 2048]":
        {"mode": "run", "sub": {"--num_points 2048": "--num_points 256"},
         "why": "the tiny clouds have 256 points"},
    # benchmarks/README.md
    ".venv/bin/python -m benchmarks.run --only dgcnn": {"mode": "check", "why": BENCH},
    ".venv/bin/python -m benchmarks.run --only dgcnn --malloc system,jemalloc --rounds 3":
        {"mode": "check", "why": BENCH},
    ".venv/bin/python -m benchmarks.run --only dgcnn --points 1024 --malloc mmap": {"mode": "check", "why": BENCH},
    "OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.run --only crosspoint --rounds 4 --repeats 3":
        {"mode": "check", "why": BENCH},
    ".venv/bin/python -m benchmarks.run --only crosspoint --device cuda": {"mode": "no_gpu", "why": NO_GPU},
    ".venv/bin/python -m benchmarks.run --only crosspoint --device cuda --amp none,fp16 --channels-last":
        {"mode": "no_gpu", "why": NO_GPU},
    "bash scripts/gpu_check.sh [--out benchmarks/results/gpu_check.json] [--data_root DIR]":
        {"mode": "no_gpu", "sub": {"DIR": "data"}, "why": NO_GPU},
    ".venv/bin/python -m benchmarks.run --only dgcnn --device cuda": {"mode": "no_gpu", "why": NO_GPU},
    "bash scripts/gpu_check.sh": {"mode": "no_gpu", "why": NO_GPU},
    "python -m datasets.prepare_meshes": {"mode": "check", "why": "named in a table as what a benchmark measures"},
    ".venv/bin/python -m benchmarks.bench_prepare_meshes": {"mode": "check", "why": BENCH},
    "OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_embed": {"mode": "check", "why": BENCH},
}


def linked_pages() -> list[Path]:
    """README.md, then every repository .md page it links, in the order of the first link."""
    text = (REPO / "README.md").read_text()
    pages = [REPO / "README.md"]
    for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", text):
        path = (REPO / target).resolve()
        if path.is_file() and path not in pages:
            pages.append(path)
    return pages


def _is_command(line: str) -> bool:
    return line.startswith(COMMAND_WORDS)


def commands_of(text: str) -> list[str]:
    """The commands of one markdown page, in order: fenced blocks (backslash continuations joined, comments and
    trailing ``# ...`` removed) and backticked table cells that start with a command word."""
    found, block, lang = [], None, ""
    for raw in text.splitlines():
        if raw.startswith("```"):
            if block is None:
                block, lang = [], raw[3:].strip()
            else:
                joined = "\n".join(block).replace("\\\n", " ")
                lines = [re.sub(r"\s+#\s.*$", "", ln).strip() for ln in joined.splitlines()]
                lines = [" ".join(ln.split()) for ln in lines if ln and not ln.startswith("#")]
                if lang in ("bash", "sh") or any(_is_command(ln) for ln in lines):
                    found += lines
                block = None
        elif block is not None:
            block.append(raw)
        elif raw.startswith("|"):
            found += [c for c in re.findall(r"`([^`]+)`", raw) if _is_command(c)]
    return found


def documented_commands() -> list[tuple[str, str]]:
    """(page, command) for every command of the README and its linked pages."""
    return [(page.relative_to(REPO).as_posix(), cmd) for page in linked_pages()
            for cmd in commands_of(page.read_text())]


def test_every_documented_command_has_a_row_and_every_row_a_command():
    documented = {cmd for _, cmd in documented_commands()}
    missing = sorted(documented - PLAN.keys())
    assert not missing, f"commands in the docs without a row in PLAN (add how this test runs them): {missing}"
    stale = sorted(PLAN.keys() - documented)
    assert not stale, f"rows of PLAN whose command is no longer in the docs: {stale}"
    for cmd, row in PLAN.items():
        assert row["mode"] in ("run", "fail", "no_gpu", "check", "covered"), cmd
        assert row["mode"] in ("run",) or row.get("why"), f"{cmd}: a row that does not run it says why"
        if row["mode"] == "covered":
            path, name = row["by"].split("::")
            assert f"def {name}(" in (REPO / path).read_text(), f"{cmd}: {row['by']} does not exist"


def _unbracket(cmd: str) -> str:
    return re.sub(r"\[([^\]]*)\]", r"\1", cmd)


def adapted(cmd: str) -> str:
    """The command as this test runs it: brackets removed, the PLAN row's substitutions, then its additions."""
    row = PLAN[cmd]
    out = _unbracket(cmd)
    for old, new in row.get("sub", {}).items():
        assert old in out, f"{cmd}: '{old}' to replace is not in the command"
        out = out.replace(old, new)
    return f"{out} {row['add']}" if row.get("add") else out


def _light_venv(root: Path) -> None:
    """root/.venv: a venv whose site directory adds this test's environment's (with its .pth hooks), stamped with
    the hash of requirements.txt, so scripts/setup_env.sh finds it complete and installs nothing."""
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    site.mkdir(parents=True, exist_ok=True)
    outer = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_outer_env.pth").write_text("".join(f"import site; site.addsitedir({d!r})\n" for d in outer))
    want = hashlib.sha256((REPO / "requirements.txt").read_bytes()).hexdigest()
    (venv / ".requirements.sha256").write_text(want + "\n")  # the environment running this test is complete


def _copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        src = REPO / name
        if name.startswith(("tests/", "results/", "docs/")) or not src.is_file():
            continue
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / name)


def _before(what: str, root: Path) -> None:
    if what == "official":
        (root / "checkpoints" / "official").mkdir(parents=True, exist_ok=True)
        shutil.copy(root / CKPT, root / "checkpoints" / "official" / "dgcnn_cls_best.pth")
    elif what == "meshes":
        for cls, names in OWN_MESHES.items():
            (root / "my_meshes" / cls).mkdir(parents=True, exist_ok=True)
            for name in names:
                shutil.copy(REPO / "tests" / "data" / "meshes" / name, root / "my_meshes" / cls / name)
    elif what == "empty_archives":
        (root / "no_archives").mkdir(exist_ok=True)


def _check(cmd: str) -> list[str]:
    """What a command that cannot run here is checked with: bash -n of its script, or the module's --help."""
    words = cmd.replace("OMP_WAIT_POLICY=PASSIVE ", "").split()
    if words[0] == "bash":
        return ["bash", "-n", words[1]]
    return [words[0], words[1], words[2], "--help"]


@pytest.mark.slow
def test_every_documented_command_runs_as_written(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    _copy_repo(root)
    _light_venv(root)
    venv_bin = str(root / ".venv" / "bin")
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(root / ".venv"),
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHON", None)
    env.pop("PYTHONPATH", None)
    timings, seen, checked = [], set(), set()
    for page, cmd in documented_commands():
        row = PLAN[cmd]
        if row.get("before"):
            _before(row["before"], root)
        start = time.monotonic()
        if row["mode"] in ("check", "covered"):
            argv = row.get("check") or _check(cmd)
            if tuple(argv) not in checked:  # one --help per module
                proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=120)
                assert proc.returncode == 0, f"{page}: {cmd}: check {argv} failed:\n{proc.stdout}{proc.stderr}"
                checked.add(tuple(argv))
        else:
            run = adapted(cmd)
            proc = subprocess.run(["bash", "-c", run], cwd=root, env=env, capture_output=True, text=True,
                                  timeout=300, stdin=subprocess.DEVNULL)
            out = proc.stdout + proc.stderr
            assert "Traceback" not in out, f"{page}: {run}: a traceback:\n{out[-3000:]}"
            if row["mode"] == "run":
                assert proc.returncode == 0, f"{page}: {run}: exit {proc.returncode}:\n{out[-3000:]}"
            elif row["mode"] == "no_gpu":
                lines = [ln for ln in out.splitlines() if ln.strip()]
                assert len(lines) == 1 and re.search("CUDA|GPU", lines[0]), f"{page}: {run}: {row['why']}:\n{out}"
            else:
                assert proc.returncode != 0, f"{page}: {run}: expected to fail here ({row['why']}):\n{out[-3000:]}"
                last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
                assert last and re.match(r"[\w.]+: ", last[-1]), f"{page}: {run}: no one-line message:\n{out[-3000:]}"
                print(f"         failed as expected: {last[-1]}", flush=True)
        timings.append((time.monotonic() - start, cmd))
        print(f"{timings[-1][0]:6.1f} s  {cmd}", flush=True)
        seen.add(cmd)
    assert seen == PLAN.keys()


def test_readme_stays_short_and_links_every_doc():
    """Issue 21: the README is at most 220 lines, and every page of docs/ is reachable from it."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    linked = {p.name for p in linked_pages()}
    assert {p.name for p in (REPO / "docs").glob("*.md")} <= linked
