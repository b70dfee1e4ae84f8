"""The Dockerfile, checked without a Docker engine: every path it copies and every command it runs exists in the repo
(and is not excluded by .dockerignore), it runs as a non-root user, its health check hits a real route, and its
entry point is the serve command of the README and the Makefile."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from api.app import create_app
from api.settings import Settings, unknown_variables

REPO = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, rest = pending.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), f"use the exec form: {arguments}"
    return [str(part) for part in parsed]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            for item in shlex.split(arguments):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern.rstrip("/")) for pattern in dockerignore() for prefix in prefixes)


def test_multi_stage_on_one_base_image_defaulting_to_python_slim() -> None:
    """Every stage FROM ${BASE_IMAGE} (the venv links to the base's Python), by default the official slim image;
    docker/ci_docker_test.sh passes a locally made one."""
    text = (REPO / "Dockerfile").read_text()
    first = next(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    assert first == "ARG BASE_IMAGE=python:3.11-slim", "the ARG must come before the first FROM"
    froms = [arguments for keyword, arguments in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert all(image.split()[0] == "${BASE_IMAGE}" for image in froms)
    assert froms[0].split()[-2:] == ["AS", "build"]


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    copies = [arguments for keyword, arguments in instructions() if keyword == "COPY"]
    assert copies
    for arguments in copies:
        parts = arguments.split()
        if any(part.startswith("--from=") for part in parts):
            continue
        sources = [part for part in parts[:-1] if not part.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert not ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_the_packages_the_image_installs_are_all_copied() -> None:
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = {arguments.split()[0] for keyword, arguments in instructions() if keyword == "COPY"}
    for pattern in find["include"]:
        package = pattern.rstrip("*")
        where = next(w for w in find.get("where", ["."]) if (REPO / w / package).is_dir())
        top = package if where == "." else where  # client/recsys_client is copied as client
        assert top in copied, f"{package} ({where}) is installed but not copied into the image"


def test_runs_as_a_non_root_user_with_the_index_as_a_volume() -> None:
    stage = final_stage()
    users = [arguments for keyword, arguments in stage if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    keywords = [keyword for keyword, _ in stage]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    env = env_of(stage)
    volumes = [exec_form(arguments) for keyword, arguments in stage if keyword == "VOLUME"]
    assert [env["RECSYS_INDEX_ROOT"]] in volumes
    assert not unknown_variables(env), "ENV names a RECSYS_* variable that no setting reads"
    assert Settings.from_env(env).host == "0.0.0.0"


def test_healthcheck_hits_a_real_route_on_the_exposed_port() -> None:
    stage = final_stage()
    check = next(arguments for keyword, arguments in stage if keyword == "HEALTHCHECK")
    assert "/healthz" in check
    paths = {getattr(route, "path", None) for route in create_app(Settings()).routes}
    assert "/healthz" in paths
    exposed = [arguments for keyword, arguments in stage if keyword == "EXPOSE"]
    assert exposed == [env_of(stage)["RECSYS_PORT"]]
    command = exec_form(check.split("CMD", 1)[1].strip())
    assert command[0] == "python"
    compile(command[2], "<healthcheck>", "exec")


def test_entry_point_is_the_readme_serve_command() -> None:
    stage = final_stage()
    entry = exec_form(next(arguments for keyword, arguments in stage if keyword == "ENTRYPOINT"))
    command = exec_form(next(arguments for keyword, arguments in stage if keyword == "CMD"))
    assert command[0] == "recsys-serve"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["recsys-serve"] == "api.__main__:main"
    makefile = (REPO / "Makefile").read_text()
    serve_recipe = makefile.split("\nserve:", 1)[1].split("\n\n", 1)[0]
    assert "/recsys-serve " in serve_recipe
    assert "make serve" in (REPO / "README.md").read_text()
    assert "recsys-serve --index-root" in (REPO / "api" / "README_API.md").read_text()
    # The entry script: copied from the repo, valid shell, runs the command it is given.
    assert entry[0] == "sh"
    copied = {
        arguments.split()[-1]: arguments.split()[-2]
        for keyword, arguments in stage
        if keyword == "COPY" and "--from" not in arguments
    }
    script = REPO / copied[entry[1]]
    text = script.read_text()
    assert text.rstrip().endswith('exec "$@"')
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0


def test_the_entry_script_builds_the_demo_from_copied_files() -> None:
    stage = final_stage()
    copied = {
        arguments.split()[-1]: arguments.split()[-2]
        for keyword, arguments in stage
        if keyword == "COPY" and "--from" not in arguments
    }
    script = (REPO / "docker" / "entrypoint.sh").read_text()
    assert "index-builder build" in script
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "index-builder" in scripts
    defaults = re.findall(r"/app/[^\s}\"]+", "\n".join(line for line in script.splitlines() if "BOOTSTRAP_" in line))
    assert sorted(defaults) == ["/app/demo/products.jsonl", "/app/demo/queries.npy"]
    for path in defaults:
        directory, _, name = path.rpartition("/")
        assert directory in copied, f"{path}: not copied into the image"
        assert (REPO / copied[directory] / name).is_file(), f"{path}: {copied[directory]}/{name} is not in the repo"


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_the_entry_script_builds_an_index_only_when_none_is_mounted(tmp_path: Path) -> None:
    """Run the script with stand-in commands: it must call the builder once for an empty root, then exec."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name in ("index-builder", "recsys-serve"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        stub.chmod(0o755)
    root = tmp_path / "indexes"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RECSYS_INDEX_ROOT": str(root)}
    script = str(REPO / "docker" / "entrypoint.sh")
    subprocess.run(["sh", script, "recsys-serve"], env=env, check=True, capture_output=True)
    first = calls.read_text().splitlines()
    assert first[0].startswith(
        f"index-builder build /app/demo/products.jsonl --queries /app/demo/queries.npy --out {root}"
    )
    assert first[1] == "recsys-serve "
    root.mkdir(exist_ok=True)
    (root / "current").symlink_to("v1")
    calls.unlink()
    subprocess.run(["sh", script, "recsys-serve"], env=env, check=True, capture_output=True)
    assert calls.read_text().splitlines() == ["recsys-serve "]
    # A given input, without queries (deploy/bootstrap-job.yaml's BOOTSTRAP_* variables).
    other = tmp_path / "other"
    calls.unlink()
    given = {**env, "RECSYS_INDEX_ROOT": str(other), "BOOTSTRAP_INPUT": "/data/e/p.parquet", "BOOTSTRAP_QUERIES": ""}
    subprocess.run(["sh", script, "true"], env=given, check=True, capture_output=True)
    assert calls.read_text().splitlines() == [f"index-builder build /data/e/p.parquet --out {other} --keep 3"]


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX shell")
def test_a_read_only_index_root_without_an_index_stops_with_a_message(tmp_path: Path) -> None:
    """Kubernetes mounts the index volume read-only: the entry script must not try to build into it. (A root that
    cannot be created stands in for it: a read-only mount cannot be made here, and root may write anywhere.)"""
    (tmp_path / "a-file").write_text("")
    root = tmp_path / "a-file" / "indexes"
    env = {"PATH": "/usr/bin:/bin", "RECSYS_INDEX_ROOT": str(root)}
    done = subprocess.run(
        ["sh", str(REPO / "docker" / "entrypoint.sh"), "true"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "not writable" in done.stderr and "bootstrap-job.yaml" in done.stderr


def test_the_image_installs_every_third_party_module_the_packages_import() -> None:
    """The image installs pyproject's dependencies only: each module imported by the served packages must be one."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {
        re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in project["dependencies"]
    }
    # Optional extras the code imports only when asked for (RECSYS_SERVER=granian checks the module is there first).
    declared |= {re.split(r"[<>=]", spec)[0] for spec in project["optional-dependencies"]["granian"]}
    ours = {"api", "index_builder", "index_format"}
    distributions = packages_distributions()
    missing = set()
    for package in ours:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in ours or top in sys.stdlib_module_names:
                        continue
                    dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                    if not dists & declared:
                        missing.add(f"{top} ({path.relative_to(REPO)})")
    assert not missing, f"imported but not in pyproject.toml [project] dependencies: {sorted(missing)}"


def test_ci_builds_and_smoke_tests_the_image() -> None:
    """.ci/run → make docker-test → docker/ci_docker_test.sh, which passes its local base image as BASE_IMAGE and
    checks what the issue asks: healthy, POST /infer 200, not root, docker stop exit 0, size and time reported."""
    assert "make docker-test" in (REPO / ".ci" / "run").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "bash docker/ci_docker_test.sh" in makefile.split("\ndocker-test:", 1)[1].split("\n\n", 1)[0]
    script = REPO / "docker" / "ci_docker_test.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    for needed in (
        "--build-arg BASE_IMAGE=",
        "--network host",
        "--iptables=false",
        "--bridge=none",
        "netns/default",
        "mmdebstrap",
        "Health.Status",
        "/infer",
        "id -u",
        "docker stop",
        "image size",
        "SKIPPED: docker cannot run",
    ):
        assert needed in text, needed
    assert re.search(r"locked mmdebstrap", text) and re.search(r"locked docker build", text), "heavy steps locked"
