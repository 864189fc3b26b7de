"""The route table `parley dev` prints: a route it cannot run as AWS would says so, and what happens instead."""

from __future__ import annotations

from pathlib import Path

from parley_local.gateway.banner import routes_table
from parley_local.gateway.template import load_stack

FIXTURES = Path(__file__).parent / "fixtures"

EXTRA_ROUTES = """
  MockInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref SmallApi
      IntegrationType: MOCK
      RequestTemplates: {"$default": '{"statusCode": 200}'}
      TemplateSelectionExpression: \\$default
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref SmallApi
      RouteKey: $connect
      Target: !Sub integrations/${MockInteg}
  MockedRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref SmallApi
      RouteKey: mocked
      Target: !Sub integrations/${MockInteg}
  HttpInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref SmallApi
      IntegrationType: HTTP_PROXY
      IntegrationMethod: POST
      IntegrationUri: https://example.com/chat
  HttpRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref SmallApi
      RouteKey: proxied
      Target: !Sub integrations/${HttpInteg}
  MappedInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref SmallApi
      IntegrationType: AWS
      IntegrationMethod: POST
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${EchoFunction.Arn}/invocations
  MappedRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref SmallApi
      RouteKey: mapped
      Target: !Sub integrations/${MappedInteg}
  OrphanRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref SmallApi
      RouteKey: orphan
  ElsewhereInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref SmallApi
      IntegrationType: AWS_PROXY
      IntegrationUri: arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:elsewhere/invocations
  ElsewhereRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref SmallApi
      RouteKey: elsewhere
      Target: !Sub integrations/${ElsewhereInteg}
  DanglingRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref SmallApi
      RouteKey: dangling
      Target: integrations/abc1234
"""


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
