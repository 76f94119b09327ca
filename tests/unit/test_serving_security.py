"""serving/security.py and serving/limits.py without a server: key parsing, comparison,
filename sanitising, the body deadline, and settings validation."""

from __future__ import annotations

import asyncio
import hmac
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from product_classifier.serving import security
from product_classifier.serving.limits import BodyTimeoutError, BodyTimeoutMiddleware
from product_classifier.serving.security import (
    ApiKeyMiddleware,
    presented_key,
    sanitize_filename,
)
from product_classifier.serving.settings import SettingsError, load_settings

KEY = "k" * 16


def test_presented_key_prefers_x_api_key_then_bearer() -> None:
    assert presented_key([(b"x-api-key", b" abc ")]) == b"abc"
    assert presented_key([(b"authorization", b"Bearer tok")]) == b"tok"
    assert presented_key([(b"authorization", b"BEARER  tok ")]) == b"tok"
    assert presented_key([(b"authorization", b"Bearer tok"), (b"x-api-key", b"k")]) == b"k"
    assert presented_key([(b"authorization", b"Basic dXNlcg==")]) is None
    assert presented_key([(b"authorization", b"Bearer a b")]) is None
    assert presented_key([(b"x-api-key", b"   ")]) is None
    assert presented_key([]) is None


def test_accepts_exactly_the_configured_keys() -> None:
    auth = ApiKeyMiddleware(lambda *a: None, api_keys=[SecretStr(KEY), "second-key-0123456"])  # type: ignore[arg-type]
    assert auth.accepts(KEY.encode())
    assert auth.accepts(b"second-key-0123456")
    assert not auth.accepts(KEY[:-1].encode())
    assert not auth.accepts(KEY.encode() + b"\0")
    assert not auth.accepts(b"")
    assert not auth.accepts(None)


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return compare(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    auth = ApiKeyMiddleware(lambda *a: None, api_keys=[KEY, "x" * 40, "y" * 20])  # type: ignore[arg-type]
    assert auth.accepts(KEY.encode())  # the first key matches...
    assert len(calls) == 3  # ...and the others are still compared: no early exit
    assert all(sizes == (32, 32) for sizes in calls)  # fixed-size digests, not raw keys


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("shirt.png", "shirt.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\boot.jpg", "boot.jpg"),
        ("a<b>c.png", "a_b_c.png"),
        ("tab\there.png", "tab_here.png"),
        ("..", None),
        ("/", None),
        ("", None),
        (None, None),
        ("ünïcødé 👟.webp", "ünïcødé 👟.webp"),
        ("invoice\u202egnp.exe", "invoice_gnp.exe"),  # right-to-left override
    ],
)
def test_sanitize_filename(raw: str | None, clean: str | None) -> None:
    assert sanitize_filename(raw) == clean


@given(st.text(max_size=600))
def test_sanitized_filenames_are_never_paths(name: str) -> None:
    clean = sanitize_filename(name)
    if clean is not None:
        assert 0 < len(clean) <= 255
        assert not any(c in clean for c in '/\\<>:"|?*')
        assert all(unicodedata.category(c)[0] != "C" for c in clean)
        assert clean not in {".", ".."}


def test_body_deadline_raises_408_for_a_stalled_body() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        while (await receive()).get("more_body"):
            pass

    async def trickle():  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.01)
        return {"type": "http.request", "body": b"x", "more_body": True}

    async def run() -> None:
        middleware = BodyTimeoutMiddleware(app, timeout_s=0.1)
        await middleware({"type": "http"}, trickle, None)  # type: ignore[arg-type]

    with pytest.raises(BodyTimeoutError) as info:
        asyncio.run(run())
    assert info.value.status_code == 408 and info.value.code == "request_timeout"


def test_body_deadline_leaves_complete_bodies_and_later_reads_alone() -> None:
    messages = [
        {"type": "http.request", "body": b"a", "more_body": True},
        {"type": "http.request", "body": b"b", "more_body": False},
    ]
    seen = []

    async def receive():  # type: ignore[no-untyped-def]
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.3)  # waiting for a disconnect: longer than the deadline
        return {"type": "http.disconnect"}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        for _ in range(3):
            seen.append(await receive())

    asyncio.run(BodyTimeoutMiddleware(app, timeout_s=0.1)({"type": "http"}, receive, None))  # type: ignore[arg-type]
    assert [m["type"] for m in seen] == ["http.request", "http.request", "http.disconnect"]


def test_short_api_keys_are_refused_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCT_CLASSIFIER_API_KEYS", f"{KEY},tooshort-secret")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "PRODUCT_CLASSIFIER_API_KEYS" in str(info.value)
    assert "tooshort-secret" not in str(info.value) and KEY not in str(info.value)


def test_api_keys_and_body_timeout_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCT_CLASSIFIER_API_KEYS", f'["{KEY}", "{KEY}x"]')
    monkeypatch.setenv("PRODUCT_CLASSIFIER_BODY_TIMEOUT_S", "2.5")
    settings = load_settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, KEY + "x"]
    assert settings.body_timeout_s == 2.5
    assert KEY not in repr(settings)
    monkeypatch.delenv("PRODUCT_CLASSIFIER_API_KEYS")
    monkeypatch.delenv("PRODUCT_CLASSIFIER_BODY_TIMEOUT_S")
    assert load_settings().api_keys == []
