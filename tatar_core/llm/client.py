"""A small async chat client over the real `openai` SDK: bounded concurrency, timeouts, retries, redaction.

    delay(attempt k ≥ 1) = min(backoff_max_s, backoff_base_s · 2^(k−1)) · U(0.5, 1.5)   [seconds]
    (a 429's Retry-After header, when larger, is used instead, still capped at backoff_max_s)

Retried: 429, 408/409/425, 5xx, timeouts, connection errors, malformed responses, empty content, and replies
that the caller's `check` rejects with ValueError. Not retried: other 4xx (bad request, auth, not found).
At most `endpoint.concurrency` requests are in flight per client. Error texts pass through the redactor, so
the API key never appears in them.
"""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

import openai

from data_contracts.config.rationales import EndpointConfig
from tatar_core.llm.keys import Redactor, SecretResolver, resolve_api_key

T = TypeVar("T")
RETRY_STATUS = {408, 409, 425, 429}


class RequestFailed(RuntimeError):
    """A request failed for good (retries exhausted, or a non-retryable error). The text is redacted."""

    def __init__(self, message: str, attempts: int, retryable: bool):
        super().__init__(message)
        self.attempts = attempts
        self.retryable = retryable


class MalformedResponse(ValueError):
    """The server answered, but without usable content."""


def _retry_after(exc: BaseException) -> Optional[float]:
    resp = getattr(exc, "response", None)
    try:
        v = resp.headers.get("retry-after") if resp is not None else None
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _describe(exc: BaseException) -> tuple[str, bool]:
    """(short description, retryable?) for an exception raised by a request or its check."""
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        retry = code in RETRY_STATUS or code >= 500
        detail = exc.message
        try:
            body = " ".join(exc.response.text.split())
        except Exception:  # noqa: BLE001 - a streamed / unreadable body
            body = ""
        if body and body not in detail:
            detail = f"{detail}: {body[:300]}"
        return f"HTTP {code} {type(exc).__name__}: {detail}", retry
    if isinstance(exc, openai.APITimeoutError):
        return "timeout: no response in time", True
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"connection error: {type(cause).__name__ if cause else exc.message}", True
    if isinstance(
        exc,
        (
            MalformedResponse,
            ValueError,
            openai.APIResponseValidationError,
            AttributeError,
            IndexError,
            TypeError,
            KeyError,
        ),
    ):
        return f"malformed response: {type(exc).__name__}: {exc}", True
    return f"{type(exc).__name__}: {exc}", False


class ChatClient:
    """`await client.complete(messages, …)` → the reply text (or `check(text)`), with retries.

    The underlying `openai.AsyncOpenAI` and the concurrency semaphore are created per event loop, so one
    client can serve several `asyncio.run` calls.
    """

    def __init__(
        self, endpoint: EndpointConfig, api_key: Optional[str] = None, secret_resolver: Optional[SecretResolver] = None
    ):
        self.endpoint = endpoint
        self._key = api_key if api_key is not None else resolve_api_key(endpoint, secret_resolver)
        self.redactor = Redactor([self._key])
        self._loop: Any = None
        self._client: Optional[openai.AsyncOpenAI] = None
        self._sem: Optional[asyncio.Semaphore] = None
        self.n_requests = 0  # requests sent (all attempts)
        self.in_flight = 0
        self.max_in_flight = 0

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)

    def _ensure(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._client = openai.AsyncOpenAI(
                base_url=self.endpoint.base_url, api_key=self._key, max_retries=0, timeout=self.endpoint.timeout_s
            )
            self._sem = asyncio.Semaphore(self.endpoint.concurrency)
        return self._client, self._sem

    def _delay(self, attempt: int, exc: BaseException) -> float:
        ep = self.endpoint
        d = min(ep.backoff_max_s, ep.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
        ra = _retry_after(exc)
        return min(ep.backoff_max_s, max(d, ra)) if ra else d

    async def complete(
        self,
        messages: list[dict],
        *,
        temperature: float,
        top_p: Optional[float] = None,
        max_tokens: int,
        stop: Optional[list[str]] = None,
        check: Callable[[str], T] = lambda t: t,
        extra_body: Optional[dict] = None,
    ) -> T:
        """Send one chat completion (retrying as described above) and return `check(reply_text)`.
        Raises RequestFailed (redacted text, `.attempts`) when it does not succeed."""
        client, sem = self._ensure()
        ep = self.endpoint
        kwargs: dict[str, Any] = {
            "model": ep.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if top_p is not None:
            kwargs["top_p"] = top_p
        if stop:
            kwargs["stop"] = stop
        if extra_body:
            kwargs["extra_body"] = extra_body
        attempts, last = 0, "no attempt made"
        for attempt in range(1, ep.max_retries + 2):
            attempts = attempt
            try:
                async with sem:
                    self.n_requests += 1
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                    try:
                        resp = await client.chat.completions.create(**kwargs)
                    finally:
                        self.in_flight -= 1
                if not getattr(resp, "choices", None):
                    raise MalformedResponse("no choices in the reply")
                text = resp.choices[0].message.content
                if not isinstance(text, str) or not text.strip():
                    raise MalformedResponse("empty content")
                return check(text)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - classified below
                desc, retryable = _describe(e)
                last = self.redact(desc)
                if not retryable:
                    raise RequestFailed(f"{last} (attempt {attempt}, not retried)", attempt, False) from None
                if attempt <= ep.max_retries:
                    await asyncio.sleep(self._delay(attempt, e))
        raise RequestFailed(f"{last} (gave up after {attempts} attempts)", attempts, True)


def run_coroutine(coro_factory) -> Any:
    """Run `coro_factory()` to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    with ThreadPoolExecutor(max_workers=1) as ex:
        return ex.submit(lambda: asyncio.run(coro_factory())).result()
