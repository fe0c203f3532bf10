"""Push texts: ARI and NMI against the true groups in round and final messages, where
the groups are known; nothing about them otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from fedcluster.notify.messages import end_message, round_message
from fedcluster.records import ClusterResult, RoundResult, RunSummary


def _result(ari: float | None, nmi: float | None) -> RoundResult:
    clusters = [ClusterResult(i, [i], 0.5, 0.9, 1.0, 10) for i in range(2)]
    return RoundResult(4, 0.8125, 0.9, 0.5, clusters, [], 2.0, ari=ari, nmi=nmi)


def _summary(result: RoundResult) -> RunSummary:
    ctx = SimpleNamespace(config=SimpleNamespace(name="rot"))
    return RunSummary(ctx, [result], torch.zeros(2, 3), seconds=9.0)  # type: ignore[arg-type]


def test_final_and_round_pushes_carry_ari_and_nmi() -> None:
    result = _result(0.90625, 0.875)
    end = end_message(_summary(result))
    assert "clusters vs true groups: ARI 0.9062, NMI 0.8750" in end.text.splitlines()
    assert end.data["final"]["ari"] == 0.90625 and end.data["final"]["nmi"] == 0.875
    msg = round_message("rot", result, 10)
    assert "ARI 0.9062, NMI 0.8750" in msg.text and msg.data["ari"] == 0.90625


def test_no_truth_line_without_known_groups() -> None:
    end = end_message(_summary(_result(None, None)))
    assert "ARI" not in end.text and end.data["final"]["ari"] is None


def test_pushes_carry_the_privacy_spent() -> None:
    spent = {"epsilon": 3.25, "delta": 1e-5, "steps": 4, "clip": 0.5, "noise_multiplier": 1.1}
    result = RoundResult(4, 0.8125, 0.9, 0.5, [], [], 2.0, privacy=spent)
    line = "privacy: ε = 3.25 at δ = 1e-05 after 4 noised round(s)"
    end = end_message(_summary(result))
    assert any(x.startswith(line) for x in end.text.splitlines())
    assert end.data["final"]["privacy"] == spent
    assert line in round_message("rot", result, 10).text
    assert "privacy" not in end_message(_summary(_result(None, None))).text
