"""The route table `parley dev` prints: a route it cannot run as AWS would says so, and what happens instead."""

from __future__ import annotations

from pathlib import Path

from parley_local.gateway.banner import routes_table
from parley_local.gateway.template import load_stack

FIXTURES = Path(__file__).parent / "fixtures"

LAMBDA_URI = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{}/invocations"
INTEGRATIONS = {  # logical id -> properties (besides ApiId), in YAML's flow style
    "MockInteg": """IntegrationType: MOCK, RequestTemplates: {"$default": '{"statusCode": 200}'}, TemplateSelectionExpression: '\\$default'""",
    "HttpInteg": "IntegrationType: HTTP_PROXY, IntegrationMethod: POST, IntegrationUri: 'https://example.com/chat'",
    "MappedInteg": f"IntegrationType: AWS, IntegrationMethod: POST, IntegrationUri: !Sub '{LAMBDA_URI.format('${EchoFunction.Arn}')}'",
    "ElsewhereInteg": f"IntegrationType: AWS_PROXY, IntegrationUri: '{LAMBDA_URI.format('arn:aws:lambda:us-east-1:123456789012:function:elsewhere')}'",
}
ROUTES = {  # route key -> its Target (None: no Target at all)
    "$connect": "!Sub 'integrations/${MockInteg}'",
    "mocked": "!Sub 'integrations/${MockInteg}'",
    "proxied": "!Sub 'integrations/${HttpInteg}'",
    "mapped": "!Sub 'integrations/${MappedInteg}'",
    "orphan": None,
    "elsewhere": "!Sub 'integrations/${ElsewhereInteg}'",
    "dangling": "'integrations/abc1234'",
}
EXTRA_ROUTES = "\n".join(
    [f"  {lid}: {{Type: AWS::ApiGatewayV2::Integration, Properties: {{ApiId: !Ref SmallApi, {props}}}}}" for lid, props in INTEGRATIONS.items()]
    + [f"  Route{i}: {{Type: AWS::ApiGatewayV2::Route, Properties: {{ApiId: !Ref SmallApi, RouteKey: '{key}'"
       + (f", Target: {target}" if target else "") + "}}" for i, (key, target) in enumerate(ROUTES.items())]
) + "\n"


def test_an_authorized_connect_without_a_function_still_asks_the_authorizer() -> None:
    api = load_stack(FIXTURES / "template.yaml", "rt").api
    connect = api.routes["$connect"]
    connect.function, connect.integration_type = None, "MOCK"
    line = next(line for line in routes_table(api) if line.strip().startswith("$connect "))
    assert "connections are accepted once the authorizer allows them" in line and "authorizer AuthFunction" in line


def test_routes_parley_dev_does_not_run_as_aws_does_say_what_happens_instead(tmp_path: Path) -> None:
    text = (FIXTURES / "template_small.yaml").read_text()
    text = text.replace("CodeUri: functions/", f"CodeUri: {FIXTURES / 'functions'}/")
    text = text.replace("ContentUri: layer/", f"ContentUri: {FIXTURES / 'layer'}/")
    template = tmp_path / "template.yaml"
    template.write_text(text.rstrip("\n") + "\n" + EXTRA_ROUTES)
    api = load_stack(template, "rt").api
    lines = {line.split("->")[0].strip(): line.split("->", 1)[1].strip() for line in routes_table(api)}

    assert lines["echo"] == "EchoFunction  [route response]"  # a Lambda proxy route: just its function
    assert lines["$disconnect"] == "DisconnectFunction"
    assert lines["$connect"] == "(MOCK integration, not run locally: connections are accepted without a call)"
    assert lines["mocked"] == "(MOCK integration, not run locally: its frames get no answer)"
    assert lines["proxied"] == "(HTTP_PROXY integration, not run locally: its frames get no answer)"
    assert lines["orphan"] == "(no integration, not run locally: its frames get no answer)"
    assert lines["elsewhere"] == "(AWS_PROXY integration with a function not in this template, not run locally: its frames get no answer)"
    assert lines["dangling"] == "(its integration is not in this template, not run locally: its frames get no answer)"
    assert lines["mapped"].startswith("EchoFunction (AWS integration, run as AWS_PROXY: the function gets the proxy event")
    assert api.routes["mapped"].function == "EchoFunction" and api.routes["proxied"].function is None
