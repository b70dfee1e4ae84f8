"""Service configuration: read once from ``RECSYS_*`` environment variables into a frozen `Settings`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

PREFIX = "RECSYS_"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS = ("text", "json")
# uvicorn's implementations; "auto" takes httptools and uvloop (dependencies of this package): measured 3-4x the
# requests per second of h11 + asyncio for the fixed-answer floor (benchmarks/README_http.md).
HTTP_IMPLEMENTATIONS = ("auto", "httptools", "h11")
# The HTTP server: uvicorn (default; every operational feature is built and tested on it) or granian (a Rust HTTP
# server for ASGI, `pip install '.[granian]'`): benchmarks/README_http.md compares them on the same app.
SERVERS = ("uvicorn", "granian")
LOOP_IMPLEMENTATIONS = ("auto", "uvloop", "asyncio")

T = TypeVar("T")
N = TypeVar("N", int, float)
PARSER = "parse"  # field metadata key: the function reading the field's RECSYS_* value


def setting(parse: Callable[[str, str], T], default: T, repr: bool = True) -> T:
    """A settings field: its default and how its RECSYS_* value (or a CLI flag, as text) is parsed and bounded."""
    return field(default=default, repr=repr, metadata={PARSER: parse})


class SettingsError(ValueError):
    """A RECSYS_* variable has a value the service cannot use; the message names the variable."""


def _int_in(low: int, high: int) -> Callable[[str, str], int]:
    return _number_in(int, "an integer", low, high)


def _float_in(low: float, high: float) -> Callable[[str, str], float]:
    return _number_in(float, "a number", low, high)


def _number_in(kind: Callable[[str], N], what: str, low: N, high: N) -> Callable[[str, str], N]:
    def cast(key: str, raw: str) -> N:
        try:
            value = kind(raw)
        except ValueError:
            raise SettingsError(f"{key}={raw!r}: expected {what}") from None
        if not low <= value <= high:
            raise SettingsError(f"{key}={value}: must be between {low} and {high}")
        return value

    return cast


def _bool(key: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def _one_of(options: tuple[str, ...]) -> Callable[[str, str], str]:
    def cast(key: str, raw: str) -> str:
        if raw.lower() not in options:
            raise SettingsError(f"{key}={raw!r}: expected one of {', '.join(options)}")
        return raw.lower()

    return cast


@dataclass(frozen=True)
class Settings:
    """Every field is read from ``RECSYS_<FIELD NAME IN UPPER CASE>``; see api/README_API.md for the table."""

    index_root: Path = setting(lambda _, raw: Path(raw), Path("indexes/demo"))
    host: str = setting(lambda _, raw: raw, "127.0.0.1")
    port: int = setting(_int_in(0, 65535), 5000)
    workers: int = setting(_int_in(1, 256), 1)
    log_level: str = setting(_one_of(LOG_LEVELS), "info")
    access_log: bool = setting(_bool, False)
    # uvicorn's HTTP parser: auto (httptools), httptools or h11
    http: str = setting(_one_of(HTTP_IMPLEMENTATIONS), "auto")
    loop: str = setting(_one_of(LOOP_IMPLEMENTATIONS), "auto")  # uvicorn's event loop: auto (uvloop), uvloop or asyncio
    # several workers: one SO_REUSEPORT listening socket each (api/tcp_config.py)
    server: str = setting(_one_of(SERVERS), "uvicorn")
    reuse_port: bool = setting(_bool, True)
    # Behind a reverse proxy: take the client address and scheme from X-Forwarded-For / -Proto sent by these
    # addresses (uvicorn's proxy-headers middleware). Off by default: it costs every request a layer.
    proxy_headers: bool = setting(_bool, False)
    forwarded_allow_ips: str = setting(lambda _, raw: raw, "127.0.0.1,::1")
    max_k: int = setting(_int_in(1, 100_000), 100)
    max_batch: int = setting(_int_in(1, 1_000_000), 1000)
    max_body_bytes: int = setting(_int_in(1024, 2**31), 16 * 2**20)
    max_exclude: int = setting(_int_in(0, 1_000_000), 1000)
    max_window: int = setting(_int_in(1, 1_000_000), 1000)  # offset + k at most this (paging depth)
    max_ef_search: int = setting(_int_in(1, 1_000_000), 2048)
    max_nprobe: int = setting(_int_in(1, 1_000_000), 1024)
    max_k_factor: int = setting(_int_in(1, 10_000), 64)
    # A filter keeping at most this fraction of the rows, or whose allowed rows × dim is at most the budget, is
    # answered by an exact scan of just those rows (see api/service.py); broader filters go through the ANN index.
    filter_exact_fraction: float = setting(_float_in(0.0, 1.0), 0.1)
    filter_exact_budget: int = setting(_int_in(0, 2**62), 4_000_000)
    # group_by: catalogues (or filters) whose rows × dim is at most this are grouped by one exact scan; larger ones
    # scan only the categories an over-fetched ANN search finds (see api/grouping.py).
    group_exact_budget: int = setting(_int_in(0, 2**62), 32_000_000)
    coalesce: bool = setting(_bool, False)  # search concurrent light /infer requests together (api/coalescer.py)
    verify_checksums: bool = setting(_bool, True)
    warm: bool = setting(_bool, True)
    # Operations (api/README_API.md, "Operations"): hot swap, overload, API keys, logs.
    # seconds between checks of ROOT/current in each worker; 0: only POST /admin/reload
    reload_interval: float = setting(_float_in(0.0, 86_400.0), 5.0)
    allow_dim_change: bool = setting(_bool, False)  # accept a new version whose dimension differs from the served one
    # requests in progress per worker; beyond it, 503 with Retry-After at once
    max_concurrency: int = setting(_int_in(1, 1_000_000), 128)
    # seconds per request before a 504; 0 disables the budget
    request_timeout: float = setting(_float_in(0.0, 86_400.0), 10.0)
    retry_after: int = setting(_int_in(0, 86_400), 1)  # seconds, the Retry-After of overload answers
    # seconds SIGTERM waits for requests in flight (0: no limit)
    shutdown_timeout: int = setting(_int_in(0, 86_400), 30)
    # comma-separated; any key configured turns authentication on
    api_keys: str = setting(lambda _, raw: raw, default="", repr=False)
    api_keys_file: str = setting(lambda _, raw: raw, "")  # one key per line (# comments), re-read when it changes
    admin_keys: str = setting(lambda _, raw: raw, default="", repr=False)
    admin_keys_file: str = setting(lambda _, raw: raw, "")
    log_format: str = setting(_one_of(LOG_FORMATS), "text")  # text or json
    # Live recall (api/live_recall.py): fraction of ANN queries checked exactly off the request path, their CPU
    # budget (check CPU seconds per second of the worker's search time), the queue of waiting samples.
    recall_sample_rate: float = setting(_float_in(0.0, 1.0), 0.02)
    recall_cpu_budget: float = setting(_float_in(0.0, 1000.0), 0.03)
    recall_queue: int = setting(_int_in(1, 1_000_000), 64)
    # Self-correction (api/effort.py): raise efSearch / nprobe along the builder's ladder when live recall is below
    # the manifest's target; never above tuned × factor (nor the per-request limit); state in DIR/<version>.json
    # (default ROOT/.live-state), shared by the workers and kept across restarts.
    recall_correct: bool = setting(_bool, True)
    recall_min_samples: int = setting(_int_in(1, 10_000_000), 200)
    recall_decide_samples: int = setting(_int_in(1, 10_000_000), 1000)
    recall_max_effort_factor: float = setting(_float_in(1.0, 1000.0), 8.0)
    recall_interval: float = setting(_float_in(0.05, 3600.0), 1.0)  # seconds between looks at the shared state
    recall_state_dir: str = setting(lambda _, raw: raw, "")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Defaults overridden by the RECSYS_* variables present in environ (read once, nothing else looked at); each
        value is checked by the parser declared with its field."""
        values: dict[str, object] = {}
        for item in fields(cls):
            key = PREFIX + item.name.upper()
            raw = environ.get(key)
            if raw is not None and raw.strip() != "":
                values[item.name] = item.metadata[PARSER](key, raw.strip())
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The RECSYS_* variables that reproduce these settings (how the CLI hands them to uvicorn's workers)."""
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            text = ("1" if value else "0") if isinstance(value, bool) else str(value)
            out[PREFIX + item.name.upper()] = text
        return out


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """RECSYS_* variables that no setting reads (probably typos)."""
    known = {PREFIX + item.name.upper() for item in fields(Settings)}
    return sorted(key for key in environ if key.startswith(PREFIX) and key not in known)
