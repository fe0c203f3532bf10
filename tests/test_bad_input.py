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
