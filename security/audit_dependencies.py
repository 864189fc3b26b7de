"""Audit a fully pinned requirements file (the layer lock) with pip-audit, through the PyPI JSON this network serves.

Usage: .venv/bin/python security/audit_dependencies.py LOCK [--waivers FILE] [--pypi-url URL]

Why not stock `pip-audit -r LOCK`: its PyPI service asks /pypi/<name>/<version>/json, which
answers 404 for every package on this network, and OSV is unreachable, so stock pip-audit audits
nothing here. /pypi/<name>/json does answer, but its `vulnerabilities` describe only the project's
newest release. So everything stays pip-audit's own - the requirements-file source (no
resolution: the lock is pinned), the Auditor (alias merging), PyPIService's mapping of the JSON,
the columns output - except the one service below, which asks the per-release JSON first and
falls back to the project JSON only when that JSON describes the pinned version. A pin it cannot
audit fails the run unless a waiver (security/audit-waivers.toml) names that exact pin and says why.

pip-audit's private modules (pip_audit._service, ...) are used on purpose: pyproject.toml pins
pip-audit==2.10.1, and tests/test_dependency_audit.py fails if their behaviour moves.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import requests
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pip_audit._audit import Auditor
from pip_audit._dependency_source import DependencySourceError
from pip_audit._dependency_source.requirement import RequirementSource
from pip_audit._format.columns import ColumnsFormat
from pip_audit._service.interface import (
    ConnectionError,
    Dependency,
    ResolvedDependency,
    ServiceError,
    SkippedDependency,
    VulnerabilityResult,
    VulnerabilityService,
)
from pip._internal.models.index import PyPI
from pip_audit._service.pypi import PyPIService
from pip_requirements_parser import RequirementsFile
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

HERE = Path(__file__).resolve().parent
DEFAULT_WAIVERS = HERE / "audit-waivers.toml"
# The index pip itself treats as PyPI (pip-audit's own service asks the same one).
DEFAULT_PYPI_URL = PyPI.url.rstrip("/")
RELOCK = "change security/layer-requirements.in and run `make lock-layer`"

Pin = tuple[str, Version]  # (canonical name, version)


class AuditInputError(Exception):
    """The lock or the waivers file is not what the audit needs; the message says what to fix."""


# ------------------------------------------------------------------ the vulnerability service

class _OneDocument:
    """Stands in for PyPIService's HTTP session and answers with a document already fetched.

    That way the JSON-to-result mapping (withdrawn entries skipped, id + aliases, sorted
    fixed_in, summary or details) is pip-audit's own code, not a copy that could drift from it.
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document

    def get(self, url: str, timeout: float | None = None) -> _OneDocument:
        return self

    def raise_for_status(self) -> None:
        return None

    def json(self) -> dict[str, Any]:
        return self._document


class _PyPIDocumentMapper(PyPIService):
    """PyPIService without its network: maps one PyPI JSON document to vulnerability results."""

    def __init__(self, document: dict[str, Any]) -> None:  # no super().__init__: no cache, no session
        self.session = cast(Any, _OneDocument(document))
        self.timeout = None


def vulnerabilities_in(document: dict[str, Any], dependency: ResolvedDependency) -> list[VulnerabilityResult]:
    """The vulnerabilities a PyPI JSON document lists, exactly as pip-audit's PyPIService reads them."""
    return _PyPIDocumentMapper(document).query(dependency)[1]


class PinnedPyPIService(VulnerabilityService):
    """Audits a pin from /pypi/<name>/<version>/json, else from /pypi/<name>/json when that is the same version.

    The project JSON's `vulnerabilities` apply to its `info.version` only: applying them to any
    other pin would report an older release as clean without evidence, so such a pin is skipped
    (not audited) instead.
    """

    def __init__(self, base_url: str = DEFAULT_PYPI_URL, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "parley-dependency-audit (pip-audit 2.10.1)"
        retry = Retry(total=2, backoff_factor=0.2, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=("GET",))
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.audited_from: dict[str, str] = {}  # canonical name -> the document that audited it

    def query(self, spec: Dependency) -> tuple[Dependency, list[VulnerabilityResult]]:
        if spec.is_skipped():
            return spec, []
        dependency = cast(ResolvedDependency, spec)
        name, version = dependency.canonical_name, dependency.version
        release = self._get_json(f"{self.base_url}/pypi/{name}/{version}/json")
        if release is not None:
            self.audited_from[name] = "per-release JSON"
            return dependency, vulnerabilities_in(release, dependency)
        project = self._get_json(f"{self.base_url}/pypi/{name}/json")
        if project is None:
            return SkippedDependency(name=dependency.name, skip_reason=f"{name} is not on PyPI"), []
        newest = str(project.get("info", {}).get("version", ""))
        if not _same_version(newest, version):
            reason = (f"no per-release JSON for {version}, and the project JSON's vulnerability "
                      f"list describes {newest or 'no version'} (its newest release), not {version}")
            return SkippedDependency(name=dependency.name, skip_reason=reason), []
        self.audited_from[name] = "project JSON of the newest release"
        return dependency, vulnerabilities_in(project, dependency)

    def _get_json(self, url: str) -> dict[str, Any] | None:
        """The JSON at `url`, or None on 404; any other answer is an error, never a silent skip."""
        try:
            response = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as error:
            raise ConnectionError(f"could not reach {url}: {error}") from error
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ServiceError(f"{url} answered HTTP {response.status_code}")
        try:
            return cast(dict[str, Any], response.json())
        except ValueError as error:
            raise ServiceError(f"{url} did not answer JSON") from error


def _same_version(text: str, version: Version) -> bool:
    try:
        return Version(text) == version
    except InvalidVersion:
        return False


# ------------------------------------------------------------------ the lock and the waivers

def read_pins(lock: Path) -> dict[str, Version]:
    """The lock's pins. pip-audit's own source rejects a line not pinned with ==; this adds what it lets through."""
    if not lock.is_file():
        raise AuditInputError(f"{lock} does not exist: pass the lock file (layers/common/python/requirements.txt).")
    parsed = RequirementsFile.from_file(str(lock))
    if parsed.invalid_lines:
        bad = parsed.invalid_lines[0]
        raise AuditInputError(f"{lock}:{bad.line_number} is not a requirement line ({bad.error_message}): {RELOCK}.")
    pins: dict[str, Version] = {}
    seen: set[str] = set()
    for requirement in parsed.requirements:
        line = requirement.requirement_line.line_number
        if requirement.req is None or requirement.name is None:
            raise AuditInputError(f"{lock}:{line} is a URL or path, which cannot be audited: {RELOCK}.")
        name = canonicalize_name(requirement.name)
        if name in seen:
            raise AuditInputError(f"{lock}:{line} lists {name} a second time: a lock pins each package once; {RELOCK}.")
        if requirement.marker is not None:
            raise AuditInputError(f"{lock}:{line} has an environment marker: the lock is resolved for one "
                                  f"target, and a marker would make the audit depend on this machine; {RELOCK}.")
        seen.add(name)
        specifiers = list(requirement.specifier or [])
        if len(specifiers) == 1 and specifiers[0].operator == "==" and "*" not in specifiers[0].version:
            pins[name] = Version(specifiers[0].version)
        # anything else is left for pip-audit's RequirementSource to reject as "not pinned"
    return pins


@dataclass(frozen=True)
class Waiver:
    """One accepted exception: for `pin`, either "not audited" (no ids) or exactly the advisories in `ids`."""

    name: str
    version: Version
    reason: str
    ids: frozenset[str]

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"

    def covers(self, vulnerability: VulnerabilityResult) -> bool:
        return bool(self.ids) and vulnerability.has_any_id(set(self.ids))


def read_waivers(path: Path) -> dict[Pin, Waiver]:
    if not path.is_file():
        raise AuditInputError(f"{path} does not exist: create it (it may hold no [[waiver]] entries).")
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise AuditInputError(f"{path} is not valid TOML: {error}") from error
    # A misspelt key would otherwise drop a waiver, or a waiver's `ids`, without a word.
    if set(document) - {"waiver"}:
        raise AuditInputError(f"{path}: unknown top-level key(s) {sorted(set(document) - {'waiver'})}; "
                              "each waiver is a [[waiver]] table with pin, reason and optional ids.")
    waivers: dict[Pin, Waiver] = {}
    entries = document.get("waiver", [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise AuditInputError(f"{path}: waivers must be [[waiver]] tables.")
    for number, entry in enumerate(entries, start=1):
        where = f"{path}, waiver {number}"
        if set(entry) - {"pin", "reason", "ids"}:
            raise AuditInputError(f"{where}: unknown key(s) {sorted(set(entry) - {'pin', 'reason', 'ids'})}; "
                                  "a waiver has pin, reason and optional ids.")
        pin, reason, ids = entry.get("pin"), entry.get("reason"), entry.get("ids", [])
        if not isinstance(pin, str) or pin.count("==") != 1:
            raise AuditInputError(f'{where}: `pin` must be one exact "package==version".')
        if not isinstance(reason, str) or not reason.strip():
            raise AuditInputError(f"{where} ({pin}): `reason` is mandatory: say why this is acceptable.")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise AuditInputError(f"{where} ({pin}): `ids` must be a list of advisory ids.")
        name, _, version_text = pin.partition("==")
        try:
            version = Version(version_text.strip())
        except InvalidVersion as error:
            raise AuditInputError(f"{where}: {version_text!r} is not a version.") from error
        waiver = Waiver(canonicalize_name(name.strip()), version, " ".join(reason.split()), frozenset(ids))
        if (waiver.name, waiver.version) in waivers:
            raise AuditInputError(f"{where}: a second waiver for {waiver.pin}; merge them into one.")
        waivers[(waiver.name, waiver.version)] = waiver
    return waivers


# ------------------------------------------------------------------ the run

@dataclass
class Outcome:
    """What the audit found, after waivers; `failures` empty means the lock passes."""

    report: dict[Dependency, list[VulnerabilityResult]]  # unwaived findings, in pip-audit's shape
    applied: list[tuple[Waiver, str]]
    notes: list[str]
    failures: list[str]


def judge(results: Iterable[tuple[Dependency, list[VulnerabilityResult]]], pins: dict[str, Version],
          waivers: dict[Pin, Waiver], lock: Path, waivers_path: Path) -> Outcome:
    outcome = Outcome(report={}, applied=[], notes=[], failures=[])
    used: set[Pin] = set()
    vulnerable = unaudited = 0
    for dependency, vulnerabilities in results:
        pin = (dependency.canonical_name, pins[dependency.canonical_name])
        waiver = waivers.get(pin)
        if dependency.is_skipped():
            if waiver is not None and not waiver.ids:
                used.add(pin)
                outcome.applied.append((waiver, "not audited"))
            else:
                unaudited += 1
                outcome.report[dependency] = []
            continue
        kept = [v for v in vulnerabilities if waiver is None or not waiver.covers(v)]
        for accepted in (v for v in vulnerabilities if v not in kept):
            used.add(pin)
            outcome.applied.append((cast(Waiver, waiver), f"accepts {accepted.id}"))
        if kept:
            vulnerable += len(kept)
            outcome.report[dependency] = kept
    if vulnerable:
        outcome.failures.append(
            f"{vulnerable} known vulnerabilit{'y' if vulnerable == 1 else 'ies'} in {lock}. Move the package "
            f"to a Fix Version ({RELOCK}); only if an advisory cannot affect Parley, add its id to a "
            f"waiver for that exact pin in {waivers_path}, with the reason.")
    if unaudited:
        outcome.failures.append(
            f"{unaudited} pin(s) could not be audited. Prefer the newest release ({RELOCK}); if a pin "
            f"cannot move, check it with stock `pip-audit -r {lock}` where PyPI's per-release JSON or "
            f"OSV is reachable, then add a waiver for the exact pin to {waivers_path}, with the reason.")
    for pin, waiver in waivers.items():
        if pins.get(pin[0]) != pin[1]:
            outcome.failures.append(
                f"stale waiver in {waivers_path}: {waiver.pin} is not in {lock}"
                + (f" (it pins {pin[0]}=={pins[pin[0]]})" if pin[0] in pins else "")
                + ". Delete the waiver, or re-check the new pin and waive that one instead.")
        elif pin not in used:
            outcome.notes.append(f"waiver for {waiver.pin} was not needed this run; delete it if that lasts.")
    return outcome


def audit(lock: Path, waivers_path: Path, service: PinnedPyPIService) -> tuple[Outcome, dict[str, Version]]:
    pins = read_pins(lock)
    waivers = read_waivers(waivers_path)
    source = RequirementSource([lock], no_deps=True, disable_pip=True)
    try:
        results = list(Auditor(service).audit(source))
    except DependencySourceError as error:
        raise AuditInputError(f"{lock} is not a lock: {error}. Every line must pin one package with ==; {RELOCK}.") from error
    return judge(results, pins, waivers, lock, waivers_path), pins


def print_outcome(outcome: Outcome, pins: dict[str, Version], service: PinnedPyPIService) -> None:
    sources = sorted(set(service.audited_from.values()))
    counts = ", ".join(f"{sum(1 for s in service.audited_from.values() if s == source)} from the {source}"
                       for source in sources)
    print(f"dependency audit: {len(service.audited_from)} of {len(pins)} pins audited ({counts or 'none'}) "
          f"against {service.base_url}")
    table = ColumnsFormat(output_desc=True, output_aliases=True).format(outcome.report, [])
    if table:
        print(table)
    for waiver, what in outcome.applied:
        print(f"waiver applied: {waiver.pin} ({what}): {waiver.reason}")
    if any(what == "not audited" for _, what in outcome.applied):
        print("note: a pin waived as not audited is not known to be free of vulnerabilities: re-check "
              "it with stock `pip-audit -r <lock>` where PyPI's per-release JSON or OSV answers.")
    for note in outcome.notes:
        print(f"note: {note}")
    for failure in outcome.failures:
        print(f"FAIL: {failure}")
    if not outcome.failures:
        print(f"dependency audit: passed: no known vulnerabilities in the {len(service.audited_from)} audited "
              f"pins; {len(pins) - len(service.audited_from)} unaudited pins waived (above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path, help="a requirements file that pins every package with ==")
    parser.add_argument("--waivers", type=Path, default=DEFAULT_WAIVERS, help="TOML waivers file")
    parser.add_argument("--pypi-url", default=DEFAULT_PYPI_URL, help="base URL of PyPI's JSON API")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request")
    args = parser.parse_args(argv)
    service = PinnedPyPIService(args.pypi_url, args.timeout)
    try:
        outcome, pins = audit(args.lock, args.waivers, service)
    except AuditInputError as error:
        print(f"FAIL: {error}")
        return 1
    except ServiceError as error:
        print(f"FAIL: the audit could not ask PyPI ({error}). Nothing was audited: it needs {args.pypi_url} "
              "reachable; re-run when it is.")
        return 2
    print_outcome(outcome, pins, service)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
