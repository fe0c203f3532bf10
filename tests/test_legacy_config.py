"""The reference's utils/conf.json loads unchanged and maps onto fedcluster's config."""

import json
import logging

import pytest

from fedcluster.build import build_context
from fedcluster.config import ConfigError, load_config
from fedcluster.legacy import LEGACY_KEYS, NOTIFY_KEYS

# the reference README's conf.json (comments removed), every documented key
README_CONF = {
    "model_name": "resnet18", "type": "cifar", "global_epochs": 50, "local_epochs": 3,
    "alpha": 0.05, "k": 3, "batch_size": 32, "lr": 0.005, "lambda": 0.1,
    "accuracy_difference_threshold": 0.0001, "loss_difference_threshold": 0.0001,
    "is_push_enable": True, "push_type": "telegram", "proxy_type": "socks5",
    "proxy_host": "127.0.0.1", "proxy_port": 1080, "proxy_username": None,
    "proxy_password": None, "telegram_id": "123456789", "api_key": "xxxxxxx:xxxxxxxxxx",
}
# an older version of its utils/conf.json: SGD with momentum and ReduceLROnPlateau keys
OLD_CONF = {
    "model_name": "mnist-cnn", "type": "mnist", "global_epochs": 10, "local_epochs": 3,
    "alpha": 0.05, "k": 1, "batch_size": 32, "lr": 0.05, "factor": 0.1, "patience": 10,
    "momentum": 0.9, "lambda": 0.1, "accuracy_difference_threshold": 0.0001,
    "loss_difference_threshold": 0.0001, "is_push_enable": False, "push_type": "telegram",
    "proxy_type": None, "proxy_host": None, "proxy_port": None, "proxy_username": None,
    "proxy_password": None, "telegram_id": "1", "api_key": "2",
}


def _write(tmp_path, data, name="conf.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_readme_conf_maps_every_key(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fedcluster"):
        cfg = load_config(_write(tmp_path, README_CONF))
    assert cfg.model.name == "resnet18" and cfg.data.dataset == "cifar"
    assert cfg.rounds == 50 and cfg.client.local_epochs == 3
    assert cfg.data.alpha == 0.05 and cfg.data.partition == "dirichlet"
    assert cfg.cluster.k == 3 and cfg.client.batch_size == 32
    assert cfg.client.lr == 0.005 and cfg.client.optimizer == "adam"
    assert cfg.server.lr == 0.1 and cfg.server.clients_per_round == 1.0
    assert cfg.stop.accuracy_delta == 0.0001 and cfg.stop.loss_delta == 0.0001
    assert cfg.seed == 5 and cfg.name == "cifar-resnet18"
    assert cfg.data.root == "data"  # so cifar is looked up in ./data/cifar-10
    mapped = [r for r in caplog.records if "reference program's format" in r.getMessage()]
    assert len(mapped) == 1  # said once
    assert "lambda -> server.lr" in mapped[0].getMessage()


def test_push_keys_map_onto_telegram_notifications(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fedcluster"):
        cfg = load_config(_write(tmp_path, README_CONF), environ={})
    tg = cfg.notify.telegram
    assert tg.chat_id == "123456789" and tg.token == "xxxxxxx:xxxxxxxxxx"
    assert tg.proxy == "socks5://127.0.0.1:1080"
    assert "push -> notify.telegram" in caplog.text
    auth = {**README_CONF, "proxy_type": "http", "proxy_username": "u", "proxy_password": "p"}
    assert load_config(_write(tmp_path, auth), environ={}).notify.telegram.proxy == \
        "http://u:p@127.0.0.1:1080"
    odd = {**auth, "proxy_username": "me@corp", "proxy_password": "p@ss:w/rd"}  # URL-escaped
    assert load_config(_write(tmp_path, odd), environ={}).notify.telegram.proxy == \
        "http://me%40corp:p%40ss%3Aw%2Frd@127.0.0.1:1080"


def test_push_disabled_or_unsupported_maps_nothing(tmp_path, caplog):
    off = load_config(_write(tmp_path, {**README_CONF, "is_push_enable": False}), environ={})
    assert not off.notify.telegram.chat_id and not off.notify.telegram.token
    with caplog.at_level(logging.WARNING, logger="fedcluster"):
        other = load_config(_write(tmp_path, {**README_CONF, "push_type": "wechat"}), environ={})
    assert not other.notify.telegram.token
    assert "push_type = 'wechat' is not supported" in caplog.text


def test_old_conf_with_momentum_and_scheduler_keys(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fedcluster"):
        cfg = load_config(_write(tmp_path, OLD_CONF))
    assert cfg.client.optimizer == "sgd" and cfg.client.momentum == 0.9
    assert cfg.model.name == "mnist-cnn" and cfg.cluster.k == 1
    assert "not applied: factor, patience" in caplog.text


def test_overrides_apply_after_mapping(tmp_path):
    cfg = load_config(_write(tmp_path, OLD_CONF), ["data.num_clients=4", "rounds=2"])
    assert cfg.data.num_clients == 4 and cfg.rounds == 2


def test_unknown_and_null_keys_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="unknown conf.json key 'global_epoch'.*did you mean"):
        load_config(_write(tmp_path, {**OLD_CONF, "global_epoch": 3}))
    with pytest.raises(ConfigError, match="'lr' \\(-> client.lr\\) is null"):
        load_config(_write(tmp_path, {**OLD_CONF, "lr": None}))
    with pytest.raises(ConfigError, match="client.lr = -1"):
        load_config(_write(tmp_path, {**OLD_CONF, "lr": -1}))


def test_table_covers_the_documented_keys():
    documented = set(README_CONF) - set(NOTIFY_KEYS)
    assert documented <= set(LEGACY_KEYS)


def test_data_is_looked_up_where_the_reference_kept_it(tmp_path, monkeypatch):
    from _datafiles import write_mnist

    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data", n_train=40, n_test=20)  # ./data/mnist/MNIST/raw
    cfg = load_config(_write(tmp_path, OLD_CONF), ["data.num_clients=2", "data.min_size=1"])
    ctx = build_context(cfg)
    assert ctx.federation.dataset.train_x.shape == (40, 1, 28, 28)
    assert ctx.model.numel == 28_938
