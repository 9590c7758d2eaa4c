"""Typed settings from the environment (prefix ``FEEDBACK_MONITOR_``) and the command line."""

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _seconds_text(value: object) -> object:
    """A duration given as digits (a flag, an environment variable) is seconds."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


class Settings(BaseSettings):
    """Everything the service can be told; built once at start and passed down."""

    model_config = SettingsConfigDict(env_prefix="FEEDBACK_MONITOR_", extra="forbid")

    host: str = Field(default="127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(
        default=5000, ge=0, le=65535, description="TCP port to listen on (0: any free)."
    )
    data_dir: Path = Field(default=Path("./data"), description="Directory of the SQLite store.")
    log_level: LogLevel = Field(
        default=LogLevel.INFO, description="Least severe log level written."
    )
    log_format: LogFormat = Field(
        default=LogFormat.TEXT, description="text, or json: one object a line."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    max_series: int = Field(
        default=1000, ge=1, description="Most (model, version) series kept; more is refused (422)."
    )
    prediction_ttl: Annotated[timedelta, BeforeValidator(_seconds_text)] = Field(
        default=timedelta(days=30),
        gt=timedelta(0),
        description="How long a prediction waits for its label, and an id is remembered "
        "(seconds or ISO 8601, such as P30D).",
    )
    max_batch_items: int = Field(
        default=10_000, ge=1, description="Most items in one batch request (413 above)."
    )
    max_batch_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest batch request body (413 above)."
    )
