"""The [notify] config: environment secrets win, secrets are masked everywhere, bad values
are refused before any work, and the reference's push keys map onto it."""

from __future__ import annotations

import json

import pytest

from fedcluster.config import ConfigError, config_to_toml, load_config
from fedcluster.notify import notify_from_reference
from fedcluster.secrets import mask_text, mask_url

TOKEN = "987654:ENV-SECRET"


def test_env_token_wins_over_file(tmp_path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[notify.telegram]\nchat_id = "5"\ntoken = "111:FILE"\n'
                    'api_url = "http://127.0.0.1:9"\nevery = 3\n')
    assert load_config(path, environ={}).notify.telegram.token == "111:FILE"
    cfg = load_config(path, environ={"FEDCLUSTER_TELEGRAM_TOKEN": TOKEN})
    t = cfg.notify.telegram
    assert (t.token, t.chat_id, t.every, t.enabled) == (TOKEN, "5", 3, True)


def test_env_proxy_password_joins_the_proxy_url() -> None:
    cfg = load_config(None, ["notify.telegram.chat_id=1",
                             "notify.telegram.proxy=socks5://bob@10.0.0.1:1080"],
                      environ={"FEDCLUSTER_TELEGRAM_TOKEN": TOKEN,
                               "FEDCLUSTER_PROXY_PASSWORD": "p@ss:w/rd"})
    assert cfg.notify.telegram.proxy == "socks5://bob:p%40ss%3Aw%2Frd@10.0.0.1:1080"
    assert "p@ss:w/rd" in cfg.notify.secrets()


def test_secrets_masked_in_saved_config_and_repr() -> None:
    cfg = load_config(None, ["notify.telegram.chat_id=1",
                             "notify.telegram.proxy=http://bob:hunter22@proxy:3128",
                             "notify.webhook.url=https://hooks.example/T0/B1/XYZSECRET"],
                      environ={"FEDCLUSTER_TELEGRAM_TOKEN": TOKEN})
    text = config_to_toml(cfg) + repr(cfg) + str(cfg.to_dict())
    for secret in (TOKEN, "hunter22", "XYZSECRET"):
        assert secret not in text
    assert 'proxy = "http://bob:***@proxy:3128"' in config_to_toml(cfg)
    assert cfg.to_dict(reveal_secrets=True)["notify"]["telegram"]["token"] == TOKEN


@pytest.mark.parametrize(("overrides", "env", "match"), [
    (["notify.telegram.chat_id=1"], {}, "FEDCLUSTER_TELEGRAM_TOKEN"),
    (["notify.telegram.chat_id=1", "notify.telegram.proxy=ftp://h:1"], {"T": 1},
     "socks5://, socks5h://, http://, https://"),
    (["notify.telegram.chat_id=1", "notify.telegram.proxy=socks5://u:pw@h"], {"T": 1},
     "a port for the SOCKS proxy"),
    (["notify.telegram.every=-1"], {}, r"notify.telegram.every = -1: expected an integer >= 0"),
    (["notify.telegram.api_url=api.telegram.org"], {}, "notify.telegram.api_url"),
    (["notify.webhook.url=hooks.example/x"], {}, "notify.webhook.url"),
    ([], {"FEDCLUSTER_PROXY_PASSWORD": "pw"}, "has no user name"),
    (["notify.telegram.chat_ide=1"], {}, "did you mean 'chat_id'"),
])
def test_bad_notify_values_are_refused(overrides, env, match) -> None:
    env = {("FEDCLUSTER_TELEGRAM_TOKEN" if k == "T" else k): (TOKEN if v == 1 else v)
           for k, v in env.items()}
    with pytest.raises(ConfigError, match=match) as e:
        load_config(None, overrides, environ=env)
    assert TOKEN not in str(e.value) and "pw@" not in str(e.value)


def test_token_never_in_error_for_malformed_token() -> None:
    with pytest.raises(ConfigError, match="hidden") as e:
        load_config(None, ["notify.telegram.chat_id=1"],
                    environ={"FEDCLUSTER_TELEGRAM_TOKEN": "12 34/SECRETPART"})
    assert "SECRETPART" not in str(e.value)


def test_mask_helpers() -> None:
    assert mask_url("socks5h://u:secret@h:1080") == "socks5h://u:***@h:1080"
    assert mask_url("http://h:1") == "http://h:1"
    assert mask_text("a tok b tokx", ["tok", "tokx"]) == "a *** b ***"


def test_reference_push_keys_map_onto_notify(tmp_path) -> None:
    conf = {"is_push_enable": True, "push_type": "telegram", "proxy_type": "socks5",
            "proxy_host": "127.0.0.1", "proxy_port": 7890, "proxy_username": "me",
            "proxy_password": "p w", "telegram_id": 123456789, "api_key": "42:REF"}
    section = notify_from_reference(conf)
    assert section == {"telegram": {"chat_id": "123456789", "token": "42:REF",
                                    "proxy": "socks5://me:p%20w@127.0.0.1:7890"}}
    path = tmp_path / "mapped.json"  # the mapped section loads as a valid config
    path.write_text(json.dumps({"notify": section}))
    telegram = load_config(path, environ={}).notify.telegram
    assert telegram.enabled and telegram.every == 1 and telegram.token == "42:REF"
    assert notify_from_reference({**conf, "is_push_enable": False}) == {}
    assert "proxy" not in notify_from_reference({**conf, "proxy_host": ""})["telegram"]
    with pytest.raises(ValueError, match="push_type"):
        notify_from_reference({**conf, "push_type": "wechat"})
