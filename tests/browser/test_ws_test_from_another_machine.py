"""In headless Chromium: /ws-test opened from another machine, with `parley dev`'s dev tokens for this machine only
(the default) and with `--dev-tokens-for-other-machines`.

The gateway is the real one in a thread (`parley_testing.another_machine`); the browser says it is another
machine by sending the peer header on every request, so the page's own `fetch('/dev/token')` is what is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from parley_local.parley_extras import TOKENS_THIS_MACHINE_ONLY
from parley_local.tokens import make_token
from parley_testing.another_machine import ANOTHER_MACHINE, PEER_HEADER, lan_gateway
from parley_testing.gateway_thread import SMALL_TEMPLATE, RunningGateway
from parley_testing.moto_process import MotoServer
from parley_testing.template import ROOT


@pytest.fixture(params=[False, True], ids=["tokens-this-machine-only", "tokens-for-other-machines"])
def lan_gw(request: pytest.FixtureRequest, moto: MotoServer, tmp_path: Path) -> Iterator[RunningGateway]:
    gw = lan_gateway(SMALL_TEMPLATE, tmp_path, client_dir=ROOT / "client", stack_name="lanpage", prewarm=False,
                     dynamodb_endpoint=moto.endpoint, tokens_for_other_machines=request.param).start()
    yield gw
    gw.stop()


def _page_on_another_machine(browser: Any, gw: RunningGateway, user: str) -> Any:
    context = browser.new_context(extra_http_headers={PEER_HEADER: ANOTHER_MACHINE})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(f"{gw.http_url}/ws-test?user={user}&autoconnect=1")
    return page


def test_the_page_on_another_machine_connects_with_the_opt_in_and_otherwise_shows_what_to_do(browser: Any, lan_gw: RunningGateway):
    page = _page_on_another_machine(browser, lan_gw, "dave")
    try:
        if lan_gw.gateway.extras.tokens_for_other_machines:  # type: ignore[union-attr]
            page.wait_for_selector("#state[data-state=open]")
            assert page.locator("#whoami").inner_text() == "dave"  # the sub of the token /dev/token gave it
        else:
            page.locator("#conn-error", has_text="HTTP 403").wait_for()
            assert page.locator("#conn-error").inner_text() == f"/dev/token answered HTTP 403: {TOKENS_THIS_MACHINE_ONLY}"
            assert page.locator("#state").get_attribute("data-state") == "idle"
            page.fill("#token", make_token("dave", "Dave"))  # what the message says: a token from `parley token` here
            page.click("#connect")
            page.wait_for_selector("#state[data-state=open]")
            assert page.locator("#conn-error").inner_text() == ""
        assert page.errors == []
    finally:
        page.context.close()
