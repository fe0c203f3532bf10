"""The reference program's ``utils/conf.json``, mapped onto fedcluster's config.

A JSON file whose top level holds the reference's flat keys (``model_name``,
``type``, ``global_epochs``, ...) is translated with the table below before the
usual validation; the translation is logged once. Data is then looked up where
the reference kept it: ``./data/mnist``, ``./data/cifar-10``, ``./data/dog-and-cat``
(fedcluster's default ``data.root = "data"`` gives exactly these).
"""

from __future__ import annotations

import logging
from typing import Any

from .config import ConfigError
from .notify.reference import REFERENCE_PUSH_KEYS, notify_from_reference
from .registry import did_you_mean

__all__ = ["LEGACY_KEYS", "NOTIFY_KEYS", "from_legacy", "is_legacy"]

log = logging.getLogger(__name__)

# reference key -> fedcluster key
LEGACY_KEYS: dict[str, str] = {
    "model_name": "model.name",
    "type": "data.dataset",  # mnist, cifar (= cifar10), dog-and-cat
    "global_epochs": "rounds",
    "local_epochs": "client.local_epochs",
    "alpha": "data.alpha",
    "k": "cluster.k",
    "batch_size": "client.batch_size",
    "lr": "client.lr",
    "momentum": "client.momentum",  # older reference versions: SGD with momentum
    "lambda": "server.lr",  # applied as global + lambda * (mean(local) - global)
    "accuracy_difference_threshold": "stop.accuracy_delta",
    "loss_difference_threshold": "stop.loss_delta",
}

# what the reference did without a key for it
IMPLIED: dict[str, Any] = {
    "seed": 5,  # seed_everything(5)
    "data.partition": "dirichlet",
    "server.clients_per_round": 1.0,  # every client in every round
    "client.optimizer": "adam",  # "sgd" when the file has "momentum"
}

# accepted, no fedcluster equivalent: ReduceLROnPlateau settings of an older version
NOT_APPLIED = ("factor", "patience")

# ---- notifications: the reference's push and proxy keys (-> [notify.telegram])
NOTIFY_KEYS = REFERENCE_PUSH_KEYS


KNOWN = (*LEGACY_KEYS, *NOT_APPLIED, *NOTIFY_KEYS)


def is_legacy(data: dict[str, Any]) -> bool:
    """True for a reference-style flat file: its marker keys at the top level."""
    return bool({"model_name", "type", "global_epochs"} & set(data))


def _set(out: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, key = dotted.split(".")
    node = out
    for s in sections:
        node = node.setdefault(s, {})
    node[key] = value


def _notify(data: dict[str, Any], out: dict[str, Any]) -> str:
    """Map the push keys onto [notify.telegram]; say what happened."""
    present = [k for k in NOTIFY_KEYS if data.get(k) is not None]
    if not present or not data.get("is_push_enable"):
        return "push disabled" if present else ""
    try:
        out["notify"] = notify_from_reference(data)
    except ValueError:
        log.warning("conf.json: push_type = %r is not supported (telegram is); push keys "
                    "not applied", data.get("push_type"))
        return "push keys not applied"
    return "push -> notify.telegram (chat_id, token, proxy)"


def from_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """fedcluster's config tables for a reference ``conf.json`` (its keys all accepted)."""
    for key in data:
        if key not in KNOWN:
            raise ConfigError(f"unknown conf.json key {key!r}{did_you_mean(key, KNOWN)}; the "
                              f"reference's keys are: {', '.join(KNOWN)}")
    out: dict[str, Any] = {}
    for dotted, value in IMPLIED.items():
        _set(out, dotted, value)
    for key, dotted in LEGACY_KEYS.items():
        if key not in data:
            continue
        if data[key] is None:
            raise ConfigError(f"conf.json key {key!r} (-> {dotted}) is null; give a value")
        _set(out, dotted, data[key])
    if "momentum" in data:
        _set(out, "client.optimizer", "sgd")
    if data.get("type") and data.get("model_name"):
        out["name"] = f"{data['type']}-{data['model_name']}"
    ignored = [k for k in NOT_APPLIED if k in data]
    notes = [_notify(data, out)] + ([f"not applied: {', '.join(ignored)}"] if ignored else [])
    log.warning("conf.json is in the reference program's format; mapped onto fedcluster's "
                "config: %s%s", ", ".join(f"{k} -> {v}" for k, v in LEGACY_KEYS.items()
                                          if k in data),
                "".join(f"; {n}" for n in notes if n))
    return out
