"""Cold start of every function against the floor for the same work, measured in the same run.

For each folder in functions/, a fresh `python -c` process (PYTHONPATH: the function dir and
layers/common/python, where Lambda has /var/task and /opt/python; the template's environment for
that function with its default parameters (so TracingMode=PassThrough: no Tracer, no X-Ray SDK);
and the variables Lambda sets) imports `app` and creates the clients its first invocation creates,
through the project's own code: PynamoDB's DynamoDB client and the `@connections` sender for
message functions, the Powertools SSM provider for the authorizer, none for `$connect` (it calls
nothing). The floor is a fresh process doing `import boto3` and creating the same clients with boto3.
Runs are interleaved in shuffled rounds (one warm-up round discarded) so noise hits all alike.

    .venv/bin/python benchmarks/cold_start_bench.py [--repeat 7] [--json out.json] [--functions connect authorizer]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from common import ROOT, median, publish

from parley_testing.functions import lambda_import_env

GOAL = 1.25
ENDPOINT = "https://abcdef1234.execute-api.us-east-1.amazonaws.com/test"

FLOORS = {
    "none": "import boto3",
    "ssm": "import boto3\nboto3.client('ssm')",
    "dynamodb+apigw": f"import boto3\nboto3.client('dynamodb')\nboto3.client('apigatewaymanagementapi', endpoint_url={ENDPOINT!r})",
}
CLIENTS = {
    "none": "",
    "ssm": "from aws_lambda_powertools.utilities.parameters import SSMProvider\nSSMProvider()",
    "dynamodb+apigw": "from parley.aws.tables import Membership\nMembership._get_connection().connection.client\n"
                      f"from parley.aws.management_api import sender_for\nsender_for({ENDPOINT!r}, 64)",
}
TIMED = "import time as _t\n_t0 = _t.perf_counter()\n{body}\nprint(_t.perf_counter() - _t0)"


def clients_of(folder: str) -> str:
    return {"authorizer": "ssm", "connect": "none"}.get(folder, "dynamodb+apigw")


def function_envs() -> dict[str, dict[str, str]]:
    """folder -> the template's environment for that function, resolved the way `parley dev` does."""
    from parley_local.gateway.template import load_stack

    stack = load_stack(ROOT / "template.yaml", stack_name="bench")
    return {
        spec.code_dir.name: {**spec.environment, "AWS_LAMBDA_FUNCTION_NAME": logical_id}
        for logical_id, spec in stack.functions.items()
    }


def lambda_env(extra: dict[str, str], folder: str | None) -> dict[str, str]:
    """The variables Lambda sets for function `folder` (None: a floor process, which is no function)."""
    task_root = ROOT / "functions" / folder if folder else Path("/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_ENDPOINT_URL"))}
    env.update(lambda_import_env(folder))
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
               LAMBDA_TASK_ROOT=str(task_root), AWS_EXECUTION_ENV="AWS_Lambda_python3.13",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", _HANDLER="app.lambda_handler")
    env.update(extra)
    return env


def function_code(folder: str) -> str:
    return TIMED.format(body="import app\n" + CLIENTS[clients_of(folder)])


def run_once(code: str, env: dict[str, str], flags: tuple[str, ...] = ()) -> tuple[float, float, str]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, *flags, "-c", code], env=env, cwd="/tmp", capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    return wall, float(out.stdout.strip().splitlines()[-1]), out.stderr


def importtime_offenders(code: str, env: dict[str, str], top: int = 12) -> list[tuple[str, float]]:
    """Self import time summed by top-level package (ms), from `python -X importtime`."""
    _, _, stderr = run_once(code, env, ("-X", "importtime"))
    by_package: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            by_package[m.group(4).split(".")[0]] += int(m.group(1)) / 1000
    return sorted(by_package.items(), key=lambda kv: -kv[1])[:top]


def run(repeat: int, only: list[str] | None = None) -> dict:
    """`only`: these function folders (and the floors they are compared with) instead of all."""
    envs = function_envs()
    folders = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists())
    if only:
        unknown = sorted(set(only) - set(folders))
        if unknown:
            raise SystemExit(f"no such function folder: {', '.join(unknown)} (functions/ has {', '.join(folders)})")
        folders = sorted(set(only))
    jobs: dict[str, tuple[str, dict[str, str]]] = {}
    for name in sorted({clients_of(folder) for folder in folders}):
        jobs[f"floor:{name}"] = (TIMED.format(body=FLOORS[name]), lambda_env({}, None))
    for folder in folders:
        jobs[folder] = (function_code(folder), lambda_env(envs.get(folder, {}), folder))
    walls: dict[str, list[float]] = defaultdict(list)
    inner: dict[str, list[float]] = defaultdict(list)
    order = list(jobs)
    for round_ in range(repeat + 1):
        random.shuffle(order)
        for name in order:
            wall, t, _ = run_once(*jobs[name])
            if round_:  # round 0 warms the page cache
                walls[name].append(wall)
                inner[name].append(t)
    results = {}
    for folder in folders:
        floor = f"floor:{clients_of(folder)}"
        w, f = median(walls[folder]), median(walls[floor])
        i, fi = median(inner[folder]), median(inner[floor])
        results[folder] = {"clients": clients_of(folder), "wall_s": w, "floor_wall_s": f, "ratio": w / f,
                           "import_s": i, "floor_import_s": fi, "import_ratio": i / fi, "met": w / f <= GOAL}
    worst = max(results, key=lambda k: results[k]["ratio"])
    floor_name = f"floor:{clients_of(worst)}"
    return {
        "repeat": repeat, "goal": GOAL, "functions": results,
        "floors": {k.split(":", 1)[1]: {"wall_s": median(walls[k]), "import_s": median(inner[k])} for k in jobs if k.startswith("floor:")},
        "worst": worst,
        "worst_importtime_ms": importtime_offenders(*jobs[worst]),
        "floor_importtime_ms": importtime_offenders(*jobs[floor_name]),
        "python": sys.version.split()[0],
    }


def report(data: dict) -> str:
    lines = [f"cold start: median of {data['repeat']} fresh processes; floor = import boto3 + the same clients",
             f"{'function':14} {'clients':15} {'process':>9} {'floor':>8} {'ratio':>6} {'import+clients':>15} {'floor':>8} {'ratio':>6}  goal <= {data['goal']}x"]
    for folder, r in data["functions"].items():
        lines.append(f"{folder:14} {r['clients']:15} {r['wall_s'] * 1000:7.0f}ms {r['floor_wall_s'] * 1000:6.0f}ms {r['ratio']:5.2f}x "
                     f"{r['import_s'] * 1000:13.0f}ms {r['floor_import_s'] * 1000:6.0f}ms {r['import_ratio']:5.2f}x  "
                     f"{'met' if r['met'] else 'NOT met'}")
    lines.append(f"worst: {data['worst']}; self import time by top-level package (ms), function vs floor:")
    floor = dict(data["floor_importtime_ms"])
    for package, ms in data["worst_importtime_ms"]:
        lines.append(f"  {package:28} {ms:7.1f}   (floor {floor.get(package, 0):6.1f})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--functions", nargs="+", metavar="FOLDER", help="only these functions/ folders (default: all)")
    args = parser.parse_args()
    data = run(args.repeat, args.functions)
    publish(report(data), data, args.json)


if __name__ == "__main__":
    main()
