"""Sweeps (``fedcluster run CFG seed=0,1``, ``[sweep]`` tables) and ``fedcluster compare``
(finished runs side by side, read from their files)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from fedcluster.cli import main
from fedcluster.compare import find_runs, group_runs, load_run, table_rows
from fedcluster.config import ConfigError, load_config
from fedcluster.sweep import combinations, split_values

TINY = ["rounds=2", "data.num_clients=4", "run.threads=1", "run.workers=1",
        "plots.enabled=false"]


@pytest.mark.parametrize(("text", "parts"), [
    ("0,1,2", ["0", "1", "2"]),
    ("[200,100]", ["[200,100]"]),
    ("[200, 100], [50]", ["[200, 100]", "[50]"]),
    ('"a,b",c', ['"a,b"', "c"]),
    ("sgd", ["sgd"]),
])
def test_values_split_at_top_level_commas_only(text, parts):
    assert split_values(text) == parts


def test_comma_lists_make_the_cross_product_in_order():
    combos = combinations(None, ["rounds=3", "seed=0,1", "cluster.k=1,2"])
    assert [c.swept for c in combos] == [{"seed": s, "cluster.k": k}
                                         for s in ("0", "1") for k in ("1", "2")]
    assert combos[1].overrides == ["rounds=3", "seed=0", "cluster.k=2"]
    assert combos[1].label == "seed=0_cluster.k=2"
    assert [c.label for c in combinations(None, ["rounds=3"])] == [""]  # no sweep


def test_a_sweep_table_in_the_file_and_overrides_of_it(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('rounds = 2\n[sweep]\nseed = [0, 1, 2]\n"client.optimizer" = ["adam", "sgd"]\n')
    assert load_config(path).rounds == 2  # the base config: the table is left out
    assert len(combinations(path, [])) == 6
    combos = combinations(path, ["seed=4"])  # one value replaces the table's list
    assert [c.overrides for c in combos] == [["seed=4", "client.optimizer=adam"],
                                             ["seed=4", "client.optimizer=sgd"]]


@pytest.mark.parametrize(("overrides", "message"), [
    (["cluster.k=1,x"], "cluster.k = 'x'"),
    (["seed=1,1"], "listed twice"),
    (["sead=1,2"], "unknown key sead"),
])
def test_a_bad_sweep_value_is_refused_before_any_run(overrides, message, tmp_path, capsys):
    with pytest.raises(ConfigError, match=message):
        combinations(None, overrides)
    assert main(["run", *overrides, "--out", str(tmp_path / "s"), "-q"]) == 2
    assert not (tmp_path / "s").exists()


def test_a_sweep_refuses_nproc(tmp_path, capsys):
    assert main(["run", "seed=0,1", "--nproc", "2", "--out", str(tmp_path / "s")]) == 2
    assert "a sweep runs its combinations one after another" in capsys.readouterr().err


def test_a_seed_sweep_runs_into_one_directory_and_compares(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert main(["run", "seed=0,1", *TINY, "-q", "--out", str(sweep)]) == 0
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert runs == ["seed=0", "seed=1"]
    for seed in (0, 1):
        assert load_config(sweep / f"seed={seed}" / "config.toml").seed == seed
    index = json.loads((sweep / "sweep.json").read_text())
    assert [r["dir"] for r in index["runs"]] == runs
    capsys.readouterr()

    assert main(["compare", str(sweep)]) == 0
    out = capsys.readouterr().out
    finals = [json.loads((sweep / r / "summary.json").read_text())["final"]["accuracy"]
              for r in runs]
    best = [max(json.loads(line)["accuracy"]
                for line in (sweep / r / "metrics.jsonl").read_text().splitlines())
            for r in runs]
    for values in (finals, best):
        expected = f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
        assert expected in out
    page = (sweep / "compare.html").read_text()
    assert f"{np.mean(finals):.4f} ± {np.std(finals, ddof=1):.4f}" in page
    assert "data:image/png;base64," in page and "<table>" in page


def _fake_run(root: Path, name: str, config: str, accuracies: list[float],
              ari: float | None = None, summary: bool = True) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(config)
    lines = [json.dumps({"round": i + 1, "accuracy": a, "ari": ari})
             for i, a in enumerate(accuracies)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if summary:
        final = {"round": len(accuracies), "accuracy": accuracies[-1], "ari": ari}
        (run / "summary.json").write_text(json.dumps({"final": final}))
    return run


def test_compare_groups_runs_by_config_less_seed_and_reads_the_files(tmp_path):
    k2 = 'name = "a"\n[cluster]\nk = 2\n'
    k3 = 'name = "b"\n[cluster]\nk = 3\n'
    _fake_run(tmp_path, "a0", "seed = 0\n" + k2, [0.5, 0.92, 0.90], ari=0.5)
    _fake_run(tmp_path, "a1", "seed = 1\n" + k2, [0.6, 0.8, 0.85], ari=1.0)
    _fake_run(tmp_path, "b0", "seed = 0\n" + k3, [0.7, 0.95], summary=False)
    groups = group_runs([load_run(p) for p in find_runs([tmp_path])])
    assert [(g.label, len(g.runs)) for g in groups] == [("cluster.k=2", 2), ("cluster.k=3", 1)]
    _, rows = table_rows(groups, target=0.9)
    assert rows[0] == ["cluster.k=2", "2",
                       f"{statistics.fmean([0.90, 0.85]):.4f} ± 0.0354",  # sd: 0.05/sqrt(2)
                       f"{statistics.fmean([0.92, 0.85]):.4f} ± 0.0495",  # sd: 0.07/sqrt(2)
                       "2.0 (1/2)", "0.7500 ± 0.3536"]
    assert rows[1] == ["cluster.k=3", "1", "0.9500", "0.9500", "2.0 (1/1)", "-"]


def test_personalised_runs_show_their_own_models_accuracy(tmp_path):
    _fake_run(tmp_path, "a", '[algorithm]\nname = "fedavg"\n', [0.5, 0.6])
    run = _fake_run(tmp_path, "b", '[algorithm]\nname = "ditto"\n', [0.5, 0.6])
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(
        {"round": i, "accuracy": 0.6, "personal_accuracy": p}) for i, p in ((1, 0.7), (2, 0.9))))
    head, rows = table_rows(group_runs([load_run(p) for p in find_runs([tmp_path])]), 0.95)
    assert head[4] == "personal acc"
    assert [row[4] for row in rows] == ["-", "0.9000"]  # the last round's, fedavg has none


def test_a_key_only_one_group_has_is_left_out_of_the_others_labels(tmp_path):
    # two plugin datasets with their own [data.params]: each label names its own keys only
    _fake_run(tmp_path, "a", '[data]\ndataset = "x"\n[data.params]\nn = 5\n', [0.5])
    _fake_run(tmp_path, "b", '[data]\ndataset = "y"\n[data.params]\nm = 7\n', [0.6])
    groups = group_runs([load_run(p) for p in find_runs([tmp_path])])
    assert [g.label for g in groups] == ["data.dataset=x, data.params.n=5",
                                         "data.dataset=y, data.params.m=7"]


def test_compare_refuses_what_is_not_a_run(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), "--target", "1.5"]) == 2
