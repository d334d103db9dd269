"""Schemathesis hooks: strategies for the formats our schema documents but JSON Schema can't spell.

Loaded by `scripts/fuzz/run.py` through SCHEMATHESIS_HOOKS.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

MAX_BCRYPT_BYTES = 72

# `format: password`: 8-100 characters, at most 72 bytes in UTF-8 (what bcrypt can hash), no NUL.
schemathesis.openapi.format(
    "password",
    st.text(
        st.characters(codec="utf-8", exclude_characters="\x00"), min_size=8, max_size=100
    ).filter(lambda s: len(s.encode()) <= MAX_BCRYPT_BYTES),
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
