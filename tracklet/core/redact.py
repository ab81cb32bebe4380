"""Keeping credentials out of what a run records: command lines, git remotes, URLs.

A run's record log is synced to a server and shown to every reader of its project, so nothing
recorded about *how* a run was started may carry a secret the user typed or configured:

- a URL's userinfo is dropped (``https://alice:ghp_...@github.com/a/b.git`` becomes
  ``https://github.com/a/b.git``; an scp-like ``git@github.com:a/b.git`` has no secret and stays);
- values of well-known token shapes are replaced (GitHub ``ghp_``/``github_pat_``, GitLab
  ``glpat-``, OpenAI/Anthropic ``sk-``, Hugging Face ``hf_``, Slack ``xox?-``, AWS ``AKIA``/``ASIA``
  key ids, Google ``AIza``, npm, PyPI, tracklet's own ``tlk_`` keys, JWTs, ``Bearer`` values);
- the value of an option or assignment named like a secret (``--password X``, ``--token=X``,
  ``api_key=X``, ``HF_TOKEN=X``, ``?access_token=X``): always for names ending in password,
  secret, credential(s), api/access/private/secret key; for names ending in ``token``, ``key`` or
  ``auth`` only when the value looks random (``--bos_token '<s>'`` and ``--monitor_key
  val/loss`` stay readable).

:func:`redact_text` is the one function for a recorded string; :func:`redact_command` applies
it to each argument of a command line and also catches a secret given as the argument after its
option (``--api-key X``). Code diffs (``files/diff.patch``) are recorded as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"


class _Pattern:
    """A regular expression compiled on first use. ``init()`` redacts the command line on the
    caller's thread (the start record is written before it returns), and a command with nothing
    secret-looking in it needs none of the big patterns: compiling them all at import cost a cold
    ``init()`` ~12M instructions (~3 ms)."""

    __slots__ = ("_source", "_compiled")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:  # sub, search, findall, fullmatch
        if self._compiled is None:
            self._compiled = re.compile(self._source)
        return getattr(self._compiled, name)


def _lazy(source: str) -> Any:
    return _Pattern(source)

# scheme://userinfo@host: the userinfo runs to the last "@" before the authority ends.
_URL_USERINFO = _lazy(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")

_TOKEN_SHAPES = _lazy(
    r"""(?x)
    \b(?:
        gh[pousr]_[A-Za-z0-9]{20,}                 # GitHub tokens
      | github_pat_[A-Za-z0-9_]{20,}               # GitHub fine-grained tokens
      | glpat-[A-Za-z0-9_-]{20,}                   # GitLab
      | sk-[A-Za-z0-9_-]{20,}                      # OpenAI, Anthropic (sk-ant-...), others
      | [sr]k_(?:live|test)_[A-Za-z0-9]{16,}       # Stripe
      | hf_[A-Za-z0-9]{20,}                        # Hugging Face
      | xox[abprs]-[A-Za-z0-9-]{10,}               # Slack
      | (?:AKIA|ASIA)[A-Z0-9]{16}                  # AWS access key ids
      | AIza[0-9A-Za-z_-]{35}                      # Google API keys
      | npm_[A-Za-z0-9]{36}                        # npm
      | pypi-[A-Za-z0-9_-]{40,}                    # PyPI
      | tlk_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}        # tracklet API keys
      | eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}  # JWTs
    )""")

_BEARER = _lazy(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]{8,}")

# name=value inside a longer string: an assignment, an option, a URL query parameter.
_ASSIGNMENT = _lazy(r"(?<![\w.-])(-{0,2}[A-Za-z_][\w.-]*)(=)([^\s&;,'\"]+)")

_STRONG_WORDS = frozenset({"password", "passwd", "pwd", "passphrase", "secret", "credential", "credentials",
                           "apikey", "passcode"})
_STRONG_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                           ("client", "secret"), ("auth", "token"), ("access", "token"), ("refresh", "token"),
                           ("api", "token"), ("private", "token"), ("session", "key"),
                           ("signing", "key"), ("session", "token"), ("bearer", "token")})
_WEAK_WORDS = frozenset({"token", "key", "auth"})
_NOT_SECRETS = frozenset({"", "true", "false", "yes", "no", "on", "off", "none", "null", "0", "1"})
_ALNUM_RUN = _lazy(r"[A-Za-z0-9]{16,}")
_HEX_RUN = _lazy(r"(?<![A-Za-z0-9])[0-9a-fA-F]{32,}(?![A-Za-z0-9])")
_URLSAFE = _lazy(r"[A-Za-z0-9_-]+")
_CAMEL = _lazy(r"(?<=[a-z0-9])(?=[A-Z])")


def _words(name: str) -> list[str]:
    return [word for word in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", name).lower()) if word]


def secret_name(name: str) -> str | None:
    """``"strong"`` when any value of an option or variable called ``name`` is a secret
    (``password``, ``api_key``, ``AWS_SECRET_ACCESS_KEY``), ``"weak"`` when only a random-looking
    value is (``token``, ``key``), None otherwise (``max_tokens``, ``pad_token_id``)."""
    words = _words(name)
    if not words:
        return None
    if words[-1] in _STRONG_WORDS or tuple(words[-2:]) in _STRONG_PAIRS:
        return "strong"
    return "weak" if words[-1] in _WEAK_WORDS else None


def looks_random(value: str) -> bool:
    """Whether ``value`` looks like a generated credential rather than a word, name or path: a run
    of 16+ letters and digits with both in it (hex digests, base62 tokens), a run of 32+ hex digits
    whatever its mix (``secrets.token_hex(16)`` is all digits but one letter ~1 time in 170,000), or
    20+ characters of a URL-safe alphabet mixing two of upper case, lower case and digits
    (``secrets.token_urlsafe``; one of 16 bytes misses ~3 times in a million, being letters of one
    case and '_' alone, as a name is)."""
    if _HEX_RUN.search(value):
        return True
    for run in _ALNUM_RUN.findall(value):
        if sum(c.isdigit() for c in run) >= 2 and sum(c.isalpha() for c in run) >= 2:
            return True
    if len(value) < 20 or _URLSAFE.fullmatch(value) is None:
        return False
    classes = (sum(c.isupper() for c in value), sum(c.islower() for c in value), sum(c.isdigit() for c in value))
    return sum(count >= 2 for count in classes) >= 2


def _secret_value(kind: str | None, value: str) -> bool:
    if kind is None or value.strip("'\"").lower() in _NOT_SECRETS:
        return False
    return kind == "strong" or looks_random(value.strip("'\""))


def _assignment(match: re.Match[str]) -> str:
    name, sign, value = match.groups()
    if _secret_value(secret_name(name), value):
        return f"{name}{sign}{REDACTED}"
    return match.group(0)


def redact_text(text: str) -> str:
    """``text`` with URL userinfo dropped and secret-looking values replaced by ``[redacted]``."""
    if not text or not may_hold_secrets(text, text.lower()):  # substring checks: GB/s, the patterns ~20 MB/s
        return text
    text = _URL_USERINFO.sub(r"\1", text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _ASSIGNMENT.sub(_assignment, text)


# Prefilters for a text that holds many strings at once (a JSON document), as substring checks
# (a regular expression alternation costs ~50 ns a character; ``in`` a few ns): every change
# ``redact_text`` makes to a string contains one of ``_TEXT_HINTS`` (each pattern above starts with
# one of them, and JSON escapes none of their characters) or, lowered, "bearer"; every name
# ``secret_name`` flags contains, lowered, one of ``_NAME_HINTS``. Keep them in step with the
# patterns above (tests/test_redact.py checks them against redact_text and secret_name).
_TEXT_HINTS = ("=", "://", "sk-", "hf_", "eyJ", "npm_", "tlk_", "pypi-", "glpat-", "github_pat_", "k_live_",
               "k_test_", "xox", "AKIA", "ASIA", "AIza", "ghp_", "gho_", "ghu_", "ghs_", "ghr_")
_NAME_HINTS = ("pass", "pwd", "secret", "credential", "key", "token", "auth")


# Every hint in _TEXT_HINTS holds one of these characters, or (``xox``) is followed by one in the
# shape it stands for: a long text without any skips the hints (single characters: memchr speed).
_HINT_CHARS = ("=", ":", "-", "_", "J", "A")
_GATED_LENGTH = 1 << 16


def may_hold_secrets(text: str, lowered: str) -> bool:
    """False only when no string inside ``text`` (``lowered``: ``text.lower()``) would be changed
    by :func:`redact_text`."""
    if len(text) > _GATED_LENGTH and not any(char in text for char in _HINT_CHARS):
        return "bearer" in lowered
    for hint in _TEXT_HINTS:
        if hint in text:
            return True
    return "bearer" in lowered


def may_name_secrets(lowered: str) -> bool:
    """False only when no name inside the lowered text ``lowered`` is one :func:`secret_name` flags."""
    for hint in _NAME_HINTS:
        if hint in lowered:
            return True
    return False


def redact_url(url: str) -> str:
    """A URL (a git remote) without its userinfo or any secret in it: see :func:`redact_text`."""
    return redact_text(url)


def redact_command(argv: Iterable[str]) -> list[str]:
    """A command line safe to record: each argument through :func:`redact_text`, and the argument
    after an option named like a secret (``--api-key X``, ``--password X``) replaced too."""
    out: list[str] = []
    pending: str | None = None  # the kind of secret the previous option announced
    for arg in argv:
        if pending is not None and not arg.startswith("-") and _secret_value(pending, arg):
            out.append(REDACTED)
            pending = None
            continue
        pending = secret_name(arg) if arg.startswith("-") and "=" not in arg else None
        out.append(redact_text(arg))
    return out


__all__ = ["REDACTED", "looks_random", "may_hold_secrets", "may_name_secrets", "redact_command", "redact_text", "redact_url", "secret_name"]
