"""A library that behaves: importing fedcluster changes nothing global, the config and
the light commands (``--help``, ``validate``) need no torch, and the start-up work on the
garbage collector happens only in a process that is fedcluster's own.

Each check runs in a fresh interpreter, since the test process has long imported torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fedcluster
from fedcluster.config import ConfigError, load_config
from fedcluster.names import BUILTIN_DATASETS, BUILTIN_MODELS, BUILTIN_PARTITIONS, BUILTIN_SHIFTS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _python(code: str) -> str:
    """The last line ``code`` prints in a new interpreter (it must succeed)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def _cli(argv: list[str], *, own_process: bool = True, before: str = "") -> dict:
    """Run ``fedcluster.cli.main`` in a new interpreter, as the executable does (reading
    ``sys.argv``) or as a library call (``main(argv)``); report its status, whether torch
    got imported and the garbage collector's state after."""
    call = "main()" if own_process else f"main({argv!r})"
    code = f"""
import gc, json, sys
{before}
sys.argv = {["fedcluster", *argv]!r}
from fedcluster.cli import main
try:
    rc = {call}
except SystemExit as e:
    rc = e.code
print(json.dumps({{"rc": rc, "torch": "torch" in sys.modules, "gc": gc.isenabled(),
                  "frozen": gc.get_freeze_count()}}))
"""
    return json.loads(_python(code))


def test_importing_the_package_changes_nothing_global():
    code = """
import gc, torch
threads, interop = torch.get_num_threads(), torch.get_num_interop_threads()
import fedcluster
assert gc.isenabled() and gc.get_freeze_count() == 0
assert (torch.get_num_threads(), torch.get_num_interop_threads()) == (threads, interop)
from fedcluster import *  # every public module, imported now
assert gc.isenabled() and gc.get_freeze_count() == 0
assert (torch.get_num_threads(), torch.get_num_interop_threads()) == (threads, interop)
print("ok")
"""
    assert _python(code) == "ok"


def test_importing_the_package_imports_no_torch():
    code = "import sys, fedcluster; print('torch' in sys.modules)"
    assert _python(code) == "False"


def test_public_names_resolve_to_their_modules():
    assert sorted(fedcluster.__all__) == sorted(fedcluster._HOMES)
    assert set(fedcluster.__all__) <= set(dir(fedcluster))
    for name in fedcluster.__all__:
        value = getattr(fedcluster, name)
        assert value.__module__.startswith(fedcluster._HOMES[name]), name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        fedcluster.nothing  # noqa: B018


@pytest.mark.parametrize("overrides", [[], ["model.name=mlp", "data.dataset=mnist"]])
def test_loading_a_plain_config_imports_no_torch(overrides):
    code = f"""
import sys
from fedcluster.config import load_config
cfg = load_config({str(EXAMPLES / "digits.toml")!r}, {overrides!r})
print(cfg.model.name, "torch" in sys.modules)
"""
    name = "mlp" if overrides else load_config(EXAMPLES / "digits.toml").model.name
    assert _python(code) == f"{name} False"


def test_builtin_names_are_what_the_registries_hold():
    """Asked in a new interpreter: here, tests' plugins have added names of their own."""
    code = """
import json
from fedcluster.data import DATASETS, PARTITIONS, SHIFTS
from fedcluster.models import MODELS
print(json.dumps([DATASETS.names(), MODELS.names(), PARTITIONS.names(), SHIFTS.names()]))
"""
    datasets, models, partitions, shifts = json.loads(_python(code))
    assert sorted(BUILTIN_DATASETS) == datasets
    assert sorted(BUILTIN_MODELS) == models
    assert sorted(BUILTIN_PARTITIONS) == partitions
    assert sorted(BUILTIN_SHIFTS) == shifts


@pytest.mark.parametrize(("override", "name", "hint"), [
    ("data.dataset=mnits", "data.dataset", "(did you mean 'mnist'?)"),
    ("model.name=resnet19", "model.name", "(did you mean 'resnet18'?)"),
])
def test_names_that_are_not_built_in_get_the_registry_message(override, name, hint):
    from fedcluster.data import DATASETS
    from fedcluster.models import MODELS

    registry = DATASETS if name == "data.dataset" else MODELS
    value = override.partition("=")[2]
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value) == f"{name}: {registry.unknown_message(value)}"
    assert hint in str(err.value)


def test_partition_and_shift_names_are_checked_with_a_hint():
    from fedcluster.data import PARTITIONS, SHIFTS

    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.shift=rotat", "data.groups=2"])
    assert str(err.value) == f"data.shift: {SHIFTS.unknown_message('rotat')}"
    assert "(did you mean 'rotate'?)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.partition=locl"])
    msg = str(err.value)
    assert msg.startswith("data.partition: unknown partition 'locl' (did you mean 'local'?)")
    # tests' plugins may have added partitions: the known list is the registry's plus local
    assert msg.endswith("known: " + ", ".join(sorted([*PARTITIONS.names(), "local"])))
    assert {"dirichlet", "iid", "local", "shards"} <= set(msg.split("known: ")[1].split(", "))


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["validate", "--help"],
    ["validate", str(EXAMPLES / "digits.toml")],
    ["validate", str(EXAMPLES / "cifar-resnet18.toml"), "rounds=3"],
    ["validate", "rounds=3", str(EXAMPLES / "digits.toml")],
    ["--version"],
    ["config", "--defaults"],
    ["config", str(EXAMPLES / "digits.toml"), "rounds=3"],
])
def test_help_and_validate_import_no_torch(argv):
    out = _cli(argv)
    assert out["rc"] == 0 and not out["torch"]
    assert out["gc"] and out["frozen"] == 0


def test_validate_reports_a_bad_config_without_torch():
    out = _cli(["validate", str(EXAMPLES / "digits.toml"), "client.lrr=0.1"])
    assert out["rc"] == 2 and not out["torch"]


def test_validate_still_rejects_an_unknown_model():
    out = _cli(["validate", str(EXAMPLES / "digits.toml"), "model.name=digits-cn"])
    assert out["rc"] == 2


@pytest.mark.parametrize("collecting", [True, False])
def test_the_executable_imports_torch_with_the_collector_paused(collecting):
    """``fedcluster models`` run as the process's own: torch and the package come in with
    the collector paused and are frozen after; the collector is back as it was."""
    before = "" if collecting else "gc.disable()"
    out = _cli(["models"], before=before)
    assert out["rc"] == 0 and out["torch"]
    assert out["gc"] is collecting
    assert (out["frozen"] > 0) is collecting


def test_a_library_call_of_main_leaves_the_collector_alone():
    out = _cli(["models"], own_process=False)
    assert out["rc"] == 0 and out["torch"]
    assert out["gc"] and out["frozen"] == 0
