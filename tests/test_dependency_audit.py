"""security/audit_dependencies.py against a fake PyPI JSON API on 127.0.0.1, and the real layer lock.

The fake answers only what a test registers and 404 for the rest, like this network answers
/pypi/<name>/<version>/json. The auditor runs for real: pip-audit's requirement source, Auditor,
PyPIService mapping and columns output, with only the base URL pointed at the fake.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "security" / "audit_dependencies.py"
LOCKER = ROOT / "security" / "lock_layer.py"
LOCK = ROOT / "layers" / "common" / "python" / "requirements.txt"
REQUIREMENTS_IN = ROOT / "security" / "layer-requirements.in"
WAIVERS = ROOT / "security" / "audit-waivers.toml"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


auditor = _load("audit_dependencies", SCRIPT)
locker = _load("lock_layer", LOCKER)


class FakePyPI:
    """PyPI's JSON API, reduced to the documents a test registers."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.statuses: dict[str, int] = {}  # path -> an error status to answer instead
        self.requests: list[str] = []
        documents, statuses, requests = self.documents, self.statuses, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                document = documents.get(self.path)
                body = json.dumps(document if document is not None else {"message": "Not Found"}).encode()
                self.send_response(statuses.get(self.path, 200 if document is not None else 404))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def release(self, name: str, version: str, *vulnerabilities: dict[str, Any]) -> None:
        """Serve /pypi/<name>/<version>/json, the document stock pip-audit reads."""
        self.documents[f"/pypi/{name}/{version}/json"] = {
            "info": {"name": name, "version": version}, "vulnerabilities": list(vulnerabilities)}

    def project(self, name: str, newest: str, *vulnerabilities: dict[str, Any]) -> None:
        """Serve /pypi/<name>/json, whose vulnerabilities describe `newest` only."""
        self.documents[f"/pypi/{name}/json"] = {
            "info": {"name": name, "version": newest}, "vulnerabilities": list(vulnerabilities)}


def advisory(identifier: str, *aliases: str, fixed_in: tuple[str, ...] = ("9.0",),
             withdrawn: str | None = None) -> dict[str, Any]:
    """One entry of a PyPI JSON document's `vulnerabilities`, shaped like PyPI's."""
    return {"id": identifier, "aliases": list(aliases), "fixed_in": list(fixed_in),
            "summary": f"summary of {identifier}", "details": "details",
            "source": "osv",
            "withdrawn": withdrawn}


@pytest.fixture
def pypi() -> Iterator[FakePyPI]:
    fake = FakePyPI()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def run(tmp_path, pypi, capsys):
    """Audit `lock` (text) with `waivers` (TOML text) against the fake; return (exit code, output)."""

    def run(lock: str, waivers: str = "") -> tuple[int, str]:
        lock_path, waivers_path = tmp_path / "requirements.txt", tmp_path / "waivers.toml"
        lock_path.write_text(lock)
        waivers_path.write_text(waivers)
        code = auditor.main([str(lock_path), "--waivers", str(waivers_path), "--pypi-url", pypi.url,
                             "--timeout", "5"])
        return code, capsys.readouterr().out

    return run


def waiver(pin: str, reason: str = "held by a test", ids: tuple[str, ...] = ()) -> str:
    text = f'[[waiver]]\npin = "{pin}"\nreason = "{reason}"\n'
    return text + (f"ids = {json.dumps(list(ids))}\n" if ids else "")


# ------------------------------------------------------------------ the audit's verdicts

def test_a_clean_lock_passes(run, pypi):
    pypi.release("alpha", "1.0")
    pypi.release("beta", "2.0")
    code, out = run("alpha==1.0\n    # via a test\nBeta==2.0\n")
    assert code == 0, out
    assert "2 of 2 pins audited (2 from the per-release JSON)" in out
    assert "/pypi/alpha/1.0/json" in pypi.requests and "/pypi/beta/2.0/json" in pypi.requests


def test_a_vulnerable_pin_fails_and_names_the_advisory(run, pypi):
    pypi.release("alpha", "1.0", advisory("GHSA-aaaa-bbbb-cccc", "PYSEC-2024-7", "CVE-2024-1", fixed_in=("1.2", "1.1")))
    code, out = run("alpha==1.0\n")
    assert code == 1, out
    row = next(line for line in out.splitlines() if line.startswith("alpha"))
    # pip-audit's own mapping and columns: PYSEC first, the rest as aliases, fix versions sorted
    assert row.split()[:4] == ["alpha", "1.0", "PYSEC-2024-7", "1.1,1.2"], row
    assert "GHSA-aaaa-bbbb-cccc" in row and "CVE-2024-1" in row and "summary of GHSA-aaaa-bbbb-cccc" in row
    assert "FAIL: 1 known vulnerability" in out


def test_withdrawn_advisories_are_ignored(run, pypi):
    pypi.release("alpha", "1.0", advisory("PYSEC-2023-9", withdrawn="2023-05-01T00:00:00Z"))
    code, out = run("alpha==1.0\n")
    assert code == 0, out
    assert "PYSEC-2023-9" not in out


def test_without_release_json_the_project_json_audits_its_newest_release(run, pypi):
    pypi.project("alpha", "1.0", advisory("GHSA-pppp-qqqq-rrrr"))
    pypi.project("beta", "2.0.0")
    code, out = run("alpha==1.0\nbeta==2.0\n")  # 2.0 and 2.0.0 are one version
    assert code == 1, out
    assert "2 of 2 pins audited (2 from the project JSON of the newest release)" in out
    assert "GHSA-pppp-qqqq-rrrr" in out
    assert pypi.requests == ["/pypi/alpha/1.0/json", "/pypi/alpha/json", "/pypi/beta/2.0/json", "/pypi/beta/json"]


def test_a_pin_older_than_the_project_json_is_not_audited(run, pypi):
    pypi.project("alpha", "2.0", advisory("GHSA-only-for-two"))
    code, out = run("alpha==1.0\n")
    assert code == 1, out
    assert "0 of 1 pins audited" in out
    assert "describes 2.0 (its newest release), not 1.0" in out
    assert "GHSA-only-for-two" not in out  # the newest release's advisories say nothing about 1.0
    assert "FAIL: 1 pin(s) could not be audited" in out


def test_a_pin_missing_from_pypi_is_not_audited(run, pypi):
    code, out = run("alpha==1.0\n")
    assert code == 1, out
    assert "alpha is not on PyPI" in out and "could not be audited" in out


def test_a_waiver_lets_an_unaudited_pin_pass_and_is_printed(run, pypi):
    pypi.project("alpha", "2.0")
    pypi.release("beta", "1.0")
    code, out = run("alpha==1.0\nbeta==1.0\n", waiver("alpha==1.0", "capped by gamma"))
    assert code == 0, out
    assert "waiver applied: alpha==1.0 (not audited): capped by gamma" in out
    assert "not known to be free of vulnerabilities" in out


def test_a_not_audited_waiver_does_not_hide_a_vulnerability(run, pypi):
    pypi.release("alpha", "1.0", advisory("PYSEC-2024-1"))
    code, out = run("alpha==1.0\n", waiver("alpha==1.0"))
    assert code == 1, out
    assert "PYSEC-2024-1" in out


def test_a_waiver_of_advisories_does_not_excuse_an_unaudited_pin(run, pypi):
    pypi.project("alpha", "2.0")
    code, out = run("alpha==1.0\n", waiver("alpha==1.0", ids=("PYSEC-2024-1",)))
    assert code == 1, out
    assert "could not be audited" in out and "waiver applied" not in out


def test_a_waiver_with_ids_accepts_exactly_those_advisories(run, pypi):
    pypi.release("alpha", "1.0", advisory("PYSEC-2024-1", "GHSA-1111-2222-3333"), advisory("PYSEC-2024-2"))
    code, out = run("alpha==1.0\n", waiver("alpha==1.0", "not reachable from Parley", ids=("GHSA-1111-2222-3333",)))
    assert code == 1, out
    assert "waiver applied: alpha==1.0 (accepts PYSEC-2024-1): not reachable from Parley" in out
    assert "PYSEC-2024-2" in out and "FAIL: 1 known vulnerability" in out

    code, out = run("alpha==1.0\n", waiver("alpha==1.0", "neither applies", ids=("PYSEC-2024-1", "PYSEC-2024-2")))
    assert code == 0, out


def test_a_stale_waiver_fails(run, pypi):
    pypi.release("alpha", "1.1")
    code, out = run("alpha==1.1\n", waiver("alpha==1.0"))
    assert code == 1, out
    assert "stale waiver" in out and "alpha==1.0 is not in" in out and "(it pins alpha==1.1)" in out

    code, out = run("alpha==1.1\n", waiver("gone==3.0"))
    assert code == 1, out
    assert "gone==3.0 is not in" in out


def test_a_waiver_needs_a_reason(run, pypi):
    pypi.release("alpha", "1.0")
    code, out = run("alpha==1.0\n", waiver("alpha==1.0", reason=" "))
    assert code == 1, out
    assert "`reason` is mandatory" in out


def test_a_misspelt_waiver_key_fails(run, pypi):
    pypi.release("alpha", "1.0")
    code, out = run("alpha==1.0\n", '[[waivers]]\npin = "alpha==1.0"\nreason = "x"\n')
    assert code == 1, out
    assert "unknown top-level key" in out


@pytest.mark.parametrize("lock, message", [
    ("alpha>=1.0\n", "not pinned to an exact version"),
    ("alpha\n", "is not pinned"),
    ("alpha==1.0\nalpha==1.0\n", "lists alpha a second time"),
    ("alpha==1.0 ; python_version < '3'\n", "environment marker"),
])
def test_a_lock_that_is_not_fully_pinned_fails(run, pypi, lock, message):
    pypi.release("alpha", "1.0")
    code, out = run(lock)
    assert code == 1, out
    assert message in out and "make lock-layer" in out


def test_an_unreachable_pypi_fails_without_auditing(tmp_path, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lock, waivers = tmp_path / "requirements.txt", tmp_path / "waivers.toml"
    lock.write_text("alpha==1.0\n")
    waivers.write_text("")
    code = auditor.main([str(lock), "--waivers", str(waivers), "--pypi-url", f"http://127.0.0.1:{port}", "--timeout", "2"])
    out = capsys.readouterr().out
    assert code == 2, out
    assert "could not ask PyPI" in out and "Nothing was audited" in out


def test_an_error_answer_fails_without_auditing(run, pypi):
    pypi.release("alpha", "1.0")
    pypi.statuses["/pypi/beta/1.0/json"] = 403
    code, out = run("alpha==1.0\nbeta==1.0\n")
    assert code == 2, out
    assert "answered HTTP 403" in out and "Nothing was audited" in out


def test_the_command_line_make_security_runs(tmp_path, pypi):
    pypi.release("alpha", "1.0", advisory("PYSEC-2024-3"))
    lock, waivers = tmp_path / "requirements.txt", tmp_path / "waivers.toml"
    lock.write_text("alpha==1.0\n")
    waivers.write_text("")
    result = subprocess.run([sys.executable, str(SCRIPT), str(lock), "--waivers", str(waivers), "--pypi-url", pypi.url],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PYSEC-2024-3" in result.stdout


# ------------------------------------------------------------------ the real lock

def _lock_requirements() -> list[Requirement]:
    lines = [line.strip() for line in LOCK.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def test_the_layer_lock_pins_every_package_once():
    requirements = _lock_requirements()
    names = [canonicalize_name(r.name) for r in requirements]
    assert len(names) == len(set(names)), f"duplicates: {sorted(n for n in names if names.count(n) > 1)}"
    for requirement in requirements:
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not pinned with ==: {requirement}"
        assert requirement.marker is None and requirement.url is None, str(requirement)
    assert {"aws-lambda-powertools", "pynamodb", "pyjwt", "boto3", "botocore"} <= set(names)


def test_the_layer_lock_satisfies_its_source():
    """security/layer-requirements.in changed without `make lock-layer` shows up here."""
    pins = {canonicalize_name(r.name): r for r in _lock_requirements()}
    for line in REQUIREMENTS_IN.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        wanted = Requirement(line)
        pinned = pins.get(canonicalize_name(wanted.name))
        assert pinned is not None, f"{wanted.name} is in {REQUIREMENTS_IN.name} but not in the lock: run `make lock-layer`"
        version = next(iter(pinned.specifier)).version
        assert wanted.specifier.contains(version, prereleases=True), f"{pinned} does not satisfy {wanted}: run `make lock-layer`"
        assert wanted.extras <= pinned.extras, f"{pinned} lacks the extras of {wanted}: run `make lock-layer`"


def test_the_layer_lock_is_closed():
    """Every dependency of a pinned package is pinned too, so nothing in the layer floats.

    Read from the packages `make setup` installed from the lock into this venv.
    """
    pins = {canonicalize_name(r.name): r for r in _lock_requirements()}
    for name, requirement in pins.items():
        installed = metadata.version(name)
        assert installed == next(iter(requirement.specifier)).version, f"{name} {installed} installed: run `make setup`"
        for extra in ["", *requirement.extras]:
            for line in metadata.requires(name) or []:
                dependency = Requirement(line)
                if dependency.marker is None or dependency.marker.evaluate({"extra": extra, "platform_machine": "aarch64"}):
                    assert canonicalize_name(dependency.name) in pins, f"{name} needs {dependency}, which the lock does not pin"


def test_every_real_waiver_names_a_pin_of_the_lock():
    pins = {(canonicalize_name(r.name), next(iter(r.specifier)).version) for r in _lock_requirements()}
    waivers = auditor.read_waivers(WAIVERS)
    assert waivers, "expected the python-dateutil waiver"
    for waiver in waivers.values():
        assert (waiver.name, str(waiver.version)) in pins, f"stale waiver {waiver.pin}"


# ------------------------------------------------------------------ writing the lock

def _report_item(name: str, version: str, *requires: str, requested: bool = False,
                 extras: tuple[str, ...] = ()) -> dict[str, Any]:
    """One `install` entry of `pip install --dry-run --report`."""
    item: dict[str, Any] = {"metadata": {"name": name, "version": version, "requires_dist": list(requires)},
                            "requested": requested}
    return item | ({"requested_extras": list(extras)} if extras else {})


HOST = {"platform_machine": "x86_64", "python_version": "3.13", "platform_python_implementation": "CPython",
        "sys_platform": "linux", "platform_system": "Linux"}


def test_the_lock_pins_every_resolved_package_and_says_what_pulled_it_in():
    items = [_report_item("Top_Pkg", "1.0", "dep>=1", "opt; extra == 'x'", "win; sys_platform == 'win32'",
                          requested=True, extras=("x",)),
             _report_item("dep", "2.0", "leaf"), _report_item("opt", "3.0"), _report_item("leaf", "4.0")]
    lines = locker.render(items, HOST).splitlines()
    pins = [line for line in lines if line and not line.startswith(("#", " "))]
    assert pins == ["dep==2.0", "leaf==4.0", "opt==3.0", "top-pkg[x]==1.0"]
    assert lines[lines.index("opt==3.0") + 1] == "    # via top-pkg"
    assert lines[lines.index("top-pkg[x]==1.0") + 1] == "    # via security/layer-requirements.in"


def test_a_closure_that_depends_on_the_build_machine_is_refused():
    arch_specific = [_report_item("top", "1.0", "x86only; platform_machine == 'x86_64'", requested=True)]
    with pytest.raises(locker.LockError, match="arm64 Linux machine"):
        locker.check_markers_match_target(arch_specific, HOST)
    locker.check_markers_match_target([_report_item("top", "1.0", "dep; python_version >= '3.8'")], HOST)
