"""The connection to a shared crawl's Redis: its scripts, its outages, its checks.

Every call goes through ``call``: while Redis is unreachable it is retried
with back-off for ``outage_seconds``, then FrontierUnavailable (exit 5),
once for all: a member whose Redis is gone stops. Scripts (scripts.py) are
loaded once and run by their SHA in pipelines, loaded again after a Redis
restart or SCRIPT FLUSH.

A call that gets no answer is cut after CALL_SECONDS by asyncio.timeout here;
redis-py's socket_timeout is off (redis-py 8 sets 5 s unless told):
with it, redis-py sends under asyncio.wait_for, which on Python 3.11 swallows
a cancellation that comes as the send completes, so a member told to stop
(its chores and workers cancelled) could go on forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from crawler.errors import ConfigError, FrontierUnavailable
from crawler.frontier.scripts import SCRIPTS
from crawler.web.urls import redact_url

log = logging.getLogger(__name__)

OUTAGE_SECONDS = 20.0
# A call (a pipeline of scripts, their loading included) Redis has not answered
# in this long counts as Redis unreachable.
CALL_SECONDS = 10.0


# What Redis answers that no retry mends, and what the member says of it.
REFUSALS: dict[type[Exception], str] = {
    redis_errors.AuthenticationError: (
        "Redis refused this client ({}); check the user and password in the URL"
    ),
    redis_errors.NoPermissionError: (
        "{}; the crawl's user must be allowed to run scripts and read the crawl's keys"
    ),
    redis_errors.ReadOnlyError: "a read-only replica ({}); give the crawl its primary",
    redis_errors.InvalidResponse: "it does not answer as Redis does ({})",
}
_REFUSED = tuple(REFUSALS)


class RedisLink:
    """One member's connection to the shared frontier's Redis."""

    def __init__(self, url: str, outage_seconds: float = OUTAGE_SECONDS) -> None:
        # What messages, logs and frontier.json show: the URL without its password.
        self.url = redact_url(url)
        self._outage = outage_seconds
        self._redis = aioredis.Redis.from_url(
            url, decode_responses=True, socket_timeout=None, socket_connect_timeout=5
        )
        self._shas: dict[str, str] = {}
        # Set once Redis stayed away past the outage: every later call raises it.
        self.failure: FrontierUnavailable | None = None

    @property
    def redis(self) -> aioredis.Redis:
        return self._redis

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def check_server(self) -> None:
        """Redis 7 or later, and no eviction policy (it would lose URLs silently).
        The first command connects: a database Redis refuses to select is the URL's."""
        try:
            info = await self.call(lambda: self._redis.info("server"))
        except redis_errors.ResponseError as error:
            raise ConfigError(f"{self.url}: {error}") from None
        version = tuple(int(part) for part in str(info.get("redis_version", "0")).split(".")[:2])
        if version < (7, 0):
            raise ConfigError(f"{self.url}: Redis {info.get('redis_version')} is too old (7.0+)")
        policy = await self.call(self._policy)
        name = policy.get("maxmemory-policy", "noeviction")
        if name != "noeviction":
            raise ConfigError(
                f"{self.url} evicts keys (maxmemory-policy {name}), which would lose URLs"
                " silently: set maxmemory-policy noeviction"
            )

    async def _policy(self) -> dict[Any, Any]:
        try:
            policy: dict[Any, Any] = await self._redis.config_get("maxmemory-policy")
        except redis_errors.ResponseError:
            return {}  # CONFIG may be renamed or refused; then it cannot be checked
        return policy

    async def eval(self, name: str, args: list[Any]) -> Any:
        return (await self.pipeline([(name, args)]))[0]

    async def pipeline(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Run scripts in one round trip (loading them again after a Redis restart).

        A script's own error (an OOM refusal) is returned in its place; a refusal
        that no retry mends (REFUSALS) is raised as ConfigError.
        """

        async def attempt() -> list[Any]:
            if len(self._shas) < len(SCRIPTS):
                for script, body in SCRIPTS.items():
                    self._shas[script] = await self._redis.script_load(body)
            async with self._redis.pipeline(transaction=False) as pipe:
                for name, args in calls:
                    pipe.evalsha(self._shas[name], 0, *args)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            for result in results:
                if isinstance(result, _REFUSED):
                    raise result
            if any(isinstance(result, redis_errors.NoScriptError) for result in results):
                self._shas.clear()
                results = await attempt()
            return results

        results: list[Any] = await self.call(attempt)
        return results

    async def call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run a Redis command, retrying with back-off while Redis is unreachable."""
        if self.failure is not None:
            raise self.failure  # already waited once: the member is stopping
        started = time.monotonic()
        pause = 0.1
        while True:
            try:
                async with asyncio.timeout(CALL_SECONDS):
                    return await command()
            except _REFUSED as error:  # no use retrying: the URL or its server must change
                said = next(text for kind, text in REFUSALS.items() if isinstance(error, kind))
                raise ConfigError(f"{self.url}: {said.format(error)}") from None
            except (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError) as error:
                reason = str(error) or f"no answer in {CALL_SECONDS:.0f} s"
                waited = time.monotonic() - started
                if waited > self._outage:
                    self.failure = FrontierUnavailable(
                        f"{self.url} did not answer for {self._outage:.0f} s ({reason}); "
                        "what was acknowledged is kept in it"
                    )
                    raise self.failure from None
                if pause == 0.1:  # once per outage
                    log.warning("%s: %s; retrying for %.0f s", self.url, reason, self._outage)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
