"""Every file under examples/ is valid: configs load and validate, plugins import."""

from pathlib import Path

import pytest

from fedcluster.config import load_config
from fedcluster.plugins import load_plugin

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = sorted(p for p in EXAMPLES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_examples_exist():
    names = {p.name for p in FILES}
    for ref in ("mnist-mnist-cnn", "mnist-mnist-cnn-baseline", "cifar-resnet18",
                "cifar-resnet18-baseline", "digits", "digits-baseline"):
        assert f"{ref}.toml" in names
    assert "conf.json" in names


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(EXAMPLES)) for p in FILES])
def test_example_is_valid(path):
    if path.suffix in (".toml", ".json"):
        cfg = load_config(path)
        if path.stem.endswith("-baseline"):
            assert cfg.mode == "centralized"
    elif path.suffix == ".py":
        module = load_plugin(str(path.resolve()))
        assert module.__doc__
    else:
        pytest.fail(f"unexpected file type in examples/: {path}")
