"""Bearer tokens: the token file, constant-time lookup, and the gate in front of every route."""

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from feedback_monitor.auth import (
    ALL_SCOPES,
    Scope,
    Tokens,
    bearer,
    digest,
    parse_token_file,
    read_token_file,
)
from feedback_monitor.settings import Settings
from feedback_monitor.store.sqlite import SQLiteStore
from tests.asgi import DOC, JSON, assert_documented, exchange, get, post
from tests.stores import ThreadedStore

WRITER, READER, BOTH = "writer-token-0123456789", "reader-token-0123456789", "both-token-0123"
TOKEN_FILE = f"""# token  scopes
{WRITER} write

{READER}   read
{BOTH} write,read
"""
FEEDBACK = {"prediction": 1, "actual": 1}


def test_token_file_gives_each_token_its_scopes() -> None:
    assert parse_token_file(TOKEN_FILE) == [
        (WRITER, frozenset({Scope.WRITE})),
        (READER, frozenset({Scope.READ})),
        (BOTH, ALL_SCOPES),
    ]


def test_a_comment_may_end_a_line_and_a_byte_order_mark_start_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"\ufeff{WRITER} write  # CI\n{READER} read#dashboards\n", encoding="utf-8")
    assert read_token_file(path) == [
        (WRITER, frozenset({Scope.WRITE})),
        (READER, frozenset({Scope.READ})),
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no token in the file"),
        ("# only a comment\n", "no token in the file"),
        ("abc\n", "line 1: expected a token and its scopes"),
        ("abc write\nabc read\n", "a token is listed twice"),
        ("\nabc admin\n", "line 2: scopes are write and read"),
        ("abc write, read\n", "line 1: expected a token and its scopes"),
        ("a\u00e9 write\n", "line 1: a token is letters"),
    ],
)
def test_a_bad_token_file_names_the_line_not_the_token(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        parse_token_file(text)
    assert "abc" not in str(caught.value)


def test_grant_finds_the_token_and_only_it() -> None:
    tokens = Tokens(parse_token_file(TOKEN_FILE))
    grant = tokens.grant(READER.encode())
    assert grant is not None
    assert (grant.scopes, grant.digest) == (frozenset({Scope.READ}), digest(READER.encode()))
    assert tokens.grant(b"reader-token-012345678") is None
    assert tokens.grant(b"") is None


def test_tokens_are_kept_only_as_digests() -> None:
    tokens = Tokens([(WRITER, ALL_SCOPES)])
    assert WRITER.encode() not in repr(vars(tokens)).encode()


def test_no_tokens_configured_means_no_tokens(tmp_path: Path) -> None:
    assert Tokens.load(None, None) is None
    path = tmp_path / "tokens"
    path.write_text(TOKEN_FILE)
    loaded = Tokens.load("api-token", path)
    assert loaded is not None
    assert len(loaded.grants) == 4


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", b"abc"),
        (b"bearer   abc ", b"abc"),
        (b"BEARER abc==", b"abc=="),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (b"", None),
    ],
)
def test_bearer_reads_the_token_of_the_header(header: bytes, token: bytes | None) -> None:
    assert bearer(header) == token


def test_token_settings_are_secret(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKEN_FILE)
    settings = Settings(api_token=SecretStr("secret-token"), token_file=path, protect_reads=True)
    public = settings.public()
    assert "api_token" not in public
    assert "token_file" not in public
    assert public["protect_reads"] is True
    assert "secret-token" not in repr(settings)


def test_reads_cannot_be_protected_without_tokens() -> None:
    with pytest.raises(ValueError, match="protect_reads needs api_token or token_file"):
        Settings(protect_reads=True)


@pytest.mark.parametrize("token", ["two words", "s3cr3t\n", "s3cr3t\r\n", "\ns3cr3t", ""])
def test_a_token_that_cannot_be_sent_is_refused_without_being_shown(token: str) -> None:
    with pytest.raises(ValueError, match="a token is letters") as caught:
        Settings(api_token=SecretStr(token))
    assert (token.strip() or "value=''") not in str(caught.value)


def test_the_api_token_may_not_also_be_in_the_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKEN_FILE)
    with pytest.raises(ValueError, match="api_token is also in token_file") as caught:
        Settings(api_token=SecretStr(READER), token_file=path)
    assert READER not in str(caught.value)
    assert Settings(api_token=SecretStr("another-token"), token_file=path).api_token is not None


def answers(tmp_path: Path, *requests: httpx.Request, **settings: Any) -> list[httpx.Response]:
    path = tmp_path / "tokens"
    path.write_text(TOKEN_FILE)
    store = ThreadedStore(SQLiteStore(tmp_path / "store"))
    return exchange(store, tmp_path, *requests, token_file=path, **settings)


def write(token: str | None, path: str = "/feedback", body: object = FEEDBACK) -> httpx.Request:
    auth = {} if token is None else {"authorization": f"Bearer {token}"}
    return post(body, {**JSON, **auth}, path)


def read(path: str, token: str | None = None) -> httpx.Request:
    return get(path, None if token is None else {"authorization": f"Bearer {token}"})


def test_writes_need_a_token_with_the_write_scope(tmp_path: Path) -> None:
    requests = [write(None), write("wrong"), write(READER), write(WRITER), write(BOTH)]
    responses = answers(tmp_path, *requests)
    assert [r.status_code for r in responses] == [401, 401, 403, 200, 200]
    missing, invalid, forbidden = responses[:3]
    assert missing.headers["www-authenticate"] == 'Bearer realm="feedback-monitor"'
    assert 'error="invalid_token"' in invalid.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]
    assert forbidden.json() == {"error": "The token lacks the write scope"}
    for request, response in zip(requests, responses, strict=True):
        assert_documented(request, response)


def test_refused_tokens_take_turns_too(tmp_path: Path) -> None:
    """Guessing tokens is rate-limited per address like any request without a valid token."""
    guesses = [write(f"guess-{n}") for n in range(12)]
    responses = answers(tmp_path, *guesses, rate_limit=5.0)
    statuses = [r.status_code for r in responses]
    assert statuses[:5] == [401] * 5  # a second's worth, then turns
    assert set(statuses[5:]) <= {401, 429}
    assert 429 in statuses[5:]
    for request, response in zip(guesses, responses, strict=True):
        assert_documented(request, response)


@pytest.mark.parametrize("path", ["/feedback/batch", "/predictions", "/predictions/batch"])
def test_every_write_route_is_protected(tmp_path: Path, path: str) -> None:
    (response,) = answers(tmp_path, write(None, path))
    assert response.status_code == 401
    assert response.json() == {"error": "Missing bearer token (Authorization: Bearer <token>)"}


READS = ["/metrics", "/api/v1/models", "/api/v1/config", "/api/v1/models/m/metrics"]


def test_reads_are_open_unless_protected(tmp_path: Path) -> None:
    responses = answers(tmp_path, *(read(path) for path in READS))
    assert [r.status_code for r in responses] == [200, 200, 200, 404]


def test_protected_reads_need_the_read_scope(tmp_path: Path) -> None:
    requests = [read(path) for path in READS] + [read(path, WRITER) for path in READS]
    requests += [read(path, READER) for path in READS]
    responses = answers(tmp_path, *requests, protect_reads=True)
    assert [r.status_code for r in responses] == [401] * 4 + [403] * 4 + [200, 200, 200, 404]
    for request, response in zip(requests, responses, strict=True):
        if request.url.path in DOC["paths"]:  # the helper does not match path templates
            assert_documented(request, response)


def test_probes_and_the_document_are_never_protected(tmp_path: Path) -> None:
    responses = answers(
        tmp_path, read("/health"), read("/ready"), read("/openapi.json"), protect_reads=True
    )
    assert [r.status_code for r in responses] == [200, 200, 200]


def test_the_api_token_has_every_scope(tmp_path: Path) -> None:
    requests = [write("api-token"), read("/metrics", "api-token")]
    responses = answers(tmp_path, *requests, api_token="api-token", protect_reads=True)
    assert [r.status_code for r in responses] == [200, 200]


def test_refusals_are_counted_as_rejections(tmp_path: Path) -> None:
    *_, metrics = answers(tmp_path, write(None), write(READER), read("/metrics"))
    assert 'feedback_validation_errors_total{reason="unauthorized"} 1.0' in metrics.text
    assert 'feedback_validation_errors_total{reason="forbidden"} 1.0' in metrics.text
    assert 'route="/feedback",status="401"' in metrics.text
