"""run.profile / --profile: per-round section timings in the round records and metrics."""

import json

from fedcluster import load_config, run_federation
from fedcluster.callbacks import Callback
from fedcluster.profiling import SECTIONS, Profiler


class _Clock:
    """A clock that moves only when told to."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_nested_sections_are_charged_exclusively():
    clock = _Clock()
    prof = Profiler(enabled=True, clock=clock)
    with prof.section("aggregate"):
        clock.now += 0.25
        with prof.section("cluster"):
            clock.now += 0.5
        clock.now += 0.125
    with prof.section("cluster"):
        clock.now += 0.0625
    out = prof.pop()
    assert set(out) == set(SECTIONS)
    # each second charged once, to the innermost open section
    assert out == {**dict.fromkeys(SECTIONS, 0.0), "aggregate": 0.375, "cluster": 0.5625}
    assert prof.pop() == dict.fromkeys(SECTIONS, 0.0)  # pop starts afresh


def test_disabled_profiler_records_nothing():
    prof = Profiler(enabled=False)
    with prof.section("train"):
        pass
    assert prof.pop() is None


class _Keep(Callback):
    def __init__(self):
        self.rounds = []

    def on_round_end(self, result):
        self.rounds.append(result)


def test_profiled_run_accounts_for_each_round():
    keep = _Keep()
    cfg = load_config(None, ["rounds=2", "run.threads=1", "run.profile=true", "cluster.k=2"])
    run_federation(cfg, [keep])
    for r in keep.rounds:
        p = r.profile
        assert set(p) == set(SECTIONS)
        assert p["train"] > 0 and p["eval"] > 0 and p["cluster"] > 0 and p["aggregate"] > 0
        assert sum(p.values()) <= r.seconds + 0.05  # io of the previous round's end may add
        assert "profile" in r.to_json()
    plain = _Keep()
    run_federation(load_config(None, ["rounds=1", "run.threads=1"]), [plain])
    assert plain.rounds[0].profile is None and "profile" not in plain.rounds[0].to_json()


def test_cli_profile_flag_writes_timings_into_metrics(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("run", "rounds=2", "run.threads=1", "--profile", "-q", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [set(x["profile"]) for x in lines] == [set(SECTIONS)] * 2
    assert all(x["profile"]["train"] > 0 for x in lines)
