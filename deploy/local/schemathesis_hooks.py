"""schemathesis hooks for deploy/local/schemathesis.sh.

The generated Idempotency-Keys repeat (a few values across many requests),
and a key used again with another body is refused with 400, so almost no
order or payment would be created and their answers never checked. A
well-formed key gets a unique suffix; a malformed one is sent as generated,
to exercise its 400. (Replays under one key have their own API tests.)
"""

import re
import uuid

import schemathesis

WELL_FORMED = re.compile(r"^[!-~]{1,200}$")


@schemathesis.hook
def before_call(context, case, kwargs):
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and WELL_FORMED.match(key):
        case.headers["Idempotency-Key"] = f"{key}-{uuid.uuid4().hex}"
