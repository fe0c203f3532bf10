import json

import pytest

from fedcluster.config import Config, ConfigError, config_to_toml, load_config, parse_overrides


def test_defaults_are_the_embedded_digits_run():
    cfg = load_config()
    assert (cfg.data.dataset, cfg.data.num_clients, cfg.cluster.k, cfg.rounds) == (
        "digits", 20, 2, 20)
    assert cfg.clients_per_round == 20


def test_loads_toml_and_json_alike(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text('name = "x"\nrounds = 3\n[data]\nalpha = 0.1\n[cluster]\nk = 3\n')
    js = tmp_path / "a.json"
    js.write_text(json.dumps({"name": "x", "rounds": 3, "data": {"alpha": 0.1},
                              "cluster": {"k": 3}}))
    assert load_config(toml) == load_config(js)
    assert load_config(toml).data.alpha == 0.1


def test_overrides_are_typed_to_the_declared_field(tmp_path):
    cfg = load_config(None, ["rounds=50", "data.alpha=0.1", "cluster.k=3",
                             "model.hidden=[200, 100]", "client.optimizer=sgd", "name=123",
                             "data.alpha=1", "client.drop_last=false"])
    assert cfg.rounds == 50 and cfg.cluster.k == 3
    assert cfg.model.hidden == [200, 100]
    assert cfg.client.optimizer == "sgd"
    assert cfg.name == "123"
    assert cfg.data.alpha == 1.0 and isinstance(cfg.data.alpha, float)
    assert cfg.client.drop_last is False


def test_clients_per_round_count_or_fraction():
    assert load_config(None, ["server.clients_per_round=5"]).clients_per_round == 5
    assert load_config(None, ["server.clients_per_round=0.25"]).clients_per_round == 5
    assert load_config(None, ["server.clients_per_round=1.0"]).clients_per_round == 20


@pytest.mark.parametrize("override, words", [
    ("rounds=-1", ["rounds", "-1", ">= 1"]),
    ("data.alpha=0", ["data.alpha", "0", "> 0"]),
    ("cluster.k=0", ["cluster.k", "0", ">= 1"]),
    ("cluster.k=21", ["cluster.k", "21", "data.num_clients = 20"]),
    ("server.clients_per_round=1.5", ["server.clients_per_round", "fraction"]),
    ("server.clients_per_round=1", ["server.clients_per_round", "cluster.k = 2"]),
    ("client.optimizer=adagrad", ["client.optimizer", "adagrad", "'adam', 'sgd'"]),
    ("rounds=ten", ["rounds", "ten", "an integer"]),
    ("data.partition=dirichelt", ["data.partition", "dirichelt", "'dirichlet'"]),
    ("run.device=gpu", ["run.device", "gpu", "cuda:N"]),
    ("data.dataset=digitz", ["data.dataset", "digitz", "did you mean 'digits'"]),
    ("model.name=digits-cn", ["model.name", "did you mean 'digits-cnn'"]),
])
def test_bad_values_name_key_value_and_expectation(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    for w in words:
        assert w in str(e.value)


def test_unknown_keys_get_a_did_you_mean(tmp_path):
    with pytest.raises(ConfigError, match=r"server\.lamda.*did you mean 'lr'"):
        load_config(None, ["server.lamda=0.5"])
    f = tmp_path / "c.toml"
    f.write_text("[clustre]\nk = 2\n")
    with pytest.raises(ConfigError, match="clustre.*did you mean 'cluster'"):
        load_config(f)
    f.write_text("[data]\nnum_client = 2\n")
    with pytest.raises(ConfigError, match="data.num_client.*did you mean 'num_clients'"):
        load_config(f)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml.*not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = = 3")
    with pytest.raises(ConfigError, match="bad.toml.*not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_overrides(["rounds"])


def test_config_is_frozen_and_round_trips_through_toml(tmp_path):
    cfg = load_config(None, ["cluster.k=3", "model.hidden=[64]"])
    with pytest.raises(AttributeError):
        cfg.rounds = 3  # type: ignore[misc]
    path = tmp_path / "resolved.toml"
    path.write_text(config_to_toml(cfg))
    assert load_config(path) == cfg
    assert isinstance(cfg, Config)
