"""eval_ssl.ipynb: its layout, its saved outputs (recomputed from the committed features of the run that made them),
a headless run on the tiny synthetic set, and the JupyterLab server that opens it.

The README's command that opens the notebook (JupyterLab is installed by scripts/setup_env.sh):

    .venv/bin/jupyter lab eval_ssl.ipynb

test_jupyter_lab_serves_the_notebook_and_runs_it_on_its_kernel runs that command (without a browser, on
127.0.0.1, a free port and a token), reads the notebook through the server's contents API and runs its cells on
a kernel the server starts.
"""

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from conftest import REPO_ROOT

NOTEBOOK = "eval_ssl.ipynb"
# The features of the run whose outputs are saved in the notebook (its last cell says which checkpoint and data).
FEATURES = REPO_ROOT / "tests" / "data" / "eval_ssl_features.npz"
README_CHECKPOINT = "checkpoints/official/dgcnn_cls_best.pth"


def _committed() -> nbformat.NotebookNode:
    nb = nbformat.read(REPO_ROOT / NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    return nb


def _cell(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


def _parameters(nb: nbformat.NotebookNode) -> dict:
    """The parameter cell's values, by running its source."""
    values: dict = {}
    exec(_cell(nb, "parameters").source, {}, values)
    return values


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _structure(nb: nbformat.NotebookNode) -> list:
    """Per code cell, the kind of each output: stream name, or the MIME types of displayed data. Consecutive
    outputs of one stream count once (how the kernel splits a stream into messages depends on timing)."""
    cells = []
    for c in nb.cells:
        if c.cell_type == "code":
            kinds = [o.get("name") if o.output_type == "stream" else sorted(o.get("data", {})) for o in c.outputs]
            cells.append([k for i, k in enumerate(kinds) if i == 0 or not isinstance(k, str) or k != kinds[i - 1]])
    return cells


def _features_source(path: Path) -> str:
    """Code standing in for the features cell: the saved run's features, from the committed ``.npz``."""
    return f"""import numpy as np
with np.load({str(path)!r}, allow_pickle=False) as z:
    kind = str(z["kind"])
    features = {{name: {{"train_f": z[name + "__train_f"], "train_y": z[name + "__train_y"],
                         "test_f": z[name + "__test_f"], "test_y": z[name + "__test_y"],
                         "class_names": [str(s) for s in z[name + "__class_names"]], "tag": str(z[name + "__tag"])}}
                for name in dataset_names}}"""


def _kernel_spec(tmp_path: Path, monkeypatch) -> str:
    """A kernel spec that runs this interpreter (the venv), whatever other "python3" kernels are installed."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "crosspoint-test"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "crosspoint-test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "crosspoint-test"


def _execute(nb: nbformat.NotebookNode, tmp_path: Path, monkeypatch) -> None:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=600, kernel_name=_kernel_spec(tmp_path, monkeypatch),
                   resources={"metadata": {"path": str(REPO_ROOT)}}).execute()


def test_notebook_opens_with_its_title_then_parameters_and_shows_the_svc_call():
    nb = _committed()
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# CrossPoint")
    assert len([p for p in nb.cells[0].source.split("\n\n") if p.strip()]) == 2, "the title and one paragraph"
    assert nb.cells[1].cell_type == "code" and "parameters" in nb.cells[1].metadata.get("tags", [])
    assert _parameters(nb)["checkpoint"] == README_CHECKPOINT
    assert README_CHECKPOINT in (REPO_ROOT / "README.md").read_text()
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any('SVC(kernel="linear"' in s and ".fit(" in s and ".predict(" in s for s in code)


def test_saved_outputs_are_labelled_synthetic_and_come_from_the_committed_features():
    """The saved run's features give, through the evaluation library (eval_svm.py's code), the numbers of the
    saved accuracy table; the features cell's saved output names the checkpoint those features came from."""
    from evaluation.svm import SVMConfig, evaluate_svm

    nb = _committed()
    assert all(c.outputs for c in nb.cells if c.get("id") in ("features", "accuracy", "tsne", "confusion"))
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"] == list(range(1, len(_structure(nb)) + 1))
    p = _parameters(nb)
    (table_cell,) = [c for c in nb.cells if c.get("id") == "accuracy"]
    table = _text(table_cell)
    assert "SYNTHETIC data" in table and "SYNTHETIC" in nb.cells[-1].source
    with np.load(FEATURES, allow_pickle=False) as z:
        assert str(z["kind"]) == "synthetic"
        feats_out = _text(_cell(nb, "features"))
        assert f"checkpoint sha1: {z['checkpoint_sha1']}" in feats_out and "SYNTHETIC data" in feats_out
        # The encoder line names the checkpoint the last cell documents, relative to the repository (no path of
        # the machine the notebook was run on).
        (documented,) = re.findall(r'`checkpoint = "([^"]+)"`', nb.cells[-1].source)
        assert f") from {documented}\n" in feats_out and not documented.startswith("/")
        rows = []
        for name in p["dataset_names"]:
            f = {k: z[f"{name}__{k}"] for k in ("train_f", "train_y", "test_f", "test_y")}
            assert f"{z[name + '__tag']}: train {f['train_f'].shape}, test {f['test_f'].shape}" in feats_out
            svm = SVMConfig([p["C"]] if p["C_select"] == "fixed" else p["C_grid"], p["C_select"],
                            cv_folds=p["cv_folds"], seed=p["seed"])
            best = evaluate_svm(f, svm, verbose=False)["best"]
            rows.append(f"{str(z[name + '__tag']):<22} {100 * best['accuracy']:>8.2f}% "
                        f"{100 * best['mean_class_accuracy']:>14.2f}% {best['C']:>7g} {len(f['train_y']):>6d} "
                        f"{len(f['test_y']):>6d}")
    for row in rows:
        assert row in table, (row, table)


@pytest.mark.slow
def test_saved_outputs_are_what_the_committed_cells_print(tmp_path, monkeypatch):
    """Every cell after the features runs again on the saved run's features: same text, same kinds of output."""
    nb = _committed()
    saved = nbformat.from_dict(json.loads(json.dumps(nb)))
    _cell(nb, "features").source = _features_source(FEATURES)
    _execute(nb, tmp_path, monkeypatch)
    replayed, kept = _structure(nb), _structure(saved)
    features_index = [c for c in nb.cells if c.cell_type == "code"].index(_cell(nb, "features"))
    del replayed[features_index], kept[features_index]
    assert replayed == kept
    for new, old in zip(nb.cells, saved.cells):
        if new.cell_type == "code" and new.get("id") != "features":
            assert _text(new) == _text(old), (new.get("id"), _text(new), _text(old))


@pytest.mark.slow
def test_notebook_executes(repo_root, tiny_data_root, tmp_path, monkeypatch):
    from models import build_point_encoder
    from util.checkpoint import save_weights

    torch.manual_seed(0)
    ckpt = tmp_path / "point_encoder_best.pth"
    save_weights(build_point_encoder("dgcnn", k=5, emb_dims=32).state_dict(), ckpt,
                 {"model": "dgcnn", "model_args": {"k": 5, "emb_dims": 32}, "kind": "point_encoder"})
    nb = _committed()
    params = {
        "checkpoint": str(ckpt),
        "data_root": str(tiny_data_root),
        "dataset_names": ["modelnet40", "scanobjectnn"],
        "scanobjectnn_variant": "obj_bg",
        "C": 0.01,
        "C_select": "cv",
        "C_grid": [0.01, 1.0],
        "cv_folds": 3,
        "seed": 0,
        "num_points": 128,
        "k": None,
        "emb_dims": None,
        "device": "cpu",
        "batch_size": 16,
        "cache_dir": str(tmp_path / "cache"),
        "plot_dataset": "modelnet40",
    }
    assert set(_parameters(nb)) == set(params), "the test overrides every parameter of the notebook"
    saved_structure = _structure(nb)
    _cell(nb, "parameters").source = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    _execute(nb, tmp_path, monkeypatch)

    assert _structure(nb) == saved_structure  # the saved outputs have the shape of a run of the committed code
    text = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "Linear SVM on frozen features, SYNTHETIC data" in text
    assert "modelnet40 " in text and "scanobjectnn (obj_bg)" in text
    assert "3-fold CV on the train split" in text  # the notebook exposes C_select "cv"
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2, json.dumps([c.outputs for c in nb.cells if c.cell_type == "code"])[:2000]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else {}


def _wait_for_server(base: str, token: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"jupyter lab exited: {log.read_text()[-3000:]}"
        try:
            _api(base, token, "/api/status")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise AssertionError(f"jupyter lab did not answer in 120 s: {log.read_text()[-3000:]}")


def _run_on_kernel(ws, code: str) -> tuple[str, str]:
    """Send an execute_request on the kernel's websocket channels; returns (reply status, stdout text)."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "date": "2026-01-01T00:00:00Z", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    status, out, idle = None, [], False
    while status is None or not idle:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "execute_reply":
            status = msg["content"]["status"]
            if status == "error":
                out.append("\n".join(msg["content"].get("traceback", [])))
        elif kind == "stream" and msg["content"]["name"] == "stdout":
            out.append(msg["content"]["text"])
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    return status, "".join(out)


@pytest.mark.slow
def test_jupyter_lab_serves_the_notebook_and_runs_it_on_its_kernel(tmp_path):
    """``.venv/bin/jupyter lab eval_ssl.ipynb`` (the README's command): the server answers on 127.0.0.1, serves
    the notebook through its contents API, and the notebook's own kernel runs its parameter and import cells."""
    import websocket

    jupyter = Path(sys.executable).parent / "jupyter"
    assert jupyter.is_file(), f"{jupyter} is missing: scripts/setup_env.sh installs JupyterLab (requirements.txt)"
    port, token = _free_port(), secrets.token_hex(16)
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(tmp_path),
           **{var: str(tmp_path / var.lower()) for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
                                                         "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                                                         "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR")}}
    log = tmp_path / "server.log"
    with open(log, "w") as log_file:
        proc = subprocess.Popen([str(jupyter), "lab", NOTEBOOK, "--no-browser", "--ServerApp.ip=127.0.0.1",
                                 f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                                 f"--IdentityProvider.token={token}", *(["--allow-root"] if os.geteuid() == 0 else [])],
                                cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(base, token, proc, log)
        served = _api(base, token, f"/api/contents/{NOTEBOOK}?type=notebook&content=1")
        nb = _committed()
        assert served["type"] == "notebook"
        assert [c["source"] for c in served["content"]["cells"]] == [c.source for c in nb.cells]
        kernel_name = served["content"]["metadata"]["kernelspec"]["name"]
        session = _api(base, token, "/api/sessions", "POST",
                       {"path": NOTEBOOK, "type": "notebook", "name": NOTEBOOK, "kernel": {"name": kernel_name}})
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/api/kernels/{session['kernel']['id']}/channels?token={token}", timeout=120)
        try:
            for cell in nb.cells[1:3]:  # the parameters, then the imports of the project's packages
                status, out = _run_on_kernel(ws, cell.source)
                assert status == "ok", out
            status, out = _run_on_kernel(ws, "import sys; print(sys.prefix); print(checkpoint, SVC.__name__)")
        finally:
            ws.close()
        assert status == "ok" and out.splitlines() == [sys.prefix, f"{README_CHECKPOINT} SVC"]
    finally:
        try:
            _api(base, token, "/api/shutdown", "POST")
            proc.wait(timeout=30)
        except (urllib.error.URLError, ConnectionError, subprocess.TimeoutExpired):
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()[-3000:]
