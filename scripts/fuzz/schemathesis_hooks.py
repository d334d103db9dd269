"""Schemathesis hooks: strategies for the formats our schema documents but JSON Schema can't spell.

Loaded by `scripts/fuzz/run.py` through SCHEMATHESIS_HOOKS.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

# What the schema's patterns say (idempotency.KEY_PATTERN, dependencies.ETAG_LIST); this venv
# cannot import the app, and a drift shows up as failures of these very cases.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_ETAG = r'(W/)?"[\x21\x23-\x7e]*"'
_ETAGS = re.compile(rf"[ \t]*(\*|{_ETAG}([ \t]*,[ \t]*{_ETAG})*)[ \t]*")
_ETAGC = re.compile(r"[\x21\x23-\x7e]*")

# `format: password`: 8-100 characters, no NUL (argon2id hashes every byte).
schemathesis.openapi.format(
    "password",
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=8, max_size=100),
)


def _file(signature: bytes) -> st.SearchStrategy[bytes]:
    """A file that starts like the real format (what the upload's content check looks at)."""
    return st.binary(max_size=256).map(lambda tail: signature + tail)


# Uploads: valid files of the types the API accepts. Schemathesis names each part after the
# format its bytes carry (file.png, file.pdf...), so name and content agree as the API demands.
for media_type, signature in {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff\xe0",
    "image/gif": b"GIF89a",
    "application/pdf": b"%PDF-1.7\n",
}.items():
    schemathesis.openapi.media_type(media_type, _file(signature))


def map_case(context: Any, case: Any) -> Any:
    """Two state-dependent headers, made to mean what each generated case means.

    - A valid Idempotency-Key gets a fresh suffix: hypothesis draws the same short keys again and
      again, and a key reused with another body is rightly a 422 (tested in
      tests/test_idempotency.py), which is not what a schema-valid case is about.
    - A "positive" If-Match / If-None-Match that is no entity tag is quoted (or dropped): the
      coverage phase draws header values from [A-Za-z0-9] only, so it cannot spell `"3"` and
      sends `0` as if it were valid; the API rightly answers 422.
    """
    headers = case.headers
    if not headers:
        return case
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and _KEY.fullmatch(key):
        headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"
    positive = case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE
    for name in ("If-Match", "If-None-Match"):
        value = headers.get(name)
        if not positive or not isinstance(value, str) or _ETAGS.fullmatch(value):
            continue
        if _ETAGC.fullmatch(value):
            headers[name] = f'"{value}"'
        else:
            del headers[name]
    return case


schemathesis.hook(map_case)  # registered by its name (a call: the decorator is untyped here)
