"""The operator's HTTP session to the API server: aiohttp with the credentials kopf logs in with.

Not a generated client (kubernetes_asyncio): the operator sends a handful of verbs with plain dict
bodies, and importing a generated client's thousand model classes costs about 35 MiB, a quarter
of what the operator may use for 1,000 LLMServices. aiohttp is kopf's own HTTP library, and the
credentials are kopf's: the in-cluster service account, else the kubeconfig (token, client
certificate or basic auth; not exec plugins), so the watches and our writes act as one identity.
"""

from __future__ import annotations

import json
from typing import Any, Final

import aiohttp
import kopf

UNAUTHORIZED: Final = 401
TIMEOUT: Final = aiohttp.ClientTimeout(total=30, connect=5)
"""One API request; a watch is kopf's, with its own timeouts."""


class ApiStatusError(Exception):
    """The API server answered with an error status; `message` is its Status message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def login(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """Credentials as kopf finds them: in a pod its service account, else the kubeconfig."""
    settings = settings or kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        msg = "no Kubernetes credentials: run in a pod, or set KUBECONFIG / ~/.kube/config"
        raise kopf.LoginError(msg)
    return info


class Client:
    """One connection pool to one API server."""

    def __init__(self, info: kopf.ConnectionInfo | None = None) -> None:
        self._info = info or login()
        self._session = self._open(self._info)

    @staticmethod
    def _open(info: kopf.ConnectionInfo) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            base_url=info.server.rstrip("/") + "/",
            connector=aiohttp.TCPConnector(ssl=info.as_ssl_context(), limit=32),
            headers={**info.as_http_headers(), "Accept": "application/json"},
            timeout=TIMEOUT,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,  # noqa: ANN401 - a JSON body
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """One request; the decoded answer, or `ApiStatusError`, or an aiohttp error.

        A 401 logs in again once and retries: service account tokens are rotated on disk.
        """
        for attempt in (1, 2):
            async with self._session.request(
                method,
                path.lstrip("/"),
                params=query or [],
                data=None if body is None else json.dumps(body),
                headers={"Content-Type": content_type},
            ) as response:
                text = await response.read()
                if response.status == UNAUTHORIZED and attempt == 1:
                    await self._session.close()
                    self._info = login()
                    self._session = self._open(self._info)
                    continue
                if response.status >= 400:
                    raise ApiStatusError(response.status, _message(text, response.reason))
                result: dict[str, Any] = json.loads(text) if text else {}
                return result
        raise AssertionError  # unreachable: the second attempt returns or raises

    async def close(self) -> None:
        """Close the connections."""
        await self._session.close()


def _message(text: bytes, reason: str | None) -> str:
    """The Status object's message, else the HTTP reason."""
    try:
        return str(json.loads(text).get("message") or reason)
    except (ValueError, AttributeError):
        return str(reason)
