"""Expand a SAM template with aws-sam-translator, the transform `sam deploy` applies, and cache it.

Why: the gateway should run what CloudFormation receives, not its own reading of
`AWS::Serverless::*` (Globals, `AWS::Serverless::WebSocketApi`, the intrinsics SAM
resolves). The translator runs in a subprocess under the SAM CLI's interpreter
(`.venv-sam`), because SAM pins boto3 and pydantic versions the gateway's venv does
not have. A template's expansion is cached by the hash of everything it depends on,
so only the first start after an edit pays for the subprocess.

Local code paths survive the transform as `s3://parley-local-code/<quoted path>`:
the translator insists on S3 locations, and `local_code_path` turns them back.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
# The SAM interpreter runs our own script, with a fixed argv and no shell.
import subprocess  # nosec B404
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from ..local_aws.account import REGION
from .cfn import TemplateError

__all__ = [
    "SAM_TRANSFORM",
    "Expansion",
    "expand",
    "find_sam_python",
    "local_code_path",
    "uses_sam_transform",
]

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
LOCAL_CODE_BUCKET = "parley-local-code"
SAM_PYTHON_ENV = "PARLEY_SAM_PYTHON"
CACHE_DIR_ENV = "PARLEY_CACHE_DIR"
CACHE_SUBDIR = Path(".aws-sam") / "parley"
TRANSFORM_TIMEOUT_S = 120.0
# Expansions kept per template. Every edit of a template, and every new set of parameters, is a new
# entry; without a bound, a checkout whose tests start gateways with per-run parameters collected
# hundreds. A few cover switching between branches or parameter sets without paying the transform.
CACHE_KEEP = 8

_WORKER = Path(__file__).with_name("_sam_translate.py")
# Where SAM keeps a local path that the translator would otherwise reject: (resource type, property).
_LOCAL_PATH_PROPERTY = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


@dataclass(frozen=True)
class Expansion:
    """A transformed template and how it was obtained (for the start-up banner)."""

    template: dict[str, Any]
    translator_version: str
    cached: bool
    cache_file: Path




def uses_sam_transform(doc: dict[str, Any]) -> bool:
    transform = doc.get("Transform")
    names = transform if isinstance(transform, list) else [transform]
    return SAM_TRANSFORM in names


def find_sam_python(template_dir: Path) -> Path | None:
    """The interpreter that has `samtranslator`: $PARLEY_SAM_PYTHON, else a `.venv-sam` in the
    template's folder, one of its parents or the working directory, else the one `sam` on PATH runs."""
    explicit = os.environ.get(SAM_PYTHON_ENV)
    if explicit:
        return Path(explicit)
    for base in (template_dir.resolve(), *template_dir.resolve().parents, Path.cwd()):
        candidate = base / ".venv-sam" / "bin" / "python"
        if candidate.exists():
            return candidate
    sam = shutil.which("sam")
    if sam:
        try:
            with open(sam, "rb") as fh:
                first = fh.readline().decode("utf-8", "replace").strip()
        except OSError:
            return None
        if first.startswith("#!") and "python" in first:
            interpreter = Path(first[2:].split()[0])
            if interpreter.exists():
                return interpreter
    return None


def _translator_version(python: Path) -> str:
    """`samtranslator.__version__` read from its file next to `python`, without starting it."""
    venv = python.parent.parent
    for init in sorted(venv.glob("lib/python*/site-packages/samtranslator/__init__.py")):
        m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", init.read_text(encoding="utf-8"))
        if m:
            return m.group(1)
    return "unknown"


def _with_code_placeholders(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of `doc` whose local CodeUri/ContentUri strings are S3 URIs the translator accepts."""
    out = json.loads(json.dumps(doc))

    def placeholder(value: Any) -> Any:
        if isinstance(value, str) and not value.startswith("s3://"):
            return f"s3://{LOCAL_CODE_BUCKET}/{quote(value, safe='')}"
        return value

    glob_fn = (out.get("Globals") or {}).get("Function") or {}
    if "CodeUri" in glob_fn:
        glob_fn["CodeUri"] = placeholder(glob_fn["CodeUri"])
    for res in (out.get("Resources") or {}).values():
        if not isinstance(res, dict):
            continue
        key = _LOCAL_PATH_PROPERTY.get(str(res.get("Type")))
        if key is None:
            continue
        props = res.setdefault("Properties", {})
        if key in props:
            props[key] = placeholder(props[key])
        elif res["Type"] == "AWS::Serverless::Function" and "CodeUri" not in glob_fn and not _has_other_code(props):
            props[key] = placeholder(".")  # `sam build` and `sam deploy` default CodeUri to the template's folder
    return out


def _has_other_code(props: dict[str, Any]) -> bool:
    return any(k in props for k in ("InlineCode", "ImageUri")) or props.get("PackageType") == "Image"


def local_code_path(code: Any) -> str | None:
    """The local path a transformed `Code`/`Content` stands for (None: not local code)."""
    if isinstance(code, str):
        return code
    if isinstance(code, dict) and code.get("S3Bucket") == LOCAL_CODE_BUCKET and isinstance(code.get("S3Key"), str):
        return unquote(code["S3Key"])
    return None


def _cache_dir(template_path: Path) -> Path:
    explicit = os.environ.get(CACHE_DIR_ENV)
    return Path(explicit) if explicit else template_path.parent / CACHE_SUBDIR


def _mark_used(cache_file: Path) -> None:
    """A hit makes the entry the newest, so pruning drops the least recently used ones."""
    try:
        os.utime(cache_file)
    except OSError:
        pass


def _prune(cache_file: Path) -> None:
    """Keep the CACHE_KEEP most recently used expansions of `cache_file`'s template, delete the rest.

    Another gateway may be pruning or reading the same folder: a file already gone is skipped, and
    a reader that loses its file to a prune only pays the transform again."""
    stem = cache_file.name.rsplit("-", 1)[0]
    ours = re.compile(rf"{re.escape(stem)}-[0-9a-f]{{32}}\.json")  # not `template-a-<hash>`, nor another tool's file
    entries = []
    for path in cache_file.parent.glob(f"{glob.escape(stem)}-*.json"):
        if not ours.fullmatch(path.name):
            continue
        try:
            entries.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    for _, path in sorted(entries, reverse=True)[CACHE_KEEP:]:
        if path != cache_file:
            try:
                path.unlink(missing_ok=True)
            except OSError:  # not ours to delete: the cache only grows, as before
                pass


def expand(doc: dict[str, Any], template_path: Path, parameters: dict[str, str], python: Path) -> Expansion:
    """`doc` as CloudFormation receives it after the SAM transform, from the cache when it is there."""
    request = {"template": _with_code_placeholders(doc), "parameters": parameters}
    version = _translator_version(python)
    key_material = json.dumps(
        {"request": request, "translator": version, "worker": _WORKER.read_text(encoding="utf-8")},
        sort_keys=True, default=str,
    )
    digest = hashlib.sha256(key_material.encode()).hexdigest()[:32]
    cache_file = _cache_dir(template_path) / f"{template_path.stem}-{digest}.json"
    try:
        cached = json.loads(cache_file.read_text(encoding="utf-8"))
        expansion = Expansion(cached["template"], str(cached["version"]), True, cache_file)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    else:
        _mark_used(cache_file)
        return expansion
    env = {**os.environ, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
    try:
        proc = subprocess.run(  # nosec B603
            [str(python), "-I", str(_WORKER)], input=json.dumps(request, default=str),
            capture_output=True, text=True, timeout=TRANSFORM_TIMEOUT_S, env=env, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TemplateError(f"{template_path}: the SAM transform could not run with {python}: {exc}") from exc
    try:
        answer = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        answer = {}
    if "errors" in answer:
        details = "\n  ".join(answer["errors"])
        raise TemplateError(f"{template_path}: the SAM transform rejects the template (as `sam validate` would):\n  {details}")
    if proc.returncode != 0 or "template" not in answer:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise TemplateError(
            f"{template_path}: the SAM transform failed under {python} (exit {proc.returncode}):\n  " + "\n  ".join(tail)
            + f"\n  Rebuild the SAM CLI venv (`make sam-cli`) or point ${SAM_PYTHON_ENV} at a Python with aws-sam-translator."
        )
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(answer), encoding="utf-8")
        tmp.replace(cache_file)
    except OSError as exc:  # a read-only checkout still runs, only slower
        print(f"parley: cannot cache the SAM transform in {cache_file.parent}: {exc}", file=sys.stderr)
    else:
        _prune(cache_file)
    return Expansion(answer["template"], str(answer.get("version", version)), False, cache_file)
