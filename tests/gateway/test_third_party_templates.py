"""Templates written by someone else run under the local gateway, in both forms SAM allows.

`fixtures/thirdparty/raw_api` declares its WebSocket API with raw `AWS::ApiGatewayV2::*`
resources; `fixtures/thirdparty/sam_websocketapi` writes the same chat with
`AWS::Serverless::WebSocketApi`, which only the SAM transform understands. Each has its own
handlers, and both build their management client the way AWS's examples do
(`endpoint_url=f"https://{domainName}/{stage}"`), so a broadcast proves that the gateway's
TLS side and `AWS_CA_BUNDLE` let unchanged handler code reach `@connections`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Iterator

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from parley_local.gateway import sam_transform
from parley_local.gateway.cfn import TemplateError
from parley_local.gateway.template import load_stack
from parley_testing.gateway_thread import FIXTURES, RunningGateway

THIRD_PARTY = FIXTURES / "thirdparty"
FORMS = {
    "raw AWS::ApiGatewayV2": THIRD_PARTY / "raw_api" / "template.yaml",
    "AWS::Serverless::WebSocketApi": THIRD_PARTY / "sam_websocketapi" / "template.yaml",
}


def test_both_forms_expand_to_the_same_api() -> None:
    raw, sam = (load_stack(path, "tp", sam="required") for path in FORMS.values())
    for stack in (raw, sam):
        assert stack.source.startswith("SAM transform (aws-sam-translator ")
        api = stack.api
        assert api.stage_name == "prod"
        assert api.selection_expression == "$request.body.action"
        assert sorted(api.routes) == ["$connect", "$disconnect", "sendmessage", "whoami"]
        assert [k for k, r in api.routes.items() if r.route_response] == ["whoami"]
        auth = api.routes["$connect"].authorizer
        assert auth is not None and auth.identity_sources == ["route.request.querystring.token"]
        assert all(r.authorizer is None for k, r in api.routes.items() if k != "$connect")
        assert all(r.function in stack.functions for r in api.routes.values())
    assert sam.functions[sam.api.routes["whoami"].function or ""].handler == "chat.whoami"
    assert raw.functions[raw.api.routes["whoami"].function or ""].handler == "whoami.handler"


@pytest.fixture(scope="module", params=list(FORMS), ids=["raw", "websocketapi"])
def chat(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    template = FORMS[request.param]
    stage = load_stack(template, "tp").api.stage_name
    g = RunningGateway(template, tmp_path_factory.mktemp("tp-records"), stack_name="tp", stage=stage).start()
    yield g
    g.stop()


async def _whoami(ws: websockets.ClientConnection) -> dict[str, object]:
    await ws.send(json.dumps({"action": "whoami"}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_stage_authorizer_routes_route_response_and_broadcast(chat: RunningGateway) -> None:
    assert chat.ws_url.endswith("/prod")  # the template's stage, not the gateway's default
    with pytest.raises(InvalidStatus) as no_token:
        await websockets.connect(chat.ws_url)
    assert no_token.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as bad_token:
        await websockets.connect(chat.ws_url + "?token=nobody")
    assert bad_token.value.response.status_code == 401

    async with websockets.connect(chat.ws_url + "?token=user-alice") as alice:
        async with websockets.connect(chat.ws_url + "?token=user-bob") as bob:
            assert await _whoami(alice) == {"user": "alice", "online": 2, "stage": "prod", "route": "whoami"}
            await bob.send(json.dumps({"action": "sendmessage", "data": "hello from bob"}))
            for ws in (alice, bob):
                assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"from": "bob", "data": "hello from bob"}
        # bob has gone: his $disconnect removed him
        for _ in range(50):
            if (await _whoami(alice))["online"] == 1:
                break
            await asyncio.sleep(0.1)
        assert (await _whoami(alice))["online"] == 1
    assert "$disconnect" in chat.console.text()

    with pytest.raises(InvalidStatus) as wrong_stage:
        await websockets.connect(chat.ws_url.rsplit("/", 1)[0] + "/local?token=user-alice")
    assert wrong_stage.value.response.status_code == 403


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


async def test_a_9kb_token_gets_a_readable_414(chat: RunningGateway) -> None:
    token = "user-" + "x" * 9 * 1024
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(chat.ws_url + "?token=" + token)
    assert refused.value.response.status_code == 414
    assert "Request-URI Too Long" in json.loads(refused.value.response.body or b"{}")["message"]
    port = chat.gateway.port
    handshake = (
        f"GET /prod?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    answer = await asyncio.to_thread(_raw_exchange, port, handshake)
    assert answer.startswith(b"HTTP/1.1 414 ")
    big_header = (
        f"GET /prod?token=user-a HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Padding: {'p' * 11000}\r\n\r\n"
    ).encode()
    assert (await asyncio.to_thread(_raw_exchange, port, big_header)).startswith(b"HTTP/1.1 431 ")
    async with websockets.connect(chat.ws_url + "?token=user-carol") as carol:  # still serving
        assert (await _whoami(carol))["user"] == "carol"


def test_templates_reference_their_own_handlers() -> None:
    for path in FORMS.values():
        stack = load_stack(path, "tp", sam="required")
        for fn in stack.functions.values():
            module = fn.handler.split(".", 1)[0]
            assert (Path(fn.code_dir) / f"{module}.py").is_file(), fn


def test_the_expansion_is_cached_by_template_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sam_transform.CACHE_DIR_ENV, str(tmp_path / "cache"))
    template = tmp_path / "template.yaml"
    template.write_text(FORMS["AWS::Serverless::WebSocketApi"].read_text())
    (tmp_path / "handlers").symlink_to(FORMS["AWS::Serverless::WebSocketApi"].parent / "handlers")
    first = load_stack(template, "tp", sam="required")
    assert first.source.endswith("expanded now)")
    assert len(list((tmp_path / "cache").glob("template-*.json"))) == 1
    again = load_stack(template, "tp", sam="required")
    assert again.source.endswith("cached)")
    assert again.api.routes.keys() == first.api.routes.keys()
    template.write_text(template.read_text().replace("StageName: prod", "StageName: beta"))
    edited = load_stack(template, "tp", sam="required")
    assert edited.source.endswith("expanded now)") and edited.api.stage_name == "beta"
    assert len(list((tmp_path / "cache").glob("template-*.json"))) == 2


def test_the_cache_keeps_the_most_recently_used_expansions_of_each_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every edit is a new entry; past CACHE_KEEP the least recently used go, and other templates' stay."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(sam_transform.CACHE_DIR_ENV, str(cache))
    monkeypatch.setattr(sam_transform, "CACHE_KEEP", 2)
    source = FORMS["AWS::Serverless::WebSocketApi"]
    (tmp_path / "handlers").symlink_to(source.parent / "handlers")
    other = tmp_path / "template-other.yaml"  # its name starts like the other's: its entries are its own
    other.write_text(source.read_text())
    load_stack(other, "tp", sam="required")
    template = tmp_path / "template.yaml"

    def stage(name: str) -> str:
        template.write_text(source.read_text().replace("StageName: prod", f"StageName: {name}"))
        loaded = load_stack(template, "tp", sam="required")
        assert loaded.api.stage_name == name
        return loaded.source

    def entries() -> int:
        return sum(1 for p in cache.glob("template-*.json") if not p.name.startswith("template-other-"))

    stage("one")
    stage("two")
    assert entries() == 2
    assert stage("one").endswith("cached)")  # a hit: "one" is now the most recently used
    assert stage("three").endswith("expanded now)")
    assert entries() == 2
    assert stage("one").endswith("cached)")  # kept: "two" went
    assert stage("two").endswith("expanded now)")
    assert len(list(cache.glob("template-other-*.json"))) == 1


def test_without_a_sam_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw form still runs on the built-in reader; the SAM resource says what to install."""
    monkeypatch.setattr(sam_transform, "find_sam_python", lambda template_dir: None)
    raw = load_stack(FORMS["raw AWS::ApiGatewayV2"], "tp")
    assert raw.source.startswith("built-in reader") and "make sam-cli" in raw.source
    assert sorted(raw.api.routes) == ["$connect", "$disconnect", "sendmessage", "whoami"]
    with pytest.raises(TemplateError, match=r"AWS::Serverless::WebSocketApi needs the SAM transform.*make sam-cli"):
        load_stack(FORMS["AWS::Serverless::WebSocketApi"], "tp")
    with pytest.raises(TemplateError, match="make sam-cli"):
        load_stack(FORMS["raw AWS::ApiGatewayV2"], "tp", sam="required")


def test_a_template_the_transform_rejects_is_reported_like_sam_validate(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(FORMS["AWS::Serverless::WebSocketApi"].read_text().replace("        whoami:\n", "        who_am_i:\n"))
    with pytest.raises(TemplateError, match="who_am_i' must be alphanumeric"):
        load_stack(template, "tp")
