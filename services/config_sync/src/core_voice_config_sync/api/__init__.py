"""The admin and runtime-config HTTP API (Litestar); OpenAPI at ``/schema/openapi.json``.

Every error body is an `ErrorBody`. Status codes: 400 malformed JSON or a bad cursor,
401 no/unknown token, 403 a valid token without the needed scope (operator-only
endpoints and token scopes included), 404 unknown (or another tenant's) agent, campaign,
link, trunk, number, version or token, 409 id not available (the same body whichever
tenant holds it) / still in use / concurrent edit, 413 body over the limit, 422 a body that
parses but is invalid (the detail names every failing field), 503 database unavailable
(writes; reads fall back to the cache). A PATCH naming no field is 422 ``empty_patch``;
a PATCH whose values equal the current ones is a 200 no-op that keeps the version.

One module per resource (`agents`, `campaigns`, `trunks`, `tokens`), with `auth`,
`params` and `errors` shared by all; `app` assembles them.
"""

from core_voice_config_sync.api.app import create_app

__all__ = ["create_app"]
