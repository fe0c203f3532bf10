"""The Python API: the README's example runs as written; ``fedcluster.run`` returns the
run's records and models; ``fedcluster.load_models`` rebuilds a finished run's models,
which reproduce the run's final accuracy when evaluated here by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import fedcluster
from fedcluster.config import ConfigError, load_config

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The README's Python example, run in an empty directory; its variables."""
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("readme"))
    try:
        names: dict = {}
        exec(compile(_readme_example(), "README.md", "exec"), names)  # noqa: S102
        names["cwd"] = Path.cwd()
    finally:
        os.chdir(cwd)
    return names


def test_the_readme_example_runs_and_returns_the_records(example):
    result, watch = example["result"], example["watch"]
    assert isinstance(result, fedcluster.RunResult)
    assert [r.round for r in result.rounds] == [1, 2, 3]
    assert watch.seen == [r.accuracy for r in result.rounds]  # the callback saw each round
    assert result.accuracy == result.rounds[-1].accuracy == result.summary.final.accuracy
    assert result.run_dir == Path("runs/notebook-1")
    assert (example["cwd"] / "runs/notebook-1/summary.json").is_file()
    assert len(result.models) == len(example["models"]) == len(result.summary.models)


def _accuracy(models: list[torch.nn.Module], result: fedcluster.RunResult) -> float:
    """The final accuracy as the run defines it, computed here: every member client's
    eval samples, each through its cluster's model."""
    fed = result.summary.context.federation
    ds = fed.dataset
    correct = total = 0
    with torch.no_grad():
        for cluster in result.rounds[-1].clusters:
            for client in cluster.members:
                idx = torch.as_tensor(fed.eval_idx[client])
                x = ds.normalized(ds.test_x[idx])
                pred = models[cluster.id](x).argmax(1)
                correct += int((pred == ds.test_y[idx]).sum())
                total += len(idx)
    return correct / total


def test_returned_and_loaded_models_reproduce_the_final_accuracy(example):
    result, loaded = example["result"], example["models"]
    n = sum(len(i) for i in result.summary.context.federation.eval_idx)
    tol = 1 / n + 1e-12  # one sample's argmax may flip on float summation order
    assert _accuracy(result.models, result) == pytest.approx(result.accuracy, abs=tol)
    assert _accuracy(loaded, result) == pytest.approx(result.accuracy, abs=tol)
    for a, b in zip(result.models, loaded, strict=True):  # the files hold the same weights
        for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(),
                                     strict=True):
            assert torch.equal(p, q), name
    assert not any(m.training for m in loaded)


def test_run_without_a_directory_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = fedcluster.run(None, overrides=["rounds=1", "data.num_clients=4",
                                             "run.threads=1"])
    assert result.run_dir is None and list(tmp_path.iterdir()) == []
    assert len(result.rounds) == 1


def test_api_errors_come_before_work(tmp_path):
    with pytest.raises(ConfigError, match="overrides apply to a config file"):
        fedcluster.run(load_config(None), overrides=["rounds=1"])
    with pytest.raises(ConfigError, match="no saved models"):
        fedcluster.load_models(tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            fedcluster.run(None, overrides=["run.device=cuda"])
