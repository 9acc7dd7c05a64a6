"""SQLAlchemy declarative models for fcsync; importable without a database."""

from __future__ import annotations

from models.account import Account
from models.base import Base, UTCDateTime
from models.feature import AccountFeature, AccountOwner, Balance
from models.refresh import Refresh
from models.transaction import Transaction
from models.webhook_event import WebhookEvent

__all__ = [
    "Account",
    "AccountFeature",
    "AccountOwner",
    "Balance",
    "Base",
    "Refresh",
    "Transaction",
    "UTCDateTime",
    "WebhookEvent",
]
