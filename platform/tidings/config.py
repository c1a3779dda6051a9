"""Settings from the environment (``TIDINGS_*``), validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

COMPONENTS = ("gateway", "delivery")
"""What ``tidings serve`` can run alone; ``tidings up`` runs them all."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="forbid")

    engine: Literal["embedded"] = "embedded"
    data_dir: Path = Path(".tidings-data")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = ""
    """Base of absolute blob URLs; empty means URLs relative to the gateway."""
    region: str = Field(default="local", pattern=r"^[a-z0-9-]{1,40}$")
    partitions: int = Field(default=8, ge=1, le=1024)
    dev_mode: bool = True
    """Dev mode logs one-time codes instead of sending SMS. Never in production."""
    inbox_poll_interval: float = Field(default=2.0, gt=0)
    max_in_flight: int = Field(default=32, ge=1, le=1024)
    heartbeat_timeout_s: float = Field(default=90.0, gt=0)
    log_level: str = "info"
