"""deploy/ray: the RayJob example parses, targets KubeRay's v1 API, and its entrypoint is a valid recsys-score
command on the Ray engine with the shared volume mounted where the command reads and writes."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from bulk_score.__main__ import parser

RAY_DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "ray"


def test_rayjob_entrypoint_is_a_valid_recsys_score_command() -> None:
    job = yaml.safe_load((RAY_DEPLOY / "recsys-score-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    command = shlex.split(job["spec"]["entrypoint"])
    assert command[0] == "recsys-score"
    args = parser().parse_args(command[1:])
    assert args.engine == "ray"
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    for pod in pods:
        mounts = {m["mountPath"] for c in pod["spec"]["containers"] for m in c["volumeMounts"]}
        assert {str(args.users), str(args.index_root), str(args.out.parent)} <= mounts
