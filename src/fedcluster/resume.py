"""What a resumed run runs: the config saved in its directory, and the overrides allowed.

``fedcluster run --resume RUN_DIR [key=value ...]`` continues a run with the config it
was started with (``RUN_DIR/config.toml``). An override may extend the run
(``rounds=``) or change what does not enter the computation (outputs, pushes,
profiling, the collective timeout, the checkpoint interval); any other change would
make the resumed rounds differ from the uninterrupted run's and is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import secrets
from .config import Config, ConfigError, load_config

__all__ = ["ALLOWED", "flat_keys", "resume_config"]

# Keys (or whole sections, ending in ".") a resume may change.
ALLOWED = ("rounds", "run.profile", "run.timeout_s", "run.checkpoint_every", "plots.",
           "tensorboard.", "mlflow.", "wandb.", "notify.")


def flat_keys(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested table as ``{"section.key": value}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _allowed(key: str) -> bool:
    return any(key == a or (a.endswith(".") and key.startswith(a)) for a in ALLOWED)


def resume_config(run_dir: Path, overrides: list[str], plugins: list[str] = (),
                  done: int = 0) -> Config:
    """The saved config of ``run_dir`` with ``overrides``; ConfigError for a change a
    resume cannot make, or ``rounds`` not beyond the ``done`` rounds."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: no config.toml there; not a run directory")
    saved = load_config(path, [], plugins=list(plugins))
    cfg = load_config(path, list(overrides), plugins=list(plugins))
    before, after = flat_keys(saved.to_dict()), flat_keys(cfg.to_dict())
    changed = [k for k in after if after[k] != before.get(k) and not _allowed(k)]
    if changed:
        what = ", ".join(f"{k} = {before.get(k)!r} -> {after[k]!r}" for k in changed)
        raise ConfigError(f"--resume {run_dir}: {what} would change the computation of the "
                          "remaining rounds; a resume may change only rounds= and "
                          "plots.*, tensorboard.*, mlflow.*, wandb.*, notify.*, run.profile, "
                          "run.timeout_s, run.checkpoint_every (start a new run for anything "
                          "else)")
    if cfg.rounds <= done:
        raise ConfigError(f"--resume {run_dir}: the run has done {done} of its rounds = "
                          f"{cfg.rounds}; pass rounds=N with N > {done} to extend it")
    masked = [k for k, v in flat_keys(cfg.to_dict(reveal_secrets=True)).items()
              if isinstance(v, str) and secrets.MASK in v]
    if masked:
        raise ConfigError(f"--resume {run_dir}: {', '.join(masked)} was saved masked "
                          f"({secrets.MASK}); give it again in the environment "
                          f"({', '.join(secrets.ENV_KEYS)}) or as an override")
    return cfg
