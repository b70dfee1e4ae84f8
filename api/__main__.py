"""recsys-serve: check the index, then run uvicorn workers that each build the app from RECSYS_* variables.

Exit codes: 0 after a normal shutdown, 1 when the index is missing, corrupt or incompatible, 2 on bad settings.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from api.logging_setup import with_format
from api.settings import (
    HTTP_IMPLEMENTATIONS,
    LOG_LEVELS,
    LOOP_IMPLEMENTATIONS,
    PREFIX,
    SERVERS,
    Settings,
    SettingsError,
)
from api.tcp_config import TcpConfig, reuse_port_workers
from index_format.layout import FormatError

LOG = logging.getLogger("api.serve")

# Threads per search: faiss's OpenMP and numpy's BLAS both default to one thread per core, which several workers
# on the same cores only oversubscribe. Set (unless already set) before anything imports faiss or numpy.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # api/metrics.py: every worker writes its metrics there
# httptools (what uvicorn's `auto` picks: a dependency) with one socket write per response (api/http_protocol.py).
COALESCING_HTTP = "api.http_protocol:CoalescingHttpToolsProtocol"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index-root", type=Path, help="index root holding 'current' (RECSYS_INDEX_ROOT)")
    parser.add_argument("--host", help="bind address (RECSYS_HOST; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, help="port (RECSYS_PORT, default 5000)")
    parser.add_argument("--workers", type=int, help="worker processes sharing the mapped index (RECSYS_WORKERS)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="(RECSYS_LOG_LEVEL, default info)")
    parser.add_argument(
        "--http", choices=HTTP_IMPLEMENTATIONS, help="uvicorn's HTTP parser (RECSYS_HTTP, default auto)"
    )
    parser.add_argument("--server", choices=SERVERS, help="HTTP server (RECSYS_SERVER, default uvicorn)")
    parser.add_argument("--loop", choices=LOOP_IMPLEMENTATIONS, help="uvicorn's event loop (RECSYS_LOOP, default auto)")
    access = parser.add_mutually_exclusive_group()
    access.add_argument("--access-log", dest="access_log", action="store_true", default=None, help="log requests")
    access.add_argument("--no-access-log", dest="access_log", action="store_false", help="(default)")
    return parser


CLI_SETTINGS = ("index_root", "host", "port", "workers", "log_level", "server", "http", "loop", "access_log")


def settings_from(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """Environment first, then any flag given on the command line; flags are checked by the same parsers as the
    RECSYS_* variables (api/settings.py), so both accept exactly the same values."""
    flags = {}
    for name in CLI_SETTINGS:
        value = getattr(args, name)
        if value is not None:
            text = ("1" if value else "0") if isinstance(value, bool) else str(value)
            flags[PREFIX + name.upper()] = text
    try:
        return Settings.from_env({**environ, **flags})
    except SettingsError as error:
        flag = _flag_of(str(error), flags)
        raise SettingsError(f"--{flag}: {error}" if flag else str(error)) from None


def _flag_of(message: str, flags: dict[str, str]) -> str:
    """The command-line flag behind a settings error, if the bad value came from one."""
    for key in flags:
        if message.startswith(key + "="):
            return key[len(PREFIX) :].lower().replace("_", "-")
    return ""


def run_server(settings: Settings, log_level: str) -> bool:
    """Serve until stopped (what uvicorn.run does, with `TcpConfig`); False if the server never started."""
    if settings.server == "granian":
        return run_granian(settings, log_level)
    config = TcpConfig(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=COALESCING_HTTP if settings.http in ("auto", "httptools") else settings.http,
        loop=settings.loop,
        log_level=settings.log_level,
        log_config=with_format(log_config(log_level), settings.log_format),
        access_log=False,  # api/access.py logs each request (with its request id) when settings.access_log is on
        timeout_graceful_shutdown=settings.shutdown_timeout or None,
        reuse_port=settings.reuse_port and settings.workers > 1,
        proxy_headers=settings.proxy_headers,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    if settings.workers > 1:
        with reuse_port_workers(config):
            supervisor = Multiprocess(config, sockets=[config.bind_socket()])
            supervisor.run()
        return not any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    server = uvicorn.Server(config)
    server.run()
    return server.started


def run_granian(settings: Settings, log_level: str) -> bool:
    """The same app factory under granian: one process per worker, HTTP/1 parsed in Rust, the app on uvloop.
    Workers end with the supervisor (api/app.py asks for PR_SET_PDEATHSIG when RECSYS_SERVER=granian)."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    server = Granian(
        "api.app:create_app",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        loop=Loops.asyncio if settings.loop == "asyncio" else Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        log_dictconfig=with_format(log_config(log_level), settings.log_format),
        respawn_failed_workers=True,
        workers_kill_timeout=settings.shutdown_timeout or None,
    )
    server.serve()
    return True


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config, plus our packages' loggers on its stderr handler."""
    config = copy.deepcopy(LOGGING_CONFIG)
    for name in ("api", "index_format"):
        config["loggers"][name] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def metrics_directory(environ: MutableMapping[str, str]) -> Path | None:
    """Set up PROMETHEUS_MULTIPROC_DIR for this server start: an empty directory (values left by an earlier run
    would be added to this one's). Returns the directory when it was created here (removed at exit)."""
    given = environ.get(METRICS_DIR_VARIABLE)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for path in directory.glob("*.db"):
            path.unlink()
        return None
    created = Path(tempfile.mkdtemp(prefix="recsys-metrics-"))
    environ[METRICS_DIR_VARIABLE] = str(created)
    return created


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    created = metrics_directory(os.environ)  # before anything imports prometheus_client (it reads it on import)
    try:
        return serve(args)
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def serve(args: argparse.Namespace) -> int:
    from api.auth import key_sets
    from api.preflight import check_index_here, check_index_isolated

    logging.config.dictConfig(log_config("info"))
    try:
        settings = settings_from(args, dict(os.environ))
        key_sets(settings)  # a keys file that cannot be read is a bad setting
        if settings.server == "granian" and importlib.util.find_spec("granian") is None:
            raise SettingsError(
                "RECSYS_SERVER=granian: granian is not installed (pip install 'recsys-retrieval[granian]')"
            )
    except SettingsError as exc:
        LOG.error("recsys-serve: %s", exc)
        return 2
    level = "debug" if settings.log_level == "trace" else settings.log_level
    logging.config.dictConfig(with_format(log_config(level), settings.log_format))
    check = check_index_isolated if settings.workers > 1 else check_index_here
    try:
        summary = check(settings.index_root, settings.verify_checksums)
    except FormatError as exc:
        LOG.error("recsys-serve: cannot serve the index under %s: %s", settings.index_root, exc)
        return 1
    LOG.info(
        "index %s checked; starting %d worker(s) on %s:%d", summary, settings.workers, settings.host, settings.port
    )
    os.environ.update(settings.to_env())
    return 0 if run_server(settings, level) else 1


if __name__ == "__main__":
    sys.exit(main())
