"""MLflow: one MLflow run per fedcluster run (optional extra: ``pip install
"fedcluster[mlflow]"``).

Parameters: the resolved config, flat (``data.dataset``, ``cluster.k``, ...; secrets
masked). Metrics, with the round as step: :func:`~.scalars.round_scalars` (overall and
per-cluster accuracy, top-5, loss, size; SSE, ARI/NMI where known; ...). At the end the
run directory's models, report, summary, config and metrics as artifacts, and the MLflow
run is marked FINISHED, FAILED or KILLED. ``mlflow.tracking_uri`` picks the store:
MLflow's default (``MLFLOW_TRACKING_URI``, else a store in the current directory, which
``mlflow ui`` started there shows), an ``http://`` tracking server, or a database URI.

The client is MLflow's own ``MlflowClient`` bound to that URI and this run's id: no
global "active run" is set, so a notebook's own MLflow runs are left alone. Requests to
a tracking server get ``mlflow.timeout_s`` each and 2 retries (unless the
``MLFLOW_HTTP_REQUEST_*`` variables say otherwise), so an unreachable server costs
seconds, then one warning (see :mod:`.tracker`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import secrets
from ..config import MlflowConfig
from ..extras import require_extra
from ..records import RoundResult, RunContext, RunSummary
from .scalars import round_scalars
from .tracker import Tracker, artifact_paths, config_params, finished_status

__all__ = ["MlflowTracker"]

BATCH = 100  # MLflow's limit of parameters per log_batch call
PARAM_CHARS = 6000  # MLflow's longest parameter value
STATUS = {"completed": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


@contextmanager
def _bounded_requests(timeout_s: float) -> Iterator[None]:
    """MLflow's HTTP timeout and retries bounded while inside (the user's own
    ``MLFLOW_HTTP_REQUEST_*`` settings win); the environment is restored after."""
    bounds = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, round(timeout_s))),
              "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
              "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    added = [k for k in bounds if k not in os.environ]
    os.environ.update({k: bounds[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, cfg: MlflowConfig) -> None:
        require_extra("mlflow")
        super().__init__(secrets.url_secrets(cfg.tracking_uri))
        self.cfg = cfg
        self.client: Any = None
        self.run_id = ""
        self.run_dir: Path | None = None

    def _start(self, ctx: RunContext) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.run_dir = ctx.run_dir
        name = ctx.run_dir.name if ctx.run_dir is not None else ctx.config.name
        with _bounded_requests(self.cfg.timeout_s):
            client = MlflowClient(self.cfg.tracking_uri or None)
            found = client.get_experiment_by_name(self.cfg.experiment)
            exp = found.experiment_id if found else client.create_experiment(self.cfg.experiment)
            tags = {"fedcluster.dataset": ctx.config.data.dataset,
                    "fedcluster.method": ctx.config.cluster.method,
                    "fedcluster.run_dir": str(ctx.run_dir or "")}
            self.run_id = client.create_run(exp, run_name=name, tags=tags).info.run_id
            self.client = client
            params = [Param(k, v[:PARAM_CHARS]) for k, v in config_params(ctx.config).items()]
            for i in range(0, len(params), BATCH):
                client.log_batch(self.run_id, params=params[i:i + BATCH])

    def _round(self, result: RoundResult) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, result.round) for k, v in round_scalars(result).items()]
        with _bounded_requests(self.cfg.timeout_s):
            self.client.log_batch(self.run_id, metrics=metrics)

    def _end(self, summary: RunSummary) -> None:
        with _bounded_requests(self.cfg.timeout_s):
            for path in artifact_paths(self.run_dir):
                if path.is_dir():
                    self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
                else:
                    self.client.log_artifact(self.run_id, str(path))
            self.client.set_tag(self.run_id, "fedcluster.reason", summary.reason)
            self.client.set_terminated(self.run_id, STATUS[finished_status(summary)])

    def _abandon(self) -> None:
        if self.client is not None and self.run_id:
            with _bounded_requests(min(self.cfg.timeout_s, 2.0)):
                self.client.set_terminated(self.run_id, "FAILED")
