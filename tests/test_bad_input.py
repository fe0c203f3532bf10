"""Bad input is a message before any work, never a traceback (issue 13, point 6)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedcluster.build import build
from fedcluster.config import ConfigError, load_config
from fedcluster.config.sections import MACHINE_OVERSUBSCRIPTION

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("name, data, where", [
    ("binary.toml", b"\xff\xfe\x00\x01binary", "byte 0xff at offset 0"),
    ("latin1.toml", 'rounds = 3\nname = "café"\n'.encode("latin-1"), "byte 0xe9 at offset 22"),
    ("latin1.json", '{"name": "café"}'.encode("latin-1"), "byte 0xe9 at offset 13"),
])
def test_a_config_file_that_is_not_utf8_is_named_with_the_bad_byte(tmp_path, name, data, where):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=f"is not UTF-8 text \\({where}\\)"):
        load_config(path)


def test_the_cli_says_so_and_exits_2(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(bytes(range(256)))
    proc = subprocess.run([sys.executable, "-m", "fedcluster", "validate", str(path)],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "is not UTF-8 text" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("key", ["threads", "workers"])
def test_threads_and_workers_beyond_the_machine_are_refused(key):
    most = MACHINE_OVERSUBSCRIPTION * (os.cpu_count() or 1)
    assert getattr(load_config(None, [f"run.{key}={most}"]).run, key) == most
    for value in (most + 1, 10**6):
        with pytest.raises(ConfigError, match=f"run.{key} = {value}: expected an integer in "
                                              f"\\[0, {most}\\]"):
            load_config(None, [f"run.{key}={value}"])


def test_a_batch_larger_than_every_client_is_refused_before_training():
    small = ["data.num_clients=6", "run.threads=1", "run.workers=1"]
    for drop_last in ("true", "false"):
        with pytest.raises(ConfigError, match="client.batch_size = 1000000000: expected at "
                                              "most the largest client's training set"):
            build(load_config(None, [*small, "client.batch_size=1000000000",
                                     f"client.drop_last={drop_last}"]))
    largest = max(len(i) for i in build(load_config(None, small)).context.federation.train_idx)
    build(load_config(None, [*small, f"client.batch_size={largest}"]))  # a full batch: fine


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedcluster", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _one_line_exit_2(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fedcluster:")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), proc.stderr


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_safetensors_file_of_the_tensors_dataset_is_named(tmp_path, damage):
    import torch
    from safetensors.torch import save_file

    from fedcluster.data.files import DataError
    from fedcluster.data.tensor_files import tensor_files

    for name in ("train", "test"):
        save_file({"x": torch.zeros(8, 1, 8, 8, dtype=torch.uint8),
                   "y": torch.arange(8) % 2}, str(tmp_path / f"{name}.safetensors"))
    bad = tmp_path / "test.safetensors"
    data = bad.read_bytes()
    bad.write_bytes(b"\xff" * 16 + b"not safetensors" if damage == "garbage"
                    else data[:len(data) - 100])
    cfg = load_config(None, ["data.dataset=tensors", f"data.root={tmp_path}"]).data
    with pytest.raises(DataError, match=f"{bad}: not a readable safetensors file"):
        tensor_files(cfg)


@pytest.mark.parametrize("length", [2**40, 2**63 + 5])
def test_a_cifar_batch_with_a_huge_length_field_is_a_message(tmp_path, length):
    """A BINBYTES8 length of 1 TiB (MemoryError in the unpickler) or beyond the address
    space (OverflowError) is checked against the file's size first."""
    import struct

    from _datafiles import write_cifar

    from fedcluster.data.files import DataError
    from fedcluster.data.torchvision_sources import _read_batch

    write_cifar(tmp_path, per_batch=4)
    batch = tmp_path / "cifar-10" / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", length % 2**64) + b"abc")
    with pytest.raises(DataError, match="data_batch_1 is not a CIFAR-10 python batch"):
        _read_batch(batch)


def test_an_infinite_collective_timeout_is_refused():
    for value, shown in (("inf", "inf"), ("1e12", "1000000000000.0"), ("nan", "nan")):
        with pytest.raises(ConfigError, match=f"run.timeout_s = {shown}: expected a number "
                                              "of seconds in \\(0, 2.592e\\+06\\]"):
            load_config(None, [f"run.timeout_s={value}"])
    assert load_config(None, ["run.timeout_s=2592000"]).run.timeout_s == 2592000


def test_nproc_with_an_infinite_timeout_exits_2_before_starting_workers():
    _one_line_exit_2(_cli("run", "run.timeout_s=inf", "--nproc", "2", "-q"), "run.timeout_s")


def test_more_clients_than_samples_is_refused_before_partitioning():
    from fedcluster.data.partition import PartitionError

    with pytest.raises(PartitionError, match="data.num_clients = 10000000: expected at most "
                                             "the [0-9]+ training samples"):
        build(load_config(None, ["data.num_clients=10000000", "cluster.k=1",
                                "server.clients_per_round=2"]))


def test_an_error_text_with_brackets_is_printed_as_it_is():
    import io

    from rich.console import Console

    from fedcluster.callbacks.console import ConsoleTable
    from fedcluster.records import RunSummary

    out = io.StringIO()
    table = ConsoleTable(Console(file=out, width=200, highlight=False))
    table.run_dir = Path("runs/odd[/]name[bold]")
    ctx = type("Ctx", (), {})()
    error = "ValueError: shapes [...] and [/] differ [bold red]x[/bold red]"
    table.on_run_end(RunSummary(ctx, [], None, 1.0, error=error, round=3))
    text = out.getvalue()
    assert error in text and "runs/odd[/]name[bold]" in text
