"""Run aws-sam-translator on one template: JSON `{"template", "parameters"}` on stdin, JSON out.

Why a script of its own: it runs under the SAM CLI's interpreter (`.venv-sam`), whose
pinned boto3/pydantic must not meet the gateway's, so it imports nothing from Parley
and only the standard library plus `samtranslator`. `sam_transform.py` starts it with
`python -I` (no script directory or user site on sys.path).

Output: `{"template": <CloudFormation>, "version": "<samtranslator version>"}`, exit 0; or
`{"errors": ["..."]}` on stdout, exit 2, when the transform rejects the template (the
same messages `sam validate` prints).
"""

import json
import sys


def main() -> int:
    request = json.load(sys.stdin)
    import samtranslator
    from samtranslator.model.exceptions import InvalidDocumentException, InvalidResourceException, InvalidTemplateException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    try:
        # AWS managed policy names resolve from the map bundled with the translator; an unknown
        # name is kept as it is rather than looked up in IAM (no credentials, no network).
        template = Translator(None, Parser()).translate(
            request["template"],
            parameter_values=request.get("parameters") or {},
            get_managed_policy_map=lambda: {},
            passthrough_metadata=True,
        )
    except InvalidDocumentException as exc:
        json.dump({"errors": [str(cause.message) for cause in exc.causes]}, sys.stdout)
        return 2
    except (InvalidResourceException, InvalidTemplateException) as exc:
        json.dump({"errors": [str(exc.message)]}, sys.stdout)
        return 2
    json.dump({"template": template, "version": samtranslator.__version__}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
