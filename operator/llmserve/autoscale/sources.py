"""Where the autoscaler reads each ready pod's load: from the pods themselves, or from Prometheus.

Both sources keep one contract (`Source.loads`): given the ready pods, the `PodLoad` of every pod
that has a fresh sample, keyed by pod name. A pod left out, or given with a `problem` (why it has
no sample), is "missing", which the policy never reads as zero (AUTOSCALING.md §1.2): a failed
scrape must neither add nor remove a replica.

- `ScrapeSource` asks each pod's proxy on every pass, on its metrics port: `/metrics` (its
  in-flight requests and its queue) and `/metrics/engine` (the engine's own gauges, relayed).
  Fresh by construction, with no Prometheus hop (AUTOSCALING.md §12.5), and needs nothing
  installed in the cluster.
- `PrometheusSource` reads what the cluster's Prometheus already scrapes, one instant query per
  figure per namespace. It alone has GPU utilization (the DCGM exporter's `DCGM_FI_DEV_GPU_UTIL`),
  and it only counts samples younger than `max_age` (Prometheus would serve 5-minute-old ones).

One operator serves every tenant, and the engine page is the tenant's (`spec.image` is theirs), so
nothing a page holds may cost the operator more than a small, fixed amount (review M5: a 34 MB page
of 400,000 series took 7 s of CPU on the event loop and 160 MiB to parse whole). Each answer is
read up to `max_bytes` and no further (a longer one makes the pod missing, and the status says so),
never decompressed, and scanned only for the lines of the few gauges wanted: a prefix match per
line, no parse of the rest. The policy then checks the figures themselves (`policy.counted`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

import aiohttp

from llmserve.api import Engine
from llmserve.autoscale.policy import PodLoad

log = logging.getLogger(__name__)

ENGINE_GAUGES: Final[Mapping[Engine, tuple[str, str]]] = MappingProxyType({
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "tgi": ("tgi_batch_current_size", "tgi_queue_size"),
    "sglang": ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
    "llamacpp": ("llamacpp:requests_processing", "llamacpp:requests_deferred"),
})  # fmt: skip
"""Each engine's (running, waiting) gauges (AUTOSCALING.md §7.7). Ollama has none: the proxy's
in-flight count stands for it."""
IN_FLIGHT: Final = "llmserve_requests_in_flight"
QUEUED: Final = "llmserve_queue_depth"
PROXY_PAGE: Final = "/metrics"
ENGINE_PAGE: Final = "/metrics/engine"
MAX_BYTES: Final = 1024 * 1024
"""Default size limit of one answer (`AutoscalerConfig.max_page_bytes` sets it in the operator)."""

Figure = Literal["running", "waiting", "in_flight", "queued", "gpu_utilization"]
"""A `PodLoad` field that a source fills in."""


@dataclass(frozen=True)
class Target:
    """One ready pod to read."""

    namespace: str
    pod: str
    ip: str
    port: int
    """The proxy's metrics port (`AutoscalerConfig.metrics_port`, the pods' `metrics` port)."""
    engine: Engine


class Source(Protocol):
    """Reads the load of ready pods."""

    async def loads(self, targets: Sequence[Target]) -> dict[str, PodLoad]:
        """The load of each target, by pod name.

        A target without a fresh sample is left out, or given with a `problem` that says why.
        """
        ...

    async def aclose(self) -> None:
        """Release the connections."""
        ...


class SourceError(Exception):
    """The source as a whole could not be read (not one pod): the caller reports it in status."""


class PageError(Exception):
    """One page of one pod could not be read; the message says why, for the status."""


class PageTooLargeError(PageError):
    """The page is longer than the limit: the pod is missing, whichever page it was."""


async def read_capped(answer: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit` bytes; never more than limit + 1 is read.

    The declared length is trusted only to refuse early: a body without one, or longer than it
    says, is counted as it arrives.
    """
    if answer.content_length is not None and answer.content_length > limit:
        return None
    body = bytearray()
    while len(body) <= limit:
        chunk = await answer.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    return None


_SAMPLE_REST: Final = re.compile(rb'(?:\{(?:[^"}]++|"(?:[^"\\]++|\\.)*+")*+\})?+[ \t]++(\S++)')
"""What follows a sample's name: its labels, if any (quoted values may hold `}` and escapes), then
the value. Possessive quantifiers never give back what they matched: a line that does not match
fails in one pass over it, whatever it holds (no backtracking)."""


def gauge_sums(page: bytes, names: Collection[str]) -> dict[str, float]:
    """The sum over series of each named gauge in a Prometheus text exposition.

    Only lines that start with a wanted name are looked at (a prefix test per line, in C); the
    rest of the page, comments and any other metric, is skipped unparsed, so its syntax does not
    matter. Summed because one engine may report several series of a name (one per `model_name`,
    say); NaN series are skipped. Names without a sample are left out, and so are lines without
    a sample's shape; a sample of a wanted name whose value is not a number raises ValueError.
    """
    wanted = tuple(name.encode() for name in names)
    sums: dict[str, float] = {}
    for line in page.splitlines():
        if not line.startswith(wanted):
            continue
        for name in wanted:  # two names: which one matched
            rest = _SAMPLE_REST.match(line, len(name)) if line.startswith(name) else None
            if rest is not None:  # None: a longer name (`..._total`), or not a sample
                value = float(rest[1])
                if not math.isnan(value):
                    sums[name.decode()] = sums.get(name.decode(), 0.0) + value
                break
    return sums


def proxy_figures(page: bytes) -> tuple[float | None, float | None]:
    """In-flight and queued requests from the proxy's `/metrics`."""
    sums = gauge_sums(page, (IN_FLIGHT, QUEUED))
    return sums.get(IN_FLIGHT), sums.get(QUEUED)


def engine_figures(engine: Engine, page: bytes) -> tuple[float | None, float | None]:
    """Running and waiting requests from the engine's metrics; None for a name it lacks."""
    names = ENGINE_GAUGES.get(engine)
    if names is None:
        return None, None
    sums = gauge_sums(page, names)
    return sums.get(names[0]), sums.get(names[1])


def pod_load(target: Target, proxy: bytes | PageError, engine: bytes | PageError | None) -> PodLoad:
    """The pod's load from its proxy's page and its engine's page (None: not asked for).

    A page over the size limit, a proxy page that cannot be read, and a gauge line of the proxy
    that does not parse make the pod missing, with the reason as its `problem`. An engine page
    that fails otherwise leaves running and waiting None: the proxy's in-flight count still
    counts the pod's requests (the engine may be restarting).
    """
    for page in (proxy, engine):
        if isinstance(page, PageTooLargeError):
            return PodLoad(target.pod, problem=str(page))
    if isinstance(proxy, PageError):
        return PodLoad(target.pod, problem=str(proxy))
    try:
        in_flight, queued = proxy_figures(proxy)
    except ValueError as error:
        return PodLoad(target.pod, problem=f"{PROXY_PAGE} does not parse: {error}")
    running = waiting = None
    if isinstance(engine, PageError):
        log.debug("pod %s/%s: %s", target.namespace, target.pod, engine)
    elif engine is not None:
        try:
            running, waiting = engine_figures(target.engine, engine)
        except ValueError as error:
            log.debug("pod %s/%s: %s does not parse: %s", target.namespace, target.pod,
                      ENGINE_PAGE, error)  # fmt: skip
    return PodLoad(target.pod, running, waiting, in_flight, queued)


def base_url(target: Target) -> str:
    """The pod's proxy, with an IPv6 address in brackets."""
    host = f"[{target.ip}]" if ":" in target.ip else target.ip
    return f"http://{host}:{target.port}"


def _session(timeout: aiohttp.ClientTimeout, connections: int) -> aiohttp.ClientSession:
    """A session that never inflates an answer: a compressed page could hide any size."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=timeout,
        auto_decompress=False,
        headers={"Accept-Encoding": "identity"},
    )


class ScrapeSource:
    """Reads every pod's proxy directly, each pass (no Prometheus needed)."""

    def __init__(
        self, *, timeout: float = 2.0, concurrency: int = 32, max_bytes: int = MAX_BYTES
    ) -> None:
        """`timeout` bounds one pod (its two pages are fetched at once); `concurrency` pods at once.

        A pod that does not answer in time is missing for this pass, and the bound keeps one
        hung pod from delaying the decision for the others. A page longer than `max_bytes` makes
        its pod missing: what one pass may hold is concurrency x 2 pages x max_bytes.
        """
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    async def loads(self, targets: Sequence[Target]) -> dict[str, PodLoad]:
        """The load of each pod; one that failed, timed out or sent too much has a `problem`."""
        if self._session is None:  # made here, not in __init__: a session needs a running loop
            self._session = _session(self._timeout, 2 * self._concurrency)  # two pages a pod
        read = await asyncio.gather(*(self._load(self._session, t) for t in targets))
        return {load.pod: load for load in read}

    async def aclose(self) -> None:
        """Close the connections to the pods."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _load(self, session: aiohttp.ClientSession, target: Target) -> PodLoad:
        async with self._limit:
            url = base_url(target)
            paths = [PROXY_PAGE, ENGINE_PAGE] if target.engine in ENGINE_GAUGES else [PROXY_PAGE]
            proxy, *engine = await asyncio.gather(*(self._page(session, url, p) for p in paths))
        return pod_load(target, proxy, engine[0] if engine else None)

    async def _page(self, session: aiohttp.ClientSession, url: str, path: str) -> bytes | PageError:
        """The page's bytes, or the error that says why there are none."""
        try:
            async with session.get(f"{url}{path}") as answer:
                if answer.status != 200:
                    return PageError(f"{path} answered HTTP {answer.status}")
                body = await read_capped(answer, self._max_bytes)
        except TimeoutError:
            return PageError(f"{path} did not answer within {self._timeout.total:g} s")
        except aiohttp.ClientError as error:
            return PageError(
                f"cannot read {path}: {str(error) or type(error).__name__}; check that the pod's "
                "proxy runs and that autoscaler.metricsPort is its metrics port"
            )
        if body is None:
            return PageTooLargeError(
                f"its {path} page is over {self._max_bytes} bytes (autoscaler.maxPageBytes): "
                "find what fills it with series, or raise the limit"
            )
        return body


@dataclass(frozen=True)
class Query:
    """How `PrometheusSource` reads one figure.

    A series selector rather than a whole PromQL expression, because staleness is filtered on the
    raw series, before they are aggregated: an aggregate's timestamp is the query's, whatever the
    age of its inputs.
    """

    selector: str
    """PromQL series selector; `{namespace}` is replaced by the namespace asked about."""
    aggregation: Literal["sum", "max"] = "sum"
    """How a pod's series combine: requests add up; GPU utilization takes the busiest GPU."""
    pod_label: str = "pod"
    """The label naming the pod. `exported_pod` where Prometheus renamed the exporter's own
    `pod` label (DCGM behind a ServiceMonitor with `honorLabels: false`, AUTOSCALING.md §7.3);
    then the selector must say `exported_namespace` too."""


def _names(index: int) -> str:
    return "|".join(sorted(names[index] for names in ENGINE_GAUGES.values()))


DEFAULT_QUERIES: Final[Mapping[Figure, Query]] = MappingProxyType({
    # One selector over every engine's name: a pod runs one engine, so one query per figure and
    # namespace serves a namespace whatever its engines.
    "running": Query(f'{{__name__=~"{_names(0)}",namespace="{{namespace}}"}}'),
    "waiting": Query(f'{{__name__=~"{_names(1)}",namespace="{{namespace}}"}}'),
    "in_flight": Query(f'{IN_FLIGHT}{{namespace="{{namespace}}"}}'),
    "queued": Query(f'{QUEUED}{{namespace="{{namespace}}"}}'),
    "gpu_utilization": Query('DCGM_FI_DEV_GPU_UTIL{namespace="{namespace}"}', "max"),
})  # fmt: skip
"""Series as a Prometheus that scrapes the proxy's `/metrics` and `/metrics/engine` and the DCGM
exporter labels them with the pod's `namespace` and `pod` (a PodMonitor does by default)."""


def promql(query: Query, namespace: str, max_age: float) -> str:
    """The instant query for one figure in one namespace, counting only fresh samples.

    An instant query returns a series' last sample for up to 5 minutes (`--query.lookback-delta`).
    Prometheus usually ends a series sooner with a staleness marker (its target vanished or
    failed a scrape), but not always: not across its own restart, not for targets that expose
    their own timestamps, not for data that came by federation or remote write. So staleness is
    filtered here, explicitly, on the raw series: `and` keeps a series whose last sample is
    younger than `max_age` (it matches both sides on every label but the metric name, which
    `timestamp()` drops), before the series are aggregated by pod, so a pod's old series go while
    its fresh ones still count. Filtering after aggregating would see nothing: an aggregate's
    timestamp is the query's own. One query, rather than a second one for the timestamps, keeps
    both halves on the same evaluation time.
    """
    quoted = namespace.replace("\\", "\\\\").replace('"', '\\"')
    selector = query.selector.replace("{namespace}", quoted)
    fresh = f"{selector} and ((time() - timestamp({selector})) < {max_age:g})"
    return f"{query.aggregation} by ({query.pod_label}) ({fresh})"


def vector_by_pod(body: Mapping[str, Any], pod_label: str) -> dict[str, float]:
    """The value of each pod in a successful instant-query answer (`data.result`)."""
    values: dict[str, float] = {}
    for series in body["data"]["result"]:
        pod = series["metric"].get(pod_label)
        value = float(series["value"][1])
        if pod and not math.isnan(value):
            values[pod] = value
    return values


def assemble(
    answers: Mapping[tuple[str, Figure], Mapping[str, float]], wanted: Mapping[str, Collection[str]]
) -> dict[str, PodLoad]:
    """A `PodLoad` for each wanted pod found in any answer (answers keyed by namespace, figure)."""
    figures: dict[str, dict[Figure, float]] = defaultdict(dict)
    for (namespace, figure), values in answers.items():
        for pod, value in values.items():
            if pod in wanted.get(namespace, ()):
                figures[pod][figure] = value
    return {
        pod: PodLoad(
            pod,
            running=found.get("running"),
            waiting=found.get("waiting"),
            in_flight=found.get("in_flight"),
            queued=found.get("queued"),
            gpu_utilization=found.get("gpu_utilization"),
        )
        for pod, found in figures.items()
    }


def answered(url: str, figure: Figure, query: str, status: int, text: bytes) -> Mapping[str, Any]:
    """Prometheus's JSON answer to a successful query; SourceError naming what to check if not."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if status == 200 and isinstance(body, dict) and body.get("status") == "success":
        return body
    detail = (
        f"{body.get('errorType')}: {body.get('error')}"
        if isinstance(body, dict) and "error" in body
        else "not a Prometheus API answer"
    )
    raise SourceError(
        f"Prometheus at {url} answered HTTP {status} ({detail}) to the {figure} query {query}; "
        "check that autoscaler.prometheusUrl is Prometheus's base URL (no /api/v1) and that "
        "the query template of this figure is valid PromQL"
    )


class PrometheusSource:
    """Reads the pods' load from Prometheus's HTTP API."""

    def __init__(
        self,
        url: str,
        queries: Mapping[Figure, Query] = DEFAULT_QUERIES,
        *,
        max_age: float = 60.0,
        timeout: float = 5.0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        """`url` is Prometheus's base URL (e.g. `http://prometheus.monitoring:9090`).

        `max_age` must exceed the scrape interval of every series read (twice it is safe): the
        default suits the usual 15-30 s PodMonitor interval. A figure left out of `queries` is not
        read (None in every `PodLoad`). An answer holds one series per pod of the namespace (a
        few hundred bytes each); one longer than `max_bytes` is an error.
        """
        self.url = url.rstrip("/")
        self.queries = queries
        self.max_age = max_age
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    async def loads(self, targets: Sequence[Target]) -> dict[str, PodLoad]:
        """The load of each pod with fresh samples; raises SourceError when Prometheus fails."""
        if self._session is None:  # made here, not in __init__: a session needs a running loop
            self._session = _session(self._timeout, 100)  # aiohttp's default pool size
        wanted: dict[str, set[str]] = defaultdict(set)
        for target in targets:
            wanted[target.namespace].add(target.pod)
        asked = [(ns, figure) for ns in wanted for figure in self.queries]
        # Every query runs to its end (no stray task), then the first failure is raised.
        results = await asyncio.gather(
            *(self._vector(self._session, figure, ns) for ns, figure in asked),
            return_exceptions=True,
        )
        answers: dict[tuple[str, Figure], Mapping[str, float]] = {}
        for (namespace, figure), result in zip(asked, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            answers[namespace, figure] = result
        return assemble(answers, wanted)

    async def aclose(self) -> None:
        """Close the connections to Prometheus."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _vector(
        self, session: aiohttp.ClientSession, figure: Figure, namespace: str
    ) -> dict[str, float]:
        query = self.queries[figure]
        expression = promql(query, namespace, self.max_age)
        try:
            async with session.get(
                f"{self.url}/api/v1/query", params={"query": expression}
            ) as answer:
                status, body = answer.status, await read_capped(answer, self._max_bytes)
        except TimeoutError:
            raise SourceError(
                f"Prometheus at {self.url} did not answer within {self._timeout.total:g} s; "
                "check that it is up and not overloaded"
            ) from None
        except aiohttp.ClientError as error:
            raise SourceError(
                f"cannot query Prometheus at {self.url}: {error}; check the URL "
                "(autoscaler.prometheusUrl in the operator config) and that Prometheus runs and "
                "is reachable from the operator"
            ) from None
        if body is None:
            raise SourceError(
                f"Prometheus at {self.url} answered the {figure} query with more than "
                f"{self._max_bytes} bytes (autoscaler.maxPageBytes); check that the query "
                "template of this figure aggregates by pod"
            )
        return vector_by_pod(answered(self.url, figure, expression, status, body), query.pod_label)
