"""Credentials never reach a message, a log or a command line: ``postgresql://u:***@host/db``.

A storage URL may carry a password (``postgresql+psycopg://user:secret@host/db``, or ``?password=`` in its
query). Every error line, note and console line automel prints passes :func:`redact` (the CLI's consoles do
it for every string they print), and the library's own messages that quote a URL redact it where they are
made, so a library user sees no password either.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

MASK = "***"
# scheme://user:password@ : the password runs to the last '@' of the word (it may hold '/', ':' or an
# unencoded '@'); masking a little of the host too is better than showing part of a password.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):(?P<secret>\S*)@")
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd|pass|secret|token|sslpassword)=)(?P<secret>[^&;#\s'\"]*)",
                    re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URL password (``user:PASSWORD@``, ``?password=PASSWORD``) replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["secret"] else m.group(), text)
    return _QUERY.sub(lambda m: f"{m['head']}{MASK}" if m["secret"] else m.group(), text)
