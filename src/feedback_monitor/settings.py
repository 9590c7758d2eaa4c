"""Typed settings from the environment (prefix ``FEEDBACK_MONITOR_``) and the command line."""

import json
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from feedback_monitor.auth import check_token, read_token_file
from feedback_monitor.confusion import Costs
from feedback_monitor.windows import Retention, parse_duration


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _duration_text(value: object) -> object:
    """A duration given as text (a flag, an environment variable): digits are seconds, a number
    with a unit is as in ``retention`` (``30d``), and ISO 8601 (``P30D``) is pydantic's."""
    if not isinstance(value, str) or value.strip().upper().lstrip("-").startswith("P"):
        return value
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(
            f"not a duration: {value!r} (seconds, a number with s, m, h, d or w such as 30d,"
            " or ISO 8601 such as P30D)"
        ) from None


def _retention(value: object) -> object:
    return Retention.parse(value) if isinstance(value, str) else value


def _token(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        check_token(value.get_secret_value())
    return value


def _token_file(value: Path | None) -> Path | None:
    if value is not None:
        read_token_file(value)  # a bad file stops the start, with the line that is wrong
    return value


def _json_text(value: object) -> object:
    """A flag gives JSON as text (the environment is decoded by pydantic-settings)."""
    return json.loads(value) if isinstance(value, str) else value


# The most an outcome may be worth either way: a window's value, up to 2**63 outcomes at that,
# stays a finite number (a sum of huge values could overflow to inf - inf, which is NaN).
MAX_OUTCOME_VALUE = 1e12
_Value = Annotated[float, Field(ge=-MAX_OUTCOME_VALUE, le=MAX_OUTCOME_VALUE)]


class CostMatrix(BaseModel, extra="forbid", allow_inf_nan=False):
    """The value of each outcome (a cost is negative), as in NannyML's business value."""

    tp: _Value = 0.0
    tn: _Value = 0.0
    fp: _Value = 0.0
    fn: _Value = 0.0

    def costs(self) -> Costs:
        return Costs(self.tp, self.tn, self.fp, self.fn)


class Settings(BaseSettings):
    """Everything the service can be told; built once at start and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="FEEDBACK_MONITOR_",
        extra="forbid",
        hide_input_in_errors=True,  # tokens
    )

    host: str = Field(default="127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(
        default=5000, ge=0, le=65535, description="TCP port to listen on (0: any free)."
    )
    data_dir: Path = Field(default=Path("./data"), description="Directory of the SQLite store.")
    store: str = Field(
        default="",
        pattern=r"^(postgres(ql)?://.*)?$",
        description="A PostgreSQL database shared by every replica, such as "
        "postgresql://user:password@host/db; empty (the default): SQLite under data_dir. A flag "
        "shows in the process list: give a password in the environment variable.",
    )
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
        default=1000,
        ge=1,
        description="Most (model, version) series kept; more is refused (422). Series are kept "
        "for good, their counts being the truth: raise the cap for new versions. The cap is "
        "shared: any writer may fill it, so give write tokens only to trusted clients.",
    )
    prediction_ttl: Annotated[timedelta, BeforeValidator(_duration_text)] = Field(
        default=timedelta(days=30),
        ge=timedelta(seconds=1),  # the expiry sweep runs every tenth of it
        description="How long a prediction waits for its label, and an id is remembered, from "
        "when it was stored or labelled (seconds, a number with a unit such as 30d, or ISO 8601 "
        "such as P30D; at least 1 s).",
    )
    max_batch_items: int = Field(
        default=10_000, ge=1, description="Most items in one batch request (413 above)."
    )
    max_batch_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest batch request body (413 above)."
    )
    retention: Annotated[
        Retention, NoDecode, BeforeValidator(_retention), PlainSerializer(str, return_type=str)
    ] = Field(
        default=Retention(),
        description="How long time buckets are kept per resolution, each a number with a unit "
        "(s, m, h, d or w) or forever, such as minute=2d,hour=90d,day=forever (the defaults).",
    )
    # NoDecode: the environment's text goes through _json_text too, so bad JSON there is an
    # invalid setting like bad JSON in the flag, not pydantic-settings' own error.
    costs: Annotated[dict[str, CostMatrix], NoDecode, BeforeValidator(_json_text)] = Field(
        default_factory=dict,
        description='JSON: the value of each outcome for a window\'s "value", for every series '
        '("*"), a model ("fraud") or one version ("fraud:v2"), such as '
        '{"*": {"tp": 10, "fp": -5, "fn": -50}}; each value at most 1e12 either way. A series '
        'takes the first key given of "model:version", "model" and "*" (a model whose name has a '
        "colon may so match a version's key). Without it windows carry no value.",
    )
    api_token: Annotated[SecretStr | None, AfterValidator(_token)] = Field(
        default=None,
        description="A bearer token with every scope: writes then need "
        "'Authorization: Bearer <token>'. Never logged nor shown, but a flag shows in the "
        "process list: give it in the environment variable or token_file.",
    )
    token_file: Annotated[Path | None, AfterValidator(_token_file)] = Field(
        default=None,
        description="A file of bearer tokens, one a line with its scopes: "
        "'<token> write', '<token> read' or '<token> write,read'; # starts a comment.",
    )
    protect_reads: bool = Field(
        default=False,
        description="Reads (/metrics and /api/v1/..., which the dashboard reads) need a token "
        "with the read scope too; /health, /ready, /openapi.json and the dashboard's page never "
        "do.",
    )
    rate_limit: float | None = Field(
        default=None,
        ge=0.001,
        allow_inf_nan=False,
        description="Requests a second allowed per client (per token when authenticated, else "
        "per address, an IPv6 /64: behind a proxy, its clients share its address), in bursts of "
        "one second's worth; 429 beyond. /health, /ready, /openapi.json and the dashboard's "
        "files are not limited. Off by default.",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a client has to send a request's headers; the connection is closed "
        "after them.",
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a request body may pause between two chunks (408 after them).",
    )
    write_timeout: float = Field(
        default=5.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds a write may wait for the store's commit (a disk or database that "
        "hangs); then it gets a 503 that says it may still be stored, and writes queued behind "
        "it a 503 too. A retry with the same ids is counted once. Reads of windows, series and "
        "drift get a 503 after as long.",
    )
    shutdown_timeout: int = Field(
        default=20,
        ge=1,
        description="Seconds a graceful shutdown (SIGTERM) waits for the requests in progress; "
        "those still waiting then get a 503 (one whose write was handed in says it may be "
        "stored). Below Kubernetes' default grace period of 30 s.",
    )

    @model_validator(mode="after")
    def _reads_need_tokens(self) -> Self:
        if self.protect_reads and self.api_token is None and self.token_file is None:
            raise ValueError("protect_reads needs api_token or token_file")
        return self

    @model_validator(mode="after")
    def _each_token_once(self) -> Self:
        # api_token has every scope; the file's line for the same token would take some away.
        if self.api_token is not None and self.token_file is not None:
            token = self.api_token.get_secret_value()
            if any(listed == token for listed, _ in read_token_file(self.token_file)):
                raise ValueError("api_token is also in token_file: a token is listed twice")
        return self

    def costs_of(self, model: str, version: str) -> Costs | None:
        """The most specific cost matrix configured for a series, if any."""
        for key in (f"{model}:{version}", model, "*"):
            if key in self.costs:
                return self.costs[key].costs()
        return None

    def public(self) -> dict[str, Any]:
        """The settings as JSON values, secrets left out (for /api/v1/config and reports)."""
        return self.model_dump(mode="json", exclude=SECRETS)


SECRETS: set[str] = {"api_token", "token_file", "store"}  # store: its URL may hold a password
"""Settings never shown: tokens and their files."""


def shown_defaults() -> dict[str, str | None]:
    """Each setting's default as ``--help`` and the configuration reference show it: text, ""
    when empty, None when unset (read without the environment)."""
    defaults = Settings.model_construct().model_dump(mode="json")
    return {
        name: value if value is None or isinstance(value, str) else json.dumps(value)
        for name, value in defaults.items()
    }
