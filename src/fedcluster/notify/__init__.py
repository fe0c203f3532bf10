"""Push notifications: Telegram and a generic webhook, sent off the training thread."""

from .base import Message, Notifier, RetryAfter, SendError, split_text
from .reference import notify_from_reference
from .sender import MaskSecrets, Sender
from .telegram import TelegramNotifier
from .transport import MissingDependency
from .webhook import WebhookNotifier

__all__ = [
    "MaskSecrets",
    "Message",
    "MissingDependency",
    "Notifier",
    "RetryAfter",
    "SendError",
    "Sender",
    "TelegramNotifier",
    "WebhookNotifier",
    "notify_from_reference",
    "split_text",
]
