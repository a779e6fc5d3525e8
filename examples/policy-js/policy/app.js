/**
 * The gosession policy in JavaScript: the same Redis layout as the built-in
 * default policy (guest/src), byte for byte, so that tokens issued by either
 * are valid under the other.
 *
 * | key | value | TTL |
 * |---|---|---|
 * | `{token_prefix}_{token}` | `{user_prefix}_{user_id}` | the token's |
 * | `{token_prefix}_{user_id}` (hash) | token -> expiry, unix seconds | >= index TTL and its tokens' |
 * | `{user_prefix}_{user_id}` | `{"id":...,"detail":...}` | the user-info TTL |
 *
 * `tokenManage` below is the `token-manage` export of world `policy` in
 * `wit/session.wit`; ComponentizeJS generates the modules it imports from
 * that file alone. Every store function is one round trip. An error from
 * the host arrives as an exception whose `payload` is the WIT error; an
 * exception with a `payload` that leaves a method is that method's error,
 * and any other exception traps the instance.
 */

import { getRandomBytes } from 'wasi:random/random@0.2.12';
import { now as wallClock } from 'wasi:clocks/wall-clock@0.2.12';
import { atomic, batch, watch } from 'dsession:session/store@0.4.0';
import { load } from 'dsession:session/user-loader@0.4.0';

import * as layout from './layout.js';
import { Invalid, Layout, dump, encodeUser } from './layout.js';

/**
 * How often a single-mode login re-reads the index after losing a race
 * before it gives up with `conflict`; each lost race means another call won.
 */
const MAX_SINGLE_MODE_ATTEMPTS = 256;

/** Drops a resource, as the bindings name the method that does. */
const DROP = Symbol.dispose || Symbol.for('dispose');

/** A WIT `error` leaving a method: the bindings return its `payload`. */
class Failure extends Error {
  constructor(tag, val) {
    super(val === undefined ? tag : `${tag}: ${val}`);
    this.payload = val === undefined ? { tag } : { tag, val };
  }
}

/** The WIT error a `Invalid` stands for; any other exception as it is. */
function refused(error) {
  return error instanceof Invalid ? new Failure('invalid-argument', error.message) : error;
}

/** Runs `rule` of the layout, its refusal an `invalid-argument` error. */
function checked(rule) {
  try {
    return rule();
  } catch (error) {
    throw refused(error);
  }
}

function corrupt(what) {
  return new Failure('corrupt', what);
}

function now() {
  return wallClock().seconds;
}

// Replies, each read as the kind its command names; another kind is corrupt.

function unexpected(reply, what) {
  return corrupt(`unexpected store reply for ${what}: ${reply.tag}`);
}

function integer(reply, what) {
  if (reply.tag === 'integer') {
    return reply.val;
  }
  throw unexpected(reply, what);
}

function text(reply, what) {
  if (reply.tag === 'text') {
    return reply.val;
  }
  if (reply.tag === 'nil') {
    return null;
  }
  throw unexpected(reply, what);
}

function pairs(reply, what) {
  if (reply.tag === 'pairs') {
    return reply.val;
  }
  throw unexpected(reply, what);
}

// Commands.

function get(key) {
  return { tag: 'get', val: key };
}

function setKey(key, value, ttlSeconds) {
  return { tag: 'set', val: { key, value, ttlSeconds, condition: 'always' } };
}

function del(keys) {
  return { tag: 'del', val: keys };
}

function ttlOf(key) {
  return { tag: 'ttl', val: key };
}

function expire(key, seconds, condition) {
  return { tag: 'expire', val: { key, seconds, condition } };
}

function hashGetAll(key) {
  return { tag: 'hash-get-all', val: key };
}

function hashExists(key, field) {
  return { tag: 'hash-exists', val: { key, field } };
}

function hashDelete(key, fields) {
  return { tag: 'hash-delete', val: { key, fields } };
}

/** The detail in a user-info cache entry as JSON text; null when it is null. */
function decodeDetail(cached) {
  let fields;
  try {
    fields = JSON.parse(cached);
  } catch (error) {
    throw corrupt(`user info is not a JSON object: ${error.message}`);
  }
  if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
    throw corrupt('user info is not a JSON object');
  }
  const detail = fields.detail;
  return detail === undefined || detail === null ? null : dump(detail);
}

/** One call's settings, checked and turned into a layout. */
class Policy {
  constructor(settings) {
    this.layout = checked(
      () =>
        new Layout(
          settings.tokenKeyPrefix,
          settings.userKeyPrefix,
          settings.defaultExpireSeconds,
          settings.indexExpireSeconds,
        ),
    );
    this.singleMode = settings.singleMode;
    this.userLoader = settings.userLoader;
  }

  ttl(requested) {
    return checked(() => layout.resolveTtl(requested, this.layout.defaultTtl));
  }

  checkUserId(userId) {
    checked(() => layout.checkUserId(userId));
  }

  tokenUser(token) {
    return checked(() => layout.tokenUser(token));
  }

  // The user-info cache.

  requireLoader() {
    if (!this.userLoader) {
      throw new Failure(
        'invalid-argument',
        'no user loader is configured: add-user and refresh-user load the detail ' +
          'from it, and without one they would overwrite the cached detail; ' +
          'nothing was written',
      );
    }
  }

  /** The loader's detail, parsed; null without a loader or detail. */
  load(userId) {
    if (!this.userLoader) {
      return null;
    }
    let loaded;
    try {
      loaded = load(userId);
    } catch (error) {
      if (error !== null && typeof error === 'object' && Object.hasOwn(error, 'payload')) {
        throw new Failure('loader', error.payload);
      }
      throw error;
    }
    if (loaded === undefined || loaded === null) {
      return null;
    }
    try {
      return JSON.parse(loaded);
    } catch (error) {
      throw new Failure(
        'loader',
        `detail of user ${JSON.stringify(userId)} is not JSON: ${error.message}`,
      );
    }
  }

  cacheUser(userId, detail, ttl) {
    return setKey(this.layout.userKey(userId), encodeUser(userId, detail), ttl);
  }

  /**
   * Loads each user and caches them in one round trip after the loads;
   * stops at the first failure, before writing anything.
   */
  addUsers(userIds, ttl) {
    this.requireLoader();
    const cached = [];
    const writes = [];
    for (const userId of userIds) {
      const detail = this.load(userId);
      writes.push(this.cacheUser(userId, detail, ttl));
      cached.push({ id: userId, detail: detail === null ? undefined : dump(detail) });
    }
    if (writes.length > 0) {
      batch(writes);
    }
    return cached;
  }

  // The token index.

  /**
   * The index entry of a token valid until `expires`, and the index's
   * lifetime stretched to cover a token of `ttl` seconds.
   */
  indexWrites(userId, token, expires, ttl) {
    const index = this.layout.indexKey(userId);
    const seconds = this.layout.indexTtlFor(ttl);
    return [
      { tag: 'hash-set', val: { key: index, fields: [[token, String(expires)]] } },
      // NX sets the expiry of a new index, GT only ever lengthens it.
      expire(index, seconds, 'if-none'),
      expire(index, seconds, 'if-later'),
    ];
  }

  /** Deletes `tokens` and their index entries. */
  forget(userId, tokens) {
    return [
      del(tokens.map((token) => this.layout.tokenKey(token))),
      hashDelete(this.layout.indexKey(userId), tokens),
    ];
  }

  unlist(userId, tokens) {
    batch([hashDelete(this.layout.indexKey(userId), tokens)]);
  }

  listed(userId) {
    const [reply] = batch([hashGetAll(this.layout.indexKey(userId))]);
    return pairs(reply, 'HGETALL index').map(([token]) => token);
  }

  /**
   * A login outside single mode: the token and its entry in one atomic
   * step that reads the index back; entries past their recorded expiry
   * whose token key is gone are pruned.
   */
  addToken(userId, writes) {
    const replies = atomic([...writes, hashGetAll(this.layout.indexKey(userId))]);
    const moment = now();
    const stale = pairs(replies[replies.length - 1], 'HGETALL index')
      .filter(([, expiry]) => /^-?[0-9]+$/.test(expiry) && BigInt(expiry) <= moment)
      .map(([token]) => token);
    if (stale.length === 0) {
      return;
    }
    const exists = batch(stale.map((token) => ({ tag: 'exists', val: [this.layout.tokenKey(token)] })));
    const dead = stale.filter((_, i) => integer(exists[i], 'EXISTS token') === 0n);
    if (dead.length > 0) {
      this.unlist(userId, dead);
    }
  }

  /**
   * A login in single mode: replace every indexed token atomically, or lose
   * the race to a concurrent writer of the index and try again.
   */
  replaceTokens(userId, writes) {
    const index = this.layout.indexKey(userId);
    for (let attempt = 0; attempt < MAX_SINGLE_MODE_ATTEMPTS; attempt++) {
      const [transaction, replies] = watch([index], [hashGetAll(index)]);
      try {
        const old = pairs(replies[0], 'HGETALL index').map(([token]) => token);
        const commands = old.length > 0 ? this.forget(userId, old) : [];
        if (transaction.commit([...commands, ...writes]) !== undefined) {
          return;
        }
      } finally {
        transaction[DROP]();
      }
    }
    throw new Failure(
      'conflict',
      `single-mode login of user ${JSON.stringify(userId)} lost ` +
        `${MAX_SINGLE_MODE_ATTEMPTS} races in a row`,
    );
  }

  // The operations.

  /**
   * A token's user; with detail, cached for `userTtl` seconds when it comes
   * from the loader, unless `userTtl` is null.
   */
  check(token, userTtl) {
    const userId = this.tokenUser(token);
    if (userId === null) {
      return undefined;
    }
    const tokenKey = this.layout.tokenKey(token);
    const userKey = this.layout.userKey(userId);
    const reads = [
      get(tokenKey),
      ttlOf(tokenKey),
      hashExists(this.layout.indexKey(userId), token),
    ];
    if (userTtl !== null) {
      reads.push(get(userKey));
    }
    const replies = batch(reads);
    const moment = now();
    const value = text(replies[0], 'GET token');
    const alive = layout.lifetime(integer(replies[1], 'TTL token'), moment);
    if (value === null || alive === null) {
      this.unlist(userId, [token]);
      return undefined;
    }
    if (value !== userKey) {
      throw corrupt(
        `token key names user key ${JSON.stringify(value)}, expected ${JSON.stringify(userKey)}`,
      );
    }
    if (integer(replies[2], 'HEXISTS index') === 0n) {
      return undefined;
    }
    const [remaining, expires] = alive;
    return {
      id: userId,
      token,
      tokenRemainLiveTime: remaining,
      tokenExpireTime: expires,
      detail: this.detail(userId, userTtl, replies) ?? undefined,
    };
  }

  detail(userId, userTtl, replies) {
    if (userTtl === null) {
      return null;
    }
    const cached = text(replies[3], 'GET user');
    if (cached !== null) {
      return decodeDetail(cached);
    }
    if (!this.userLoader) {
      return null;
    }
    const loaded = this.load(userId);
    batch([this.cacheUser(userId, loaded, userTtl)]);
    return loaded === null ? null : dump(loaded);
  }

  setToken(userId, ttl) {
    const token = layout.newToken(userId, getRandomBytes(16n));
    const expires = now() + ttl;
    const writes = [
      setKey(this.layout.tokenKey(token), this.layout.userKey(userId), ttl),
      ...this.indexWrites(userId, token, expires, ttl),
    ];
    if (this.singleMode) {
      this.replaceTokens(userId, writes);
    } else {
      this.addToken(userId, writes);
    }
    return { token, tokenExpireTime: expires };
  }

  refreshToken(token, ttl) {
    const userId = this.tokenUser(token);
    if (userId === null) {
      throw new Failure('not-found');
    }
    // A second round trip, as MULTI cannot make EXPIRE depend on HEXISTS;
    // an entry removed in between by delete-user-token takes the token key
    // with it, so EXPIRE then finds nothing to extend.
    const index = this.layout.indexKey(userId);
    const [listed] = batch([hashExists(index, token)]);
    if (integer(listed, 'HEXISTS index') === 0n) {
      throw new Failure('not-found');
    }
    const expires = now() + ttl;
    // EXPIRE never creates a key: a dead token stays dead, whatever races it.
    const commands = [
      expire(this.layout.tokenKey(token), ttl, 'always'),
      ...this.indexWrites(userId, token, expires, ttl),
    ];
    if (integer(atomic(commands)[0], 'EXPIRE token') === 1n) {
      return expires;
    }
    this.unlist(userId, [token]);
    throw new Failure('not-found');
  }

  deleteToken(token) {
    const userId = this.tokenUser(token);
    if (userId !== null) {
      atomic(this.forget(userId, [token]));
    }
  }

  /**
   * A page of the user's live tokens, latest expiry first, then by a hash
   * of the token, as the built-in default policy lists them: the cursor
   * names a place in that order and never holds a token.
   */
  listUserToken(userId, page) {
    const [index] = batch([hashGetAll(this.layout.indexKey(userId))]);
    let entries = pairs(index, 'HGETALL index')
      .map(([token, expiry]) => ({ token, at: layout.listPosition(expiry, token) }))
      .sort((a, b) => layout.comparePositions(a.at, b.at));
    if (page.cursor !== undefined) {
      const start = layout.parseCursor(page.cursor);
      if (start === null) {
        throw new Failure(
          'invalid-argument',
          "cursor is not of this policy's form: pass a next-cursor back as it came",
        );
      }
      entries = entries.filter((entry) => layout.comparePositions(entry.at, start) > 0);
    }
    const more = page.limit > 0 && entries.length > page.limit;
    if (page.limit > 0) {
      entries = entries.slice(0, page.limit);
    }
    const nextCursor = more ? layout.cursor(entries[entries.length - 1].at) : undefined;
    if (entries.length === 0) {
      return { tokens: [], nextCursor };
    }
    const ttls = batch(entries.map(({ token }) => ttlOf(this.layout.tokenKey(token))));
    const moment = now();
    const live = [];
    const dead = [];
    entries.forEach(({ token }, i) => {
      const alive = layout.lifetime(integer(ttls[i], 'TTL token'), moment);
      if (alive === null) {
        dead.push(token);
      } else {
        // This policy keeps no issue time, last use or attributes.
        live.push({
          token,
          tokenRemainLiveTime: alive[0],
          tokenExpireTime: alive[1],
          createdAt: undefined,
          lastSeen: undefined,
          attributes: { device: undefined, userAgent: undefined, ip: undefined, labels: [] },
        });
      }
    });
    if (dead.length > 0) {
      this.unlist(userId, dead);
    }
    return { tokens: live, nextCursor };
  }

  deleteUserToken(userId) {
    const tokens = this.listed(userId);
    // Only the entries read are removed: a token issued meanwhile keeps its
    // entry, so a later delete-user-token still finds it.
    if (tokens.length > 0) {
      atomic(this.forget(userId, tokens));
    }
  }
}

/**
 * The `token-manage` export: each call checks its settings, then its user
 * ids, then its TTL, before anything is read or written.
 */
export const tokenManage = {
  selfCheck(settings) {
    const policy = new Policy(settings);
    const probe = layout.newToken('dsession-probe', new Uint8Array(16));
    if (policy.check(probe, null) !== undefined) {
      throw corrupt(`the probe token ${JSON.stringify(probe)} is live in the store`);
    }
    return { probeToken: probe, singleMode: policy.singleMode, maxSessions: undefined };
  },

  // This policy keeps gosession's keys alone: the attributes are not kept.
  setToken(settings, userId, ttlSeconds, _attributes) {
    const policy = new Policy(settings);
    policy.checkUserId(userId);
    return policy.setToken(userId, policy.ttl(ttlSeconds));
  },

  refreshToken(settings, token, ttlSeconds) {
    const policy = new Policy(settings);
    return policy.refreshToken(token, policy.ttl(ttlSeconds));
  },

  deleteToken(settings, token) {
    new Policy(settings).deleteToken(token);
  },

  checkToken(settings, token) {
    return new Policy(settings).check(token, null);
  },

  checkTokenOrUpdateUser(settings, token, userTtlSeconds) {
    const policy = new Policy(settings);
    return policy.check(token, policy.ttl(userTtlSeconds));
  },

  listUserToken(settings, userId, page) {
    const policy = new Policy(settings);
    policy.checkUserId(userId);
    return policy.listUserToken(userId, page);
  },

  deleteUserToken(settings, userId) {
    const policy = new Policy(settings);
    policy.checkUserId(userId);
    policy.deleteUserToken(userId);
  },

  refreshUser(settings, userIds, userTtlSeconds) {
    const policy = new Policy(settings);
    for (const userId of userIds) {
      policy.checkUserId(userId);
    }
    policy.addUsers(userIds, policy.ttl(userTtlSeconds));
  },

  deleteUser(settings, userId) {
    const policy = new Policy(settings);
    policy.checkUserId(userId);
    batch([del([policy.layout.userKey(userId)])]);
  },

  addUser(settings, userId, userTtlSeconds) {
    const policy = new Policy(settings);
    policy.checkUserId(userId);
    const [cached] = policy.addUsers([userId], policy.ttl(userTtlSeconds));
    return cached;
  },
};
