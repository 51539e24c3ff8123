"""API keys for OpenAI-compatible endpoints: lookup (env var or an injected secret resolver) and redaction.

`tatar_core` never imports Prefect: the flow layer passes `secret_resolver(name) -> str` that reads a
Prefect Secret block. Keys never go into records, manifests, logs or error texts: every error text the
teacher/judge records passes through a `Redactor`.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Iterable, Optional
from urllib.parse import urlparse

from data_contracts.config.rationales import EndpointConfig

SecretResolver = Callable[[str], str]
NO_KEY = "EMPTY"  # what local servers (transformers serve, vLLM without --api-key) accept
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
_MIN_FRAGMENT = 8  # key fragments this long are masked too (servers often echo part of a bad key)


class MissingSecret(RuntimeError):
    """No API key is available for a remote endpoint (the message names the env var / secret block)."""


def is_local(base_url: str) -> bool:
    return (urlparse(base_url).hostname or "") in _LOCAL_HOSTS


def resolve_api_key(endpoint: EndpointConfig, secret_resolver: Optional[SecretResolver] = None) -> str:
    """The key for `endpoint`: the secret block `api_key_secret` (through `secret_resolver`) when set, else the
    env var `api_key_env`. A loopback endpoint without a key gets the placeholder "EMPTY"; a remote one raises."""
    if endpoint.api_key_secret:
        if secret_resolver is None:
            raise MissingSecret(
                f"endpoint {endpoint.base_url}: api_key_secret={endpoint.api_key_secret!r} is set but no secret "
                "resolver was given (run through the Prefect flow, or use api_key_env)"
            )
        try:
            key = secret_resolver(endpoint.api_key_secret)
        except Exception as e:  # the resolver's error may not mention the key; keep only its type
            raise MissingSecret(
                f"endpoint {endpoint.base_url}: could not read secret block {endpoint.api_key_secret!r} "
                f"({type(e).__name__})"
            ) from None
        if not key:
            raise MissingSecret(f"endpoint {endpoint.base_url}: secret block {endpoint.api_key_secret!r} is empty")
        return str(key)
    key = os.environ.get(endpoint.api_key_env, "")
    if key:
        return key
    if is_local(endpoint.base_url):
        return NO_KEY
    raise MissingSecret(
        f"endpoint {endpoint.base_url}: no API key: set the environment variable {endpoint.api_key_env} "
        "or api_key_secret (a Prefect Secret block)"
    )


class Redactor:
    """`redact(text)` masks every secret, and every fragment of ≥ 8 characters of one, with `***`."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets = [s for s in secrets if s and s != NO_KEY]

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if not text or not self._secrets:
            return text
        mask = [False] * len(text)
        for s in self._secrets:
            n = min(_MIN_FRAGMENT, len(s))
            for i in range(len(s) - n + 1):
                frag = s[i : i + n]
                for m in re.finditer(re.escape(frag), text):
                    for j in range(m.start(), m.end()):
                        mask[j] = True
        if not any(mask):
            return text
        out, prev = [], False
        for ch, hidden in zip(text, mask):
            if hidden:
                if not prev:
                    out.append("***")
            else:
                out.append(ch)
            prev = hidden
        return "".join(out)
