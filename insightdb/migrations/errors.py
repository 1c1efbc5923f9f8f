"""One line about a failed revision, without the values of any document.

The log stores this line and the CLI prints it, so it must not carry data: a driver's
duplicate-key error names the key's value (``dup key: { email: "ada@x.io" }``, its
``keyValue``), a bulk write error embeds the operations it failed (whole documents),
Pydantic's validation errors repeat the input, and user code sometimes formats a
document into its message. :func:`describe_error` keeps the exception type, the server's
error code and name, and the text outside any ``{...}`` or ``[...]`` literal, cutting
the known value-bearing tails; credentials are masked and the line is bounded.
"""

from __future__ import annotations

import re

from pydantic import ValidationError
from pymongo.errors import BulkWriteError, OperationFailure

from insightdb._redact import mask_text
from insightdb.exceptions import InsightDBError

__all__ = ["MAX_LENGTH", "describe_error", "strip_values"]

MAX_LENGTH = 500
_VALUE_TAILS = re.compile(r"\s*(?:dup key|keyValue|input_value|full error|document|doc)\s*[:=].*$")
_OPEN, _CLOSE = "{[(", "}])"


def strip_values(text: str) -> str:
    """Return ``text`` on one line, with ``{...}`` and ``[...]`` literals cut to ``{…}``.

    Linear in the length of ``text``; unbalanced brackets cut to the end.
    """
    out: list[str] = []
    depth = 0
    opener = ""
    for char in " ".join(text.split()):
        if depth == 0:
            if char in "{[":
                depth, opener = 1, char
                out.append(char + "…")
            else:
                out.append(char)
            continue
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth == 0:
                out.append("}" if opener == "{" else "]")
    if depth:
        out.append("}" if opener == "{" else "]")
    return "".join(out)


def _server_message(exc: OperationFailure) -> str:
    details = exc.details or {}
    message = str(details.get("errmsg") or "") if isinstance(details, dict) else ""
    return _VALUE_TAILS.sub("", message or str(exc).split(", full error:")[0])


def describe_error(exc: BaseException) -> str:
    """Describe ``exc`` in one line that names no document value.

    Args:
        exc: What a revision raised.

    Returns:
        ``Type: message`` (with ``(code N Name)`` for server errors), at most
        :data:`MAX_LENGTH` characters.
    """
    name = type(exc).__name__
    if isinstance(exc, InsightDBError):
        text = exc.message
        name = ""
    elif isinstance(exc, BulkWriteError):
        errors = (exc.details or {}).get("writeErrors") or []
        first = errors[0] if errors else {}
        message = _VALUE_TAILS.sub("", str(first.get("errmsg") or ""))
        code = f" (code {first['code']})" if "code" in first else ""
        text = f"{len(errors)} write error(s); first: {message}{code}"
    elif isinstance(exc, OperationFailure):
        code_name = (exc.details or {}).get("codeName") if isinstance(exc.details, dict) else None
        code = f" (code {exc.code}{f' {code_name}' if code_name else ''})" if exc.code else ""
        text = _server_message(exc) + code
    elif isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        text = f"{exc.error_count()} validation error(s) for {exc.title}: " + "; ".join(problems)
    else:
        text = _VALUE_TAILS.sub("", str(exc))
    line = strip_values(mask_text(text)).strip()
    line = f"{name}: {line}" if name and line else (line or name)
    return line if len(line) <= MAX_LENGTH else line[: MAX_LENGTH - 1] + "…"
