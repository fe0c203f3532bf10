"""Differential privacy (fl/privacy.py): clipping and noise in closed form, epsilon from
dp-accounting, the [privacy] config's errors, and what a run records."""

import json
import math

import pytest
import torch

dp_accounting = pytest.importorskip("dp_accounting")  # the optional extra [privacy]
from dp_accounting.rdp import rdp_privacy_accountant  # noqa: E402

from fedcluster.config import ConfigError, load_config  # noqa: E402
from fedcluster.fl.privacy import (  # noqa: E402
    Privacy,
    clip_rows,
    epsilon,
    next_clip,
    noisy_targets,
    update_noise,
)
from fedcluster.loop import run_federation  # noqa: E402

torch.set_num_threads(1)


def _library_epsilon(q: float, z: float, steps: int, delta: float) -> float:
    """dp-accounting's RDP accountant composing the event ``steps`` times itself."""
    acc = rdp_privacy_accountant.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    return acc.get_epsilon(delta)


@pytest.mark.parametrize(("q", "z", "steps", "delta"),
                         [(0.5, 1.1, 10, 1e-5), (1.0, 2.0, 3, 1e-3), (0.01, 0.8, 30, 1e-6)])
def test_epsilon_is_the_librarys(q, z, steps, delta):
    eps = epsilon(q, z, steps, delta)
    assert math.isfinite(eps) and eps > 0
    assert eps == pytest.approx(_library_epsilon(q, z, steps, delta), rel=1e-9)


def test_epsilon_falls_as_noise_grows_and_rises_with_steps():
    by_noise = [epsilon(1.0, z, 20, 1e-5) for z in (0.7, 1.0, 1.5, 3.0)]
    assert all(a > b for a, b in zip(by_noise, by_noise[1:], strict=False))
    assert epsilon(0.25, 1.0, 20, 1e-5) < epsilon(0.5, 1.0, 20, 1e-5) < by_noise[1]
    by_steps = [epsilon(0.25, 1.0, s, 1e-5) for s in (1, 5, 25)]
    assert all(a < b for a, b in zip(by_steps, by_steps[1:], strict=False))
    assert epsilon(0.25, 0.0, 5, 1e-5) == math.inf and epsilon(0.25, 1.0, 0, 1e-5) == 0


def test_clip_rows_scales_long_rows_to_the_bound_and_keeps_short_ones():
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [-6.0, 8.0]])
    clipped, unclipped = clip_rows(x, 1.0)
    expected = torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0], [-0.6, 0.8]])
    torch.testing.assert_close(clipped, expected, rtol=0, atol=1e-7)
    assert unclipped.tolist() == [False, True, True, False]


def test_noisy_targets_without_noise_are_the_clipped_mean_per_cluster():
    models = torch.tensor([[1.0, 1.0], [10.0, 0.0]])
    # cluster 0: deltas (3, 4) -> clipped (0.6, 0.8), and (0, 0.5); cluster 1: (0, -2) -> (0, -1)
    local = torch.tensor([[4.0, 5.0], [1.0, 1.5], [10.0, -2.0]])
    labels = torch.tensor([0, 0, 1])
    targets, counts, unclipped = noisy_targets(models, local, labels, 1.0, 0.0, None)
    torch.testing.assert_close(targets, torch.tensor([[1.3, 1.65], [10.0, -1.0]]),
                               rtol=0, atol=1e-6)
    assert counts.tolist() == [2, 1] and unclipped.tolist() == [False, True, False]


def test_noise_has_the_std_asked_for_and_is_seeded():
    d, std = 200_000, 0.7
    models = torch.zeros(3, d)
    local = torch.zeros(4, d)
    labels = torch.tensor([0, 0, 2, 2])  # cluster 1 has no members: no noise, no step
    draw = [noisy_targets(models, local, labels, 1.0, std, torch.Generator().manual_seed(5))
            for _ in range(2)]
    targets, counts, _ = draw[0]
    assert torch.equal(targets, draw[1][0])
    noise = targets[[0, 2]].double() * 2  # the sum's noise: the mean's times the count
    # the sample std of d normal draws has a relative std of about 1 / sqrt(2 d)
    tol = 5 * std / math.sqrt(2 * d)
    assert abs(noise[0].std().item() - std) < tol and abs(noise[1].std().item() - std) < tol
    assert abs(noise[0].mean().item()) < 5 * std / math.sqrt(d)
    assert not torch.equal(noise[0], noise[1])  # each cluster its own draw
    assert torch.equal(targets[1], models[1]) and counts.tolist() == [2, 0, 2]


def test_adaptive_clip_moves_geometrically_towards_the_quantile():
    # 3 of 4 unclipped, target 0.5: b - target = 0.25 -> clip * exp(-0.2 * 0.25)
    assert next_clip(2.0, 3, 4, 0.5, 0.2, 0.0, None) == pytest.approx(2 * math.exp(-0.05))
    assert next_clip(2.0, 0, 4, 0.5, 0.2, 0.0, None) == pytest.approx(2 * math.exp(0.1))
    # Andrew et al.: z_update^-2 + (2 count_std)^-2 = z^-2
    z, s = 1.0, 1.5
    assert update_noise(z, s) ** -2 + (2 * s) ** -2 == pytest.approx(z ** -2)
    assert update_noise(z, None) == z
    with pytest.raises(ValueError, match="2 \\* count_noise"):
        update_noise(3.0, 1.5)


@pytest.mark.parametrize(("override", "match"), [
    ("privacy.noise_multiplier=-0.5", "privacy.noise_multiplier = -0.5: expected a number >= 0"),
    ("privacy.clip=0", "privacy.clip = 0.0: expected a number > 0"),
    ("privacy.clip=-1", "privacy.clip = -1.0: expected a number > 0"),
    ("privacy.delta=0", "privacy.delta = 0.0: expected a number in \\(0, 1\\)"),
    ("privacy.delta=1", "privacy.delta = 1.0: expected a number in \\(0, 1\\)"),
    ("server.aggregator=median", "server.aggregator = \"mean\""),
    ("privacy.adaptive=true", "less than 2 x privacy.count_noise = 2"),
])
def test_bad_privacy_settings_are_config_errors(override, match):
    base = ["privacy.enabled=true", "privacy.noise_multiplier=2"] if "noise" not in override \
        else ["privacy.enabled=true"]
    with pytest.raises(ConfigError, match=match):
        load_config(None, [*base, override])


def test_missing_accountant_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "dp_accounting" else real(name, *a))
    with pytest.raises(ConfigError, match=r"fedcluster\[privacy\]"):
        load_config(None, ["privacy.enabled=true"])
    load_config(None, ["privacy.enabled=false"])  # off: nothing to install


def test_run_records_epsilon_of_its_noised_rounds(tmp_path, capsys):
    from fedcluster.callbacks import default_callbacks
    from fedcluster.plots.report import write_report

    cfg = load_config(None, ["rounds=3", "data.num_clients=8", "server.clients_per_round=4",
                             "cluster.k=1", "run.threads=1", "run.workers=1",
                             "privacy.enabled=true", "privacy.noise_multiplier=1.3",
                             "privacy.clip=0.5", "privacy.delta=1e-4", "plots.enabled=false"])
    run_federation(cfg, default_callbacks(cfg, tmp_path, progress="off"), tmp_path)
    rounds = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for r in rounds:
        p = r["privacy"]
        assert p["steps"] == r["round"] and p["clip"] == 0.5 and p["delta"] == 1e-4
        assert p["epsilon"] == pytest.approx(_library_epsilon(4 / 8, 1.3, r["round"], 1e-4),
                                             rel=1e-9)
    eps = rounds[-1]["privacy"]["epsilon"]
    assert f"ε = {eps:.3g} at δ = 0.0001 after 3 noised round(s)" in capsys.readouterr().out
    report = write_report(tmp_path, []).read_text()
    assert "<th>ε</th>" in report and f"ε = {eps:.3g}" in report


def test_privacy_of_config_takes_q_from_the_clients_per_round():
    cfg = load_config(None, ["data.num_clients=40", "server.clients_per_round=0.25",
                             "privacy.enabled=true", "privacy.adaptive=true",
                             "privacy.noise_multiplier=0.9", "seed=3"])
    p = Privacy.of(cfg)
    assert (p.sample_rate, p.clients_per_round, p.seed) == (0.25, 10, 3)
    assert p.count_std == 0.5 and p.update_multiplier == pytest.approx(update_noise(0.9, 0.5))
    assert Privacy.of(load_config(None, [])) is None


@pytest.mark.slow
def test_two_processes_draw_the_same_noise_as_one(tmp_path):
    """Under --nproc every rank adds the same keyed noise to the same gathered rows: the
    2-process run's records (epsilon, clip, accuracies, clusters) and models are the
    1-process run's."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    args = ["rounds=3", "run.threads=1", "run.workers=1", "cluster.k=2", "data.num_clients=8",
            "privacy.enabled=true", "privacy.adaptive=true", "privacy.noise_multiplier=0.5",
            "privacy.count_noise=1", "privacy.clip=0.5", "plots.enabled=false", "-q"]
    records, models = {}, {}
    for n in ("1", "2"):
        out = tmp_path / n
        proc = subprocess.run([sys.executable, "-m", "fedcluster", "run", *args, "--out",
                               str(out), *(["--nproc", "2"] if n == "2" else [])],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        lines = (out / "metrics.jsonl").read_text().splitlines()
        records[n] = [{k: r[k] for k in ("privacy", "accuracy", "clusters")}
                      for r in map(json.loads, lines)]
        models[n] = [load_file(out / "models" / f"cluster-{i}.safetensors") for i in range(2)]
    assert records["1"] == records["2"]
    assert records["1"][-1]["privacy"]["steps"] == 3
    for a, b in zip(models["1"], models["2"], strict=True):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
