"""Security floors and fixes (issue 13, point 5)."""

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _floor(name: str) -> tuple[int, ...]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(rf"{name}\s*[<>=!~]", d)]
    floors = re.findall(r">=\s*([0-9.]+)", spec)
    assert floors, f"{name} has no lower bound: {spec!r}"
    return max(tuple(int(p) for p in f.split(".")) for f in floors)


def test_torch_floor_excludes_the_weights_only_bypass():
    # CVE-2025-32434: torch.load(weights_only=True) could run code before torch 2.6
    assert _floor("torch") >= (2, 6)
    assert _floor("torchvision") >= (0, 21)  # built against torch 2.6


class SlowService:
    """A push service that takes one message per ``min_interval`` seconds."""

    name, max_chars, min_interval = "slow", None, 0.2

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message) -> None:
        self.sent.append(message.event)

    def close(self) -> None:
        pass


def test_the_final_and_failure_messages_overtake_waiting_progress_messages():
    from fedcluster.notify.base import Message
    from fedcluster.notify.sender import Sender

    for last in ("end", "error"):
        service = SlowService()
        sender = Sender(service)
        sender.submit(Message("start", "s"))
        for r in range(30):
            sender.submit(Message("round", f"round {r}"))
        sender.submit(Message(last, "done"))
        # 30 progress messages at 5 a second would take 6 s; close waits 1 s: room for
        # about 5 messages, the first of them possibly taken before the last was queued
        assert not sender.close(timeout=1.0)
        assert last in service.sent[:3], service.sent
        assert service.sent[0] in ("start", last)
