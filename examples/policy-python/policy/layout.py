"""gosession's Redis layout: key names, the token format and the checks that
keep one user's keys from colliding with another's.

Pure functions only, so that `test_layout.py` runs them with any CPython.
`guest/src/layout.rs` and the Rust SDK's `user_id`, `token` and `ttl`
modules are the same rules in Rust.
"""

import unicodedata

TOKEN_RANDOM_HEX = 32
"""Hex digits in a token's random part (128 bits)."""

MAX_USER_ID_BYTES = 1024
"""The longest user id accepted, in bytes of UTF-8."""

MAX_TOKEN_BYTES = MAX_USER_ID_BYTES + 1 + TOKEN_RANDOM_HEX
"""The longest token any call could have issued."""

MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
"""The longest TTL accepted: ten years."""

_LOWER_HEX = frozenset("0123456789abcdef")
_ANY_HEX = frozenset("0123456789abcdefABCDEF")


class Invalid(ValueError):
    """An argument or setting refused before anything is read or written."""


def check_ttl_setting(name, seconds):
    """A lifetime setting: from 1 second to ten years."""
    if not 1 <= seconds <= MAX_TTL_SECONDS:
        raise Invalid(f"{name} must be between 1 and {MAX_TTL_SECONDS} seconds, not {seconds}")


def resolve_ttl(requested, default):
    """A call's TTL argument: 0 means `default`."""
    if requested == 0:
        return default
    if requested < 0:
        raise Invalid(f"ttl must not be negative, got {requested}")
    if requested > MAX_TTL_SECONDS:
        raise Invalid(f"ttl must be at most {MAX_TTL_SECONDS} seconds, got {requested}")
    return requested


def check_user_id(user_id):
    """Refuses an empty or oversized user id, one holding a control
    character, one with white space at an edge, and one ending in `_` and
    32 hex digits (its index key would be another user's token key)."""
    if not user_id:
        raise Invalid("user id must not be empty")
    size = len(user_id.encode())
    if size > MAX_USER_ID_BYTES:
        raise Invalid(f"user id must be at most {MAX_USER_ID_BYTES} bytes, got {size}")
    for c in user_id:
        if unicodedata.category(c) == "Cc":
            raise Invalid(f"user id must not contain control characters, found {c!r}")
    if user_id[0].isspace() or user_id[-1].isspace():
        raise Invalid("user id must not start or end with white space")
    head, sep, tail = user_id.rpartition("_")
    if sep and len(tail) == TOKEN_RANDOM_HEX and set(tail) <= _ANY_HEX:
        raise Invalid(
            f"user id must not end in '_' and {TOKEN_RANDOM_HEX} hex digits: "
            "its keys would collide with a token's"
        )


def token_user(token):
    """The user id of a well-formed token: the part before its last `_`, the
    part after being 32 lowercase hex digits. None for a malformed token;
    Invalid for an empty one or one longer than any call could issue."""
    if not token:
        raise Invalid("token must not be empty")
    size = len(token.encode())
    if size > MAX_TOKEN_BYTES:
        raise Invalid(
            f"token must be at most {MAX_TOKEN_BYTES} bytes "
            f"(a user id of at most {MAX_USER_ID_BYTES}), got {size}"
        )
    user_id, sep, secret = token.rpartition("_")
    if not sep or len(secret) != TOKEN_RANDOM_HEX or not set(secret) <= _LOWER_HEX:
        return None
    try:
        check_user_id(user_id)
    except Invalid:
        return None
    return user_id


def new_token(user_id, random):
    """A new token for `user_id` from 16 random bytes."""
    return f"{user_id}_{random.hex()}"


def lifetime(ttl, now):
    """(seconds left, expiry in unix seconds) from a `TTL` reply read at
    `now`: (-1, -1) for a key without expiry, None for a missing key."""
    if ttl == -1:
        return (-1, -1)
    if ttl >= 0:
        return (ttl, now + ttl)
    return None


def fnv1a(text):
    """FNV-1a, 64 bits, of `text`'s UTF-8: orders tokens of one expiry."""
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def list_position(expiry, token):
    """A token's place in its user's list: latest expiry first (an
    unreadable one last), then by hash."""
    try:
        seconds = int(expiry)
    except ValueError:
        seconds = -(2**63)
    return (-seconds, fnv1a(token))


def cursor(position):
    """The cursor text of a place in the list."""
    return f"{-position[0]} {position[1]:016x}"


def parse_cursor(text):
    """The place a cursor names, or None when it is not one."""
    expiry, _, hashed = text.partition(" ")
    try:
        return (-int(expiry), int(hashed, 16))
    except ValueError:
        return None


class Layout:
    """The keys of gosession's layout under one call's settings; `_` in a
    prefix becomes `-`, as in gosession."""

    def __init__(self, token_prefix, user_prefix, default_ttl, index_ttl):
        for name, prefix in (
            ("token key prefix", token_prefix),
            ("user key prefix", user_prefix),
        ):
            if not prefix:
                raise Invalid(f"{name} must not be empty")
        check_ttl_setting("default expire", default_ttl)
        check_ttl_setting("index expire", index_ttl)
        self.token_prefix = token_prefix.replace("_", "-")
        self.user_prefix = user_prefix.replace("_", "-")
        self.default_ttl = default_ttl
        self.index_ttl = index_ttl

    def token_key(self, token):
        """Holds the user key; lives as long as the token."""
        return f"{self.token_prefix}_{token}"

    def index_key(self, user_id):
        """Hash of the user's tokens to their expiry (unix seconds)."""
        return f"{self.token_prefix}_{user_id}"

    def user_key(self, user_id):
        """The user-info cache entry."""
        return f"{self.user_prefix}_{user_id}"

    def index_ttl_for(self, ttl):
        """How long the index lives after a token of `ttl` seconds is written."""
        return max(self.index_ttl, ttl)
