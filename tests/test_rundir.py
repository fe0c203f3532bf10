"""Run directories: atomic writes, one run per directory, names that never collide,
unwritable or wrong paths refused before training, and write failures that stop a run."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fedcluster import rundir
from fedcluster.config import ConfigError
from fedcluster.rundir import (
    HELD_ENV,
    RunDirError,
    atomic_write,
    held_by_launcher,
    new_run,
    resume_run,
)

SMALL = ["data.num_clients=4", "model.name=mlp", "model.hidden=[16]", "run.threads=1",
         "run.device=cpu", "plots.enabled=false"]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _python(code: str) -> subprocess.Popen:
    """A Python subprocess running ``code``, line-buffered text on stdin/stdout."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedcluster", *args], capture_output=True,
                          text=True, timeout=300)


# --- atomic_write ---------------------------------------------------------------------


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    atomic_write(path, "old")
    atomic_write(str(path), b"\x00new bytes")
    assert path.read_bytes() == b"\x00new bytes"
    assert os.listdir(tmp_path) == ["summary.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text("old")

    def disk_full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, failing, disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, "new" * 1000)
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.toml"]


def test_atomic_write_into_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "x.json", "{}")
    assert os.listdir(tmp_path) == []


# --- opening a run directory ------------------------------------------------------------


def test_a_second_open_of_a_held_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with new_run(out) as held:
        assert held.path == out and held.created
        with pytest.raises(RunDirError, match=rf"run directory {out} is in use by another "
                                              rf"fedcluster run \(pid {os.getpid()}\)"):
            new_run(out)
        (out / "config.toml").write_text("")
        with pytest.raises(RunDirError, match="in use"):
            resume_run(out)
    with resume_run(out) as again:  # released: the run can be resumed
        assert again.path == out and not again.created


def test_a_directory_held_by_another_process_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = _python(f"""
        import sys
        from fedcluster.rundir import new_run
        with new_run({str(out)!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        with pytest.raises(RunDirError, match=rf"in use by another fedcluster run "
                                              rf"\(pid {holder.pid}\)"):
            new_run(out)
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    with new_run(out):  # its lock went with it
        pass


def test_release_removes_a_created_directory_left_empty_and_keeps_a_run(tmp_path: Path) -> None:
    empty = new_run(tmp_path / "empty")
    assert {p.name for p in empty.path.iterdir()} == {".lock", ".lock.pid"}
    empty.release()
    empty.release()  # idempotent
    assert not empty.path.exists()
    with new_run(tmp_path / "full") as full:
        (full.path / "metrics.jsonl").write_text("")
    assert {p.name for p in full.path.iterdir()} == {".lock", "metrics.jsonl"}
    existing = tmp_path / "mine"
    existing.mkdir()
    new_run(existing).release()
    assert existing.is_dir()  # not ours to remove


def test_default_names_never_collide_within_a_second(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rundir.time, "strftime", lambda fmt: "20240101-120000")
    held = [new_run(None, tmp_path / "runs", "digits") for _ in range(5)]
    names = [h.path.name for h in held]
    assert names == ["digits-20240101-120000", *(f"digits-20240101-120000-{n}"
                                                 for n in range(2, 6))]
    for h in held:
        h.release()


def test_default_names_never_collide_between_racing_processes(tmp_path: Path) -> None:
    code = f"""
        import sys
        from fedcluster.rundir import unique_run_path
        sys.stdin.readline()  # start together
        for _ in range(25):
            print(unique_run_path({str(tmp_path)!r}, "race", "20240101-120000"), flush=True)
    """
    procs = [_python(code) for _ in range(2)]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    made = [line for p in procs for line in p.communicate(timeout=60)[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert len(made) == 50 and len(set(made)) == 50
    assert len(os.listdir(tmp_path)) == 50


def test_wrong_paths_are_config_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=rf"--out {a_file}: it is a file"):
        new_run(a_file)
    with pytest.raises(ConfigError, match=r"cannot create the directory \(Not a directory\)"):
        new_run(a_file / "run")
    with pytest.raises(ConfigError, match=r"run.out = .*cannot create it"):
        new_run(None, a_file / "runs", "x")
    done = tmp_path / "done"
    done.mkdir()
    (done / "checkpoint.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError,
                       match=r"already holds a run \(checkpoint.safetensors\); refusing"):
        new_run(done)
    with pytest.raises(ConfigError, match=r"--resume .*no run there \(config.toml is missing\)"):
        resume_run(done)
    with pytest.raises(ConfigError, match="no such directory"):
        resume_run(tmp_path / "nowhere")


@pytest.mark.skipif(AS_ROOT, reason="root writes into read-only directories")
def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    try:
        with pytest.raises(ConfigError, match=rf"--out {out}: cannot write there "
                                              r"\(Permission denied\)"):
            new_run(out)
    finally:
        out.chmod(0o700)


def test_an_unwritable_directory_is_refused(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(directory: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(directory))

    monkeypatch.setattr(rundir, "_create_probe", denied)
    with pytest.raises(ConfigError, match=rf"--out {tmp_path}: cannot write there "
                                          r"\(Permission denied\)"):
        new_run(tmp_path)
    assert os.listdir(tmp_path) == []  # not even locked


def test_a_launcher_lends_its_directory_to_its_workers(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HELD_ENV, raising=False)
    with new_run(tmp_path / "run") as held:
        assert not held_by_launcher(held.path)
        held.lend_to_workers()
        assert held_by_launcher(held.path) and held_by_launcher(f"{tmp_path}/x/../run")
    assert HELD_ENV not in os.environ


def test_each_rank_gets_its_run_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fedcluster.config import load_config
    from fedcluster.run_command import _worker_run_dir

    cfg = load_config(None, [f"run.out={tmp_path / 'runs'}"])
    monkeypatch.setenv("RANK", "1")
    assert _worker_run_dir(cfg, None) == tmp_path / "runs"  # unused: writes nothing
    assert not (tmp_path / "runs").exists()
    monkeypatch.setenv("RANK", "0")
    with new_run(tmp_path / "lent") as held:
        held.lend_to_workers()
        assert _worker_run_dir(cfg, str(held.path)) == held.path  # no second lock
    own = _worker_run_dir(cfg, None)  # a torchrun started by hand: rank 0 opens and holds
    assert own.parent == tmp_path / "runs"
    with pytest.raises(RunDirError, match="in use"):
        new_run(own)


# --- the CLI ----------------------------------------------------------------------------


def test_cli_refuses_out_naming_a_file_before_training(tmp_path: Path) -> None:
    a_file = tmp_path / "results"
    a_file.write_text("mine")
    t0 = time.monotonic()
    proc = _cli("run", "rounds=1", "data.num_clients=4", "--out", str(a_file), "--quiet")
    assert proc.returncode == 2
    assert f"fedcluster: error: --out {a_file}: it is a file" in proc.stderr
    assert "Traceback" not in proc.stderr and "results in" not in proc.stdout
    assert a_file.read_text() == "mine" and time.monotonic() - t0 < 60


@pytest.mark.skipif(AS_ROOT, reason="root writes into read-only directories")
def test_cli_refuses_a_read_only_directory_before_training(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    try:
        proc = _cli("run", "rounds=1", "data.num_clients=4", "--out", str(out), "--quiet")
    finally:
        out.chmod(0o700)
    assert proc.returncode == 2 and "cannot write there" in proc.stderr
    assert not (out / "metrics.jsonl").exists()


def test_cli_refuses_an_unwritable_directory_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from fedcluster.cli import main

    def denied(directory: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(directory))

    monkeypatch.setattr(rundir, "_create_probe", denied)
    assert main(["run", "rounds=1", *SMALL, "--out", str(tmp_path), "--quiet"]) == 2
    assert f"--out {tmp_path}: cannot write there (Permission denied)" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # nothing trained, nothing written


def test_cli_refuses_a_directory_in_use_by_a_running_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "fedcluster", "run", "rounds=100000",
                              *SMALL, "--out", str(out), "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".lock.pid").exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run never locked its directory"
            time.sleep(0.1)
        t0 = time.monotonic()
        second = _cli("run", "rounds=1", *SMALL, "--out", str(out), "--quiet")
        assert time.monotonic() - t0 < 60 and second.returncode == 1
        assert (f"fedcluster: error: run directory {out} is in use by another fedcluster run "
                f"(pid {first.pid})") in second.stderr
        assert first.poll() is None  # untouched
    finally:
        first.kill()
        first.wait(timeout=30)


# --- write failures stop the run ------------------------------------------------------


class _Recorder:
    def __init__(self, critical: bool, fail: bool) -> None:
        self.critical, self.fail, self.seen = critical, fail, []

    def on_round_end(self, result: object) -> None:
        self.seen.append(result)
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")

    def on_run_end(self, summary: object) -> None:
        self.seen.append(summary)
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")


def test_a_critical_callback_stops_the_run_and_the_others_stay_isolated() -> None:
    from fedcluster.callbacks import CallbackList

    broken, critical, other = (_Recorder(False, True), _Recorder(True, True),
                               _Recorder(False, False))
    cbs = CallbackList([broken, critical, other])  # type: ignore[list-item]
    with pytest.raises(OSError, match="No space"):
        cbs.round_end("r1")  # type: ignore[arg-type]
    assert other.seen == ["r1"]  # the event reached every callback first
    failing = SimpleNamespace(error="RunDirError: disk full")
    cbs.run_end(failing)  # type: ignore[arg-type]  # already failing: logged, not raised
    assert broken.seen == ["r1"] and critical.seen == ["r1", failing]
    with pytest.raises(OSError, match="No space"):  # a clean end that cannot be written
        cbs.run_end(SimpleNamespace(error=None))  # type: ignore[arg-type]


def _disk_full_after(calls: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``calls`` metrics lines through; the next writes half a line, then the disk
    is full."""
    from fedcluster.callbacks import run_files

    real, count = run_files._write_all, [0]

    def write(fd: int, data: bytes) -> None:
        count[0] += 1
        if count[0] <= calls:
            return real(fd, data)
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_files, "_write_all", write)


def test_a_full_disk_stops_the_run_with_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    from fedcluster.cli import main

    _disk_full_after(1, monkeypatch)
    out = tmp_path / "run"
    assert main(["run", "rounds=5", *SMALL, "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (f"fedcluster: error: cannot write {out / 'metrics.jsonl'}: No space left on "
            "device") in err
    assert "Traceback" not in err
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1]  # no torn line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reason"] == "error" and "No space left" in summary["error"]


def test_a_model_that_cannot_be_saved_fails_the_run(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    from fedcluster.callbacks import model_files
    from fedcluster.cli import main

    def disk_full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model_files, "atomic_write", disk_full)
    out = tmp_path / "run"
    assert main(["run", "rounds=1", *SMALL, "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out / 'models' / 'cluster-0.safetensors'}: No space left" in err
    assert not list((out / "models").iterdir())


def test_resume_keeps_the_rounds_up_to_the_checkpoint_and_appends(tmp_path: Path) -> None:
    from fedcluster import run_federation
    from fedcluster.callbacks import RunFiles
    from fedcluster.config import load_config

    run_federation(load_config(None, ["rounds=3", *SMALL]), [RunFiles(tmp_path)], tmp_path)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"round": 4, "acc')  # torn by a crash
    run_federation(load_config(None, ["rounds=2", *SMALL]),
                   [RunFiles(tmp_path, resume_round=1)], tmp_path)
    rounds = [json.loads(line)["round"]
              for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [1, 1, 2]
    assert json.loads((tmp_path / "summary.json").read_text())["rounds"] == 2


def test_a_resumed_run_continues_its_metrics_from_the_checkpoint(tmp_path: Path) -> None:
    from fedcluster.callbacks import Callback, RunFiles
    from fedcluster.checkpoint import load_checkpoint
    from fedcluster.config import load_config
    from fedcluster.loop import run_federation
    from fedcluster.signals import Stopped

    class StopAfterRound2(Callback):
        def on_round_end(self, result) -> None:  # noqa: ANN001
            if result.round == 2:
                raise Stopped(15)

    cfg = load_config(None, ["rounds=4", *SMALL])
    with pytest.raises(Stopped):
        run_federation(cfg, [RunFiles(tmp_path), StopAfterRound2()], tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["reason"] == "SIGTERM"
    with open(tmp_path / "metrics.jsonl", "a") as f:  # a round the checkpoint does not hold
        f.write('{"round": 3}\n')
    run_federation(cfg, [RunFiles(tmp_path)], tmp_path, start=load_checkpoint(tmp_path))
    rounds = [json.loads(line)["round"]
              for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [1, 2, 3, 4]
    assert json.loads((tmp_path / "summary.json").read_text())["reason"] == "completed"
