"""The floor: a Starlette app whose POST /infer returns a fixed answer of the same shape and size as the real API's.

Served by the same uvicorn (same worker count, same event loop and HTTP implementation), it measures what HTTP,
uvicorn and Starlette cost on their own, so the real service's req/s can be stated as a fraction of it. The body is
read (a real server must drain it) and parsed with orjson (the real service must parse it too, and orjson is the
cheapest codec the project depends on: a slow parser would lower the floor and flatter the service); nothing is
searched.

Run it: `python -m benchmarks.floor_app --port 5001 --workers 2` (settings go to the workers as BENCH_FLOOR_*
variables, read once in `app_from_env`).

TCP_NODELAY: with --workers > 1, uvicorn (0.54) binds the listening socket itself with proto 0, so asyncio never
sets TCP_NODELAY on accepted connections, and every keep-alive request after the first waits ~40 ms for the client's
delayed ACK (measured here: 92 req/s at 4 connections instead of ~3,000; uvicorn issue #3149). `main` sets
TCP_NODELAY on the listening socket, which Linux copies to every accepted socket; `--stock-uvicorn` leaves it off, to
mirror a service that does not apply the same fix.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ENV_PREFIX = "BENCH_FLOOR_"  # not RECSYS_: the API warns about RECSYS_* variables it does not know


@dataclass(frozen=True)
class FloorSettings:
    """k: recommendations per answer; id_type: "int" or "str" (ids like "p17"); parse_json: decode the request
    body as the real service must (off: only read it)."""

    k: int = 10
    id_type: str = "int"
    parse_json: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FloorSettings:
        return cls(
            k=int(environ.get(ENV_PREFIX + "K", "10")),
            id_type=environ.get(ENV_PREFIX + "ID_TYPE", "int"),
            parse_json=environ.get(ENV_PREFIX + "PARSE_JSON", "1") not in ("0", "false", "no"),
        )

    def to_env(self) -> dict[str, str]:
        return {
            ENV_PREFIX + "K": str(self.k),
            ENV_PREFIX + "ID_TYPE": self.id_type,
            ENV_PREFIX + "PARSE_JSON": "1" if self.parse_json else "0",
        }


def fixed_answer(settings: FloorSettings, name: str = "floor") -> dict[str, Any]:
    """An answer shaped like the real one: k recommendations with realistic ids and float32-like scores."""
    recs = []
    for rank in range(settings.k):
        product: int | str = 10_000 + 37 * rank if settings.id_type == "int" else f"p{10_000 + 37 * rank}"
        recs.append({"id": product, "score": round(0.987654321 - 0.0123456789 * rank, 7)})
    return {"name": name, "recommendations": recs}


def create_app(settings: FloorSettings) -> Starlette:
    encoded = orjson.dumps(fixed_answer(settings))
    batch_item = fixed_answer(settings)

    async def infer(request: Request) -> Response:
        body = await request.body()
        if settings.parse_json:
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError:
                return JSONResponse({"detail": "malformed JSON"}, status_code=400)
        return Response(encoded, media_type="application/json")

    async def batch(request: Request) -> Response:
        body = await request.body()
        size = len(orjson.loads(body)) if settings.parse_json else 1
        return Response(orjson.dumps([batch_item] * size), media_type="application/json")

    async def readyz(request: Request) -> Response:
        return JSONResponse({"ready": True})

    return Starlette(
        routes=[
            Route("/infer", infer, methods=["POST"]),
            Route("/batch", batch, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/healthz", readyz, methods=["GET"]),
        ]
    )


def app_from_env() -> Starlette:
    """uvicorn --factory entry point (each worker process calls it)."""
    return create_app(FloorSettings.from_env(os.environ))


FLOOR_FACTORY = "benchmarks.floor_app:app_from_env"


def serve(
    host: str,
    port: int,
    workers: int,
    tcp_nodelay: bool = True,
    log_level: str = "info",
    factory: str = FLOOR_FACTORY,
    http: str = "auto",
    loop: str = "auto",
) -> None:
    """Run an app factory with uvicorn: one listening socket shared by `workers` processes (as `uvicorn --workers`),
    with TCP_NODELAY set on it unless tcp_nodelay is False; http / loop: uvicorn's implementations."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level=log_level,
        http=http,  # type: ignore[arg-type]
        loop=loop,  # type: ignore[arg-type]
    )
    sock = config.bind_socket()
    if tcp_nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets (Linux)
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor_app", description="fixed-answer floor server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--id-type", choices=("int", "str"), default="int")
    parser.add_argument("--no-parse", action="store_true", help="read the body without decoding it")
    parser.add_argument("--stock-uvicorn", action="store_true", help="leave TCP_NODELAY off (see the docstring)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--http", choices=("auto", "httptools", "h11"), default="auto", help="uvicorn's HTTP parser")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="uvicorn's event loop")
    parser.add_argument(
        "--factory",
        default=FLOOR_FACTORY,
        help="serve another app factory the same way, e.g. api.app:create_app (RECSYS_* settings from the "
        "environment): the service as it runs once its launcher sets TCP_NODELAY too",
    )
    args = parser.parse_args(argv)
    settings = FloorSettings(k=args.k, id_type=args.id_type, parse_json=not args.no_parse)
    os.environ.update(settings.to_env())  # the workers build their app from these
    serve(
        args.host, args.port, args.workers, not args.stock_uvicorn, args.log_level, args.factory, args.http, args.loop
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
