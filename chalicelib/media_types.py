"""Binary media types: one list for the running app, another for the API Gateway definition.

API Gateway (REST API, Lambda proxy) turns a base64 response body (`isBase64Encoded`)
into bytes only when the FIRST media type of the request's Accept header matches one
of the API's binary media types; otherwise the client gets the base64 text. Angular
downloads a blob with `Accept: application/json, text/plain, */*`, so the report ZIP
reaches it as bytes only if the API lists `*/*`.

Chalice's runtime reads `app.api.binary_types` another way: it base64-encodes every
response whose Content-Type matches the list, and answers 400 to a binary response
unless SOME type of the Accept header matches. With `*/*` there, every JSON answer
would be base64 and every request without an Accept header refused. Hence:

- RUNTIME_BINARY_TYPES, Chalice's defaults (`application/zip` among them): what the
  app encodes. The ZIP is base64, JSON never is. Lambda, `chalice local`, tests.
- GATEWAY_BINARY_TYPES, the same plus `*/*`: what `chalice package` (CloudFormation and
  Terraform) and `chalice deploy` write into the API definition. A base64 ZIP is then
  decoded for any Accept header; a JSON answer is not base64 and passes through as it
  is; request bodies arrive base64-encoded (`isBase64Encoded: true`), which Chalice's
  `Request.raw_body`/`json_body` decode.

tests/test_binary_media.py applies API Gateway's rule with the lists read from the
packaged templates.
"""

from __future__ import annotations

import os

from chalice.app import APIGateway

RUNTIME_BINARY_TYPES: tuple[str, ...] = tuple(APIGateway().default_binary_types)
GATEWAY_BINARY_TYPES: tuple[str, ...] = (*RUNTIME_BINARY_TYPES, "*/*")

# The Chalice CLI commands that write the API definition from `app.api.binary_types`.
# `chalice local` (also a CLI command) serves requests with the list: it keeps the runtime one.
_DEFINITION_COMMANDS = frozenset({"package", "deploy"})


def app_binary_types() -> list[str]:
    """The list for `app.api.binary_types` in this process."""
    return list(GATEWAY_BINARY_TYPES if _writing_api_definition() else RUNTIME_BINARY_TYPES)


def _writing_api_definition() -> bool:
    if os.environ.get("AWS_CHALICE_CLI_MODE") != "true":  # set by the Chalice CLI only
        return False
    import click  # the Chalice CLI's framework; not in the Lambda package

    # `chalice package`/`deploy` import app.py inside their command; `chalice local`
    # inside its own (or, autoreloading, in a server thread with no command at all).
    context = click.get_current_context(silent=True)
    return context is not None and context.command.name in _DEFINITION_COMMANDS
