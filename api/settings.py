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
LOOP_IMPLEMENTATIONS = ("auto", "uvloop", "asyncio")

T = TypeVar("T")
N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """A RECSYS_* variable has a value the service cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Every field is read from ``RECSYS_<FIELD NAME IN UPPER CASE>``; see api/README_API.md for the table."""

    index_root: Path = Path("indexes/demo")
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1
    log_level: str = "info"
    access_log: bool = False
    http: str = "auto"  # uvicorn's HTTP parser: auto (httptools), httptools or h11
    loop: str = "auto"  # uvicorn's event loop: auto (uvloop), uvloop or asyncio
    reuse_port: bool = True  # several workers: one SO_REUSEPORT listening socket each (api/tcp_config.py)
    max_k: int = 100
    max_batch: int = 1000
    max_body_bytes: int = 16 * 2**20
    max_exclude: int = 1000
    max_ef_search: int = 2048
    max_nprobe: int = 1024
    max_k_factor: int = 64
    # A filter keeping at most this fraction of the rows, or whose allowed rows × dim is at most the budget, is
    # answered by an exact scan of just those rows (see api/service.py); broader filters go through the ANN index.
    filter_exact_fraction: float = 0.1
    filter_exact_budget: int = 4_000_000
    # group_by: catalogues (or filters) whose rows × dim is at most this are grouped by one exact scan; larger ones
    # scan only the categories an over-fetched ANN search finds (see api/grouping.py).
    group_exact_budget: int = 32_000_000
    coalesce: bool = False  # search concurrent light /infer requests together (api/coalescer.py)
    verify_checksums: bool = True
    warm: bool = True
    bench_floor: bool = False  # adds POST /_floor, a fixed answer for load-test baselines
    # Operations (api/README_API.md, "Operations"): hot swap, overload, API keys, logs.
    reload_interval: float = 5.0  # seconds between checks of ROOT/current in each worker; 0: only POST /admin/reload
    allow_dim_change: bool = False  # accept a new version whose dimension differs from the served one
    max_concurrency: int = 128  # requests in progress per worker; beyond it, 503 with Retry-After at once
    request_timeout: float = 10.0  # seconds per request before a 504; 0 disables the budget
    retry_after: int = 1  # seconds, the Retry-After of overload answers
    shutdown_timeout: int = 30  # seconds SIGTERM waits for requests in flight (0: no limit)
    api_keys: str = field(default="", repr=False)  # comma-separated; any key configured turns authentication on
    api_keys_file: str = ""  # one key per line (# comments), re-read when it changes
    admin_keys: str = field(default="", repr=False)
    admin_keys_file: str = ""
    log_format: str = "text"  # text or json

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Defaults overridden by the RECSYS_* variables present in environ (read once, nothing else looked at)."""
        default = cls()

        def get(name: str, cast: Callable[[str, str], T], fallback: T) -> T:
            key = PREFIX + name.upper()
            raw = environ.get(key)
            return fallback if raw is None or raw.strip() == "" else cast(key, raw.strip())

        return cls(
            index_root=get("index_root", lambda _, raw: Path(raw), default.index_root),
            host=get("host", lambda _, raw: raw, default.host),
            port=get("port", _int_in(0, 65535), default.port),
            workers=get("workers", _int_in(1, 256), default.workers),
            log_level=get("log_level", _one_of(LOG_LEVELS), default.log_level),
            access_log=get("access_log", _bool, default.access_log),
            http=get("http", _one_of(HTTP_IMPLEMENTATIONS), default.http),
            loop=get("loop", _one_of(LOOP_IMPLEMENTATIONS), default.loop),
            reuse_port=get("reuse_port", _bool, default.reuse_port),
            max_k=get("max_k", _int_in(1, 100_000), default.max_k),
            max_batch=get("max_batch", _int_in(1, 1_000_000), default.max_batch),
            max_body_bytes=get("max_body_bytes", _int_in(1024, 2**31), default.max_body_bytes),
            max_exclude=get("max_exclude", _int_in(0, 1_000_000), default.max_exclude),
            max_ef_search=get("max_ef_search", _int_in(1, 1_000_000), default.max_ef_search),
            max_nprobe=get("max_nprobe", _int_in(1, 1_000_000), default.max_nprobe),
            max_k_factor=get("max_k_factor", _int_in(1, 10_000), default.max_k_factor),
            filter_exact_fraction=get("filter_exact_fraction", _float_in(0.0, 1.0), default.filter_exact_fraction),
            filter_exact_budget=get("filter_exact_budget", _int_in(0, 2**62), default.filter_exact_budget),
            group_exact_budget=get("group_exact_budget", _int_in(0, 2**62), default.group_exact_budget),
            coalesce=get("coalesce", _bool, default.coalesce),
            verify_checksums=get("verify_checksums", _bool, default.verify_checksums),
            warm=get("warm", _bool, default.warm),
            bench_floor=get("bench_floor", _bool, default.bench_floor),
            reload_interval=get("reload_interval", _float_in(0.0, 86_400.0), default.reload_interval),
            allow_dim_change=get("allow_dim_change", _bool, default.allow_dim_change),
            max_concurrency=get("max_concurrency", _int_in(1, 1_000_000), default.max_concurrency),
            request_timeout=get("request_timeout", _float_in(0.0, 86_400.0), default.request_timeout),
            retry_after=get("retry_after", _int_in(0, 86_400), default.retry_after),
            shutdown_timeout=get("shutdown_timeout", _int_in(0, 86_400), default.shutdown_timeout),
            api_keys=get("api_keys", lambda _, raw: raw, default.api_keys),
            api_keys_file=get("api_keys_file", lambda _, raw: raw, default.api_keys_file),
            admin_keys=get("admin_keys", lambda _, raw: raw, default.admin_keys),
            admin_keys_file=get("admin_keys_file", lambda _, raw: raw, default.admin_keys_file),
            log_format=get("log_format", _one_of(LOG_FORMATS), default.log_format),
        )

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
