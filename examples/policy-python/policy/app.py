"""The gosession policy in Python: the same Redis layout as the built-in
default policy (guest/src), byte for byte, so that tokens issued by either
are valid under the other.

| key | value | TTL |
|---|---|---|
| `{token_prefix}_{token}` | `{user_prefix}_{user_id}` | the token's |
| `{token_prefix}_{user_id}` (hash) | token -> expiry, unix seconds | >= index TTL and its tokens' |
| `{user_prefix}_{user_id}` | `{"id":...,"detail":...}` | the user-info TTL |

`TokenManage` below is the `token-manage` export of world `policy` in
`wit/session.wit`; componentize-py generates the `wit_world` modules it
imports from that file alone. Every store function is one round trip; an
error from the host arrives as the exception `Err(error)`, and an `Err`
left to propagate out of a method is that method's error result.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import random, types, user_loader, wall_clock
from wit_world.imports import dsession_session_store as store
from wit_world.imports.dsession_session_store import (
    Command_Del,
    Command_Exists,
    Command_Expire,
    Command_Get,
    Command_HashDelete,
    Command_HashExists,
    Command_HashGetAll,
    Command_HashSet,
    Command_Set,
    Command_Ttl,
    ExpireArgs,
    ExpireCondition,
    HashDeleteArgs,
    HashExistsArgs,
    HashSetArgs,
    Reply_Integer,
    Reply_Nil,
    Reply_Pairs,
    Reply_Text,
    SetArgs,
    SetCondition,
)

import layout
from layout import Invalid, Layout

MAX_SINGLE_MODE_ATTEMPTS = 256
"""How often a single-mode login re-reads the index after losing a race
before it gives up with `conflict`; each lost race means another call won."""


def invalid(error):
    return Err(types.Error_InvalidArgument(str(error)))


def corrupt(what):
    return Err(types.Error_Corrupt(what))


def now():
    return wall_clock.now().seconds


# Replies, each read as the kind its command names; another kind is corrupt.


def integer(reply, what):
    if isinstance(reply, Reply_Integer):
        return reply.value
    raise corrupt(f"unexpected store reply for {what}: {reply!r}")


def text(reply, what):
    if isinstance(reply, Reply_Text):
        return reply.value
    if isinstance(reply, Reply_Nil):
        return None
    raise corrupt(f"unexpected store reply for {what}: {reply!r}")


def pairs(reply, what):
    if isinstance(reply, Reply_Pairs):
        return reply.value
    raise corrupt(f"unexpected store reply for {what}: {reply!r}")


def set_key(key, value, ttl):
    return Command_Set(SetArgs(key, value, ttl, SetCondition.ALWAYS))


def expire(key, seconds, condition):
    return Command_Expire(ExpireArgs(key, seconds, condition))


def hdel(key, fields):
    return Command_HashDelete(HashDeleteArgs(key, list(fields)))


# The user-info cache, gosession's JSON `{"id":...,"detail":...}`.


def dump(value):
    """Compact JSON with sorted keys, as serde_json writes it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_user(user_id, detail):
    detail_text = "null" if detail is None else dump(detail)
    return f'{{"id":{dump(user_id)},"detail":{detail_text}}}'


def decode_detail(cached):
    """The detail in a cache entry as JSON text; None when it is null."""
    try:
        fields = json.loads(cached)
    except ValueError as error:
        raise corrupt(f"user info is not a JSON object: {error}") from None
    if not isinstance(fields, dict):
        raise corrupt("user info is not a JSON object")
    detail = fields.get("detail")
    return None if detail is None else dump(detail)


class Policy:
    """One call's settings, checked and turned into a layout."""

    def __init__(self, settings):
        try:
            self.layout = Layout(
                settings.token_key_prefix,
                settings.user_key_prefix,
                settings.default_expire_seconds,
                settings.index_expire_seconds,
            )
        except Invalid as error:
            raise invalid(error) from None
        self.single_mode = settings.single_mode
        self.user_loader = settings.user_loader

    def ttl(self, requested):
        try:
            return layout.resolve_ttl(requested, self.layout.default_ttl)
        except Invalid as error:
            raise invalid(error) from None

    def check_user_id(self, user_id):
        try:
            layout.check_user_id(user_id)
        except Invalid as error:
            raise invalid(error) from None

    def token_user(self, token):
        try:
            return layout.token_user(token)
        except Invalid as error:
            raise invalid(error) from None

    # The user-info cache.

    def require_loader(self):
        if not self.user_loader:
            raise invalid(
                "no user loader is configured: add-user and refresh-user load the detail "
                "from it, and without one they would overwrite the cached detail; "
                "nothing was written"
            )

    def load(self, user_id):
        """The loader's detail, parsed; None without a loader or detail."""
        if not self.user_loader:
            return None
        try:
            loaded = user_loader.load(user_id)
        except Err as error:
            raise Err(types.Error_Loader(error.value)) from None
        if loaded is None:
            return None
        try:
            return json.loads(loaded)
        except ValueError as error:
            raise Err(
                types.Error_Loader(f"detail of user {user_id!r} is not JSON: {error}")
            ) from None

    def cache_user(self, user_id, detail, ttl):
        return set_key(self.layout.user_key(user_id), encode_user(user_id, detail), ttl)

    def add_users(self, user_ids, ttl):
        """Loads each user and caches them in one round trip after the loads;
        stops at the first failure, before writing anything."""
        self.require_loader()
        cached, writes = [], []
        for user_id in user_ids:
            detail = self.load(user_id)
            writes.append(self.cache_user(user_id, detail, ttl))
            cached.append(types.UserInfo(user_id, None if detail is None else dump(detail)))
        if writes:
            store.batch(writes)
        return cached

    # The token index.

    def index_writes(self, user_id, token, expires, ttl):
        """The index entry of a token valid until `expires`, and the index's
        lifetime stretched to cover a token of `ttl` seconds."""
        index = self.layout.index_key(user_id)
        seconds = self.layout.index_ttl_for(ttl)
        return [
            Command_HashSet(HashSetArgs(index, [(token, str(expires))])),
            # NX sets the expiry of a new index, GT only ever lengthens it.
            expire(index, seconds, ExpireCondition.IF_NONE),
            expire(index, seconds, ExpireCondition.IF_LATER),
        ]

    def forget(self, user_id, tokens):
        """Deletes `tokens` and their index entries."""
        return [
            Command_Del([self.layout.token_key(token) for token in tokens]),
            hdel(self.layout.index_key(user_id), tokens),
        ]

    def unlist(self, user_id, tokens):
        store.batch([hdel(self.layout.index_key(user_id), tokens)])

    def listed(self, user_id):
        [reply] = store.batch([Command_HashGetAll(self.layout.index_key(user_id))])
        return [token for token, _ in pairs(reply, "HGETALL index")]

    def add_token(self, user_id, writes):
        """A login outside single mode: the token and its entry in one atomic
        step that reads the index back; entries past their recorded expiry
        whose token key is gone are pruned."""
        replies = store.atomic(writes + [Command_HashGetAll(self.layout.index_key(user_id))])
        moment = now()
        stale = []
        for token, expiry in pairs(replies[-1], "HGETALL index"):
            try:
                if int(expiry) <= moment:
                    stale.append(token)
            except ValueError:
                pass
        if not stale:
            return
        exists = store.batch([Command_Exists([self.layout.token_key(token)]) for token in stale])
        dead = [
            token
            for token, reply in zip(stale, exists, strict=True)
            if integer(reply, "EXISTS token") == 0
        ]
        if dead:
            self.unlist(user_id, dead)

    def replace_tokens(self, user_id, writes):
        """A login in single mode: replace every indexed token atomically, or
        lose the race to a concurrent writer of the index and try again."""
        index = self.layout.index_key(user_id)
        for _ in range(MAX_SINGLE_MODE_ATTEMPTS):
            transaction, replies = store.watch([index], [Command_HashGetAll(index)])
            with transaction:
                old = [token for token, _ in pairs(replies[0], "HGETALL index")]
                commands = self.forget(user_id, old) if old else []
                if transaction.commit(commands + writes) is not None:
                    return
        raise Err(
            types.Error_Conflict(
                f"single-mode login of user {user_id!r} lost "
                f"{MAX_SINGLE_MODE_ATTEMPTS} races in a row"
            )
        )

    # The operations.

    def check(self, token, user_ttl):
        """A token's user; with detail, cached for `user_ttl` seconds when
        it comes from the loader, unless `user_ttl` is None."""
        user_id = self.token_user(token)
        if user_id is None:
            return None
        token_key = self.layout.token_key(token)
        user_key = self.layout.user_key(user_id)
        reads = [
            Command_Get(token_key),
            Command_Ttl(token_key),
            Command_HashExists(HashExistsArgs(self.layout.index_key(user_id), token)),
        ]
        if user_ttl is not None:
            reads.append(Command_Get(user_key))
        replies = store.batch(reads)
        moment = now()
        value = text(replies[0], "GET token")
        alive = layout.lifetime(integer(replies[1], "TTL token"), moment)
        if value is None or alive is None:
            self.unlist(user_id, [token])
            return None
        if value != user_key:
            raise corrupt(f"token key names user key {value!r}, expected {user_key!r}")
        if integer(replies[2], "HEXISTS index") == 0:
            return None
        remaining, expires = alive
        return types.User(
            user_id, token, remaining, expires, self.detail(user_id, user_ttl, replies)
        )

    def detail(self, user_id, user_ttl, replies):
        if user_ttl is None:
            return None
        cached = text(replies[3], "GET user")
        if cached is not None:
            return decode_detail(cached)
        if not self.user_loader:
            return None
        loaded = self.load(user_id)
        store.batch([self.cache_user(user_id, loaded, user_ttl)])
        return None if loaded is None else dump(loaded)

    def set_token(self, user_id, ttl):
        token = layout.new_token(user_id, random.get_random_bytes(16))
        expires = now() + ttl
        writes = [set_key(self.layout.token_key(token), self.layout.user_key(user_id), ttl)]
        writes += self.index_writes(user_id, token, expires, ttl)
        if self.single_mode:
            self.replace_tokens(user_id, writes)
        else:
            self.add_token(user_id, writes)
        return types.IssuedToken(token, expires)

    def refresh_token(self, token, ttl):
        user_id = self.token_user(token)
        if user_id is None:
            raise Err(types.Error_NotFound())
        # A second round trip, as MULTI cannot make EXPIRE depend on HEXISTS;
        # an entry removed in between by delete-user-token takes the token
        # key with it, so EXPIRE then finds nothing to extend.
        index = self.layout.index_key(user_id)
        [listed] = store.batch([Command_HashExists(HashExistsArgs(index, token))])
        if integer(listed, "HEXISTS index") == 0:
            raise Err(types.Error_NotFound())
        expires = now() + ttl
        # EXPIRE never creates a key: a dead token stays dead, whatever races it.
        commands = [expire(self.layout.token_key(token), ttl, ExpireCondition.ALWAYS)]
        commands += self.index_writes(user_id, token, expires, ttl)
        if integer(store.atomic(commands)[0], "EXPIRE token") == 1:
            return expires
        self.unlist(user_id, [token])
        raise Err(types.Error_NotFound())

    def delete_token(self, token):
        user_id = self.token_user(token)
        if user_id is not None:
            store.atomic(self.forget(user_id, [token]))

    def list_user_token(self, user_id, page):
        """A page of the user's live tokens, latest expiry first, then by
        a hash of the token, as the built-in default policy lists them: the
        cursor names a place in that order and never holds a token."""
        [index] = store.batch([Command_HashGetAll(self.layout.index_key(user_id))])
        entries = sorted(
            (layout.list_position(expiry, token), token)
            for token, expiry in pairs(index, "HGETALL index")
        )
        start = None
        if page.cursor is not None:
            start = layout.parse_cursor(page.cursor)
            if start is None:
                raise invalid("cursor is not of this policy's form: pass a next-cursor back as it came")
        entries = [entry for entry in entries if start is None or entry[0] > start]
        more = 0 < page.limit < len(entries)
        if page.limit > 0:
            entries = entries[: page.limit]
        next_cursor = layout.cursor(entries[-1][0]) if more else None
        if not entries:
            return types.TokenPage([], next_cursor)
        ttls = store.batch([Command_Ttl(self.layout.token_key(token)) for _, token in entries])
        moment = now()
        live, dead = [], []
        for (_, token), reply in zip(entries, ttls, strict=True):
            alive = layout.lifetime(integer(reply, "TTL token"), moment)
            if alive is None:
                dead.append(token)
            else:
                # This policy keeps no issue time, last use or attributes.
                attributes = types.SessionAttributes(None, None, None, [])
                live.append(types.TokenEntry(token, alive[0], alive[1], None, None, attributes))
        if dead:
            self.unlist(user_id, dead)
        return types.TokenPage(live, next_cursor)

    def delete_user_token(self, user_id):
        tokens = self.listed(user_id)
        # Only the entries read are removed: a token issued meanwhile keeps
        # its entry, so a later delete-user-token still finds it.
        if tokens:
            store.atomic(self.forget(user_id, tokens))


class TokenManage(exports.TokenManage):
    """The `token-manage` export: each call checks its settings, then its
    user ids, then its TTL, before anything is read or written."""

    def self_check(self, settings):
        policy = Policy(settings)
        probe = layout.new_token("dsession-probe", bytes(16))
        if policy.check(probe, None) is not None:
            raise corrupt(f"the probe token {probe!r} is live in the store")
        return types.SelfCheckReport(probe, policy.single_mode, None)

    def set_token(self, settings, user_id, ttl_seconds, attributes):
        # This policy keeps gosession's keys alone: the attributes are not kept.
        policy = Policy(settings)
        policy.check_user_id(user_id)
        return policy.set_token(user_id, policy.ttl(ttl_seconds))

    def refresh_token(self, settings, token, ttl_seconds):
        policy = Policy(settings)
        return policy.refresh_token(token, policy.ttl(ttl_seconds))

    def delete_token(self, settings, token):
        Policy(settings).delete_token(token)

    def check_token(self, settings, token):
        return Policy(settings).check(token, None)

    def check_token_or_update_user(self, settings, token, user_ttl_seconds):
        policy = Policy(settings)
        return policy.check(token, policy.ttl(user_ttl_seconds))

    def list_user_token(self, settings, user_id, page):
        policy = Policy(settings)
        policy.check_user_id(user_id)
        return policy.list_user_token(user_id, page)

    def delete_user_token(self, settings, user_id):
        policy = Policy(settings)
        policy.check_user_id(user_id)
        policy.delete_user_token(user_id)

    def refresh_user(self, settings, user_ids, user_ttl_seconds):
        policy = Policy(settings)
        for user_id in user_ids:
            policy.check_user_id(user_id)
        policy.add_users(user_ids, policy.ttl(user_ttl_seconds))

    def delete_user(self, settings, user_id):
        policy = Policy(settings)
        policy.check_user_id(user_id)
        store.batch([Command_Del([policy.layout.user_key(user_id)])])

    def add_user(self, settings, user_id, user_ttl_seconds):
        policy = Policy(settings)
        policy.check_user_id(user_id)
        [cached] = policy.add_users([user_id], policy.ttl(user_ttl_seconds))
        return cached
