/**
 * gosession's Redis layout: key names, the token format and the checks that
 * keep one user's keys from colliding with another's.
 *
 * Pure functions only, so that `tests/layout.test.js` runs them on Node.
 * `guest/src/layout.rs` (with the Rust SDK's `user_id`, `token` and `ttl`
 * modules) and `examples/policy-python/policy/layout.py` are the same rules
 * in Rust and in Python. Every integer of the contract (an `s64` or `u64`)
 * is a BigInt here, as the bindings hand them over.
 */

/** Hex digits in a token's random part (128 bits). */
export const TOKEN_RANDOM_HEX = 32;

/** The longest user id accepted, in bytes of UTF-8. */
export const MAX_USER_ID_BYTES = 1024;

/** The longest token any call could have issued, in bytes of UTF-8. */
export const MAX_TOKEN_BYTES = MAX_USER_ID_BYTES + 1 + TOKEN_RANDOM_HEX;

/** The longest TTL accepted: ten years, in seconds. */
export const MAX_TTL_SECONDS = 10n * 365n * 24n * 3600n;

// Spelled out: the engine in the component has no Unicode property escapes.
/** Unicode's Cc (Rust's `char::is_control`). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** Unicode's White_Space (Rust's `char::is_whitespace`) at either end. */
const EDGE_SPACE =
  /^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;
const TOKEN_SUFFIX = new RegExp(`_[0-9a-fA-F]{${TOKEN_RANDOM_HEX}}$`);
const SECRET = new RegExp(`^[0-9a-f]{${TOKEN_RANDOM_HEX}}$`);
const UTF8 = new TextEncoder();

/** An argument or setting refused before anything is read or written. */
export class Invalid extends Error {}

/** The length of `text` in bytes of UTF-8. */
function utf8Length(text) {
  return UTF8.encode(text).length;
}

/** A lifetime setting: from 1 second to ten years. */
export function checkTtlSetting(name, seconds) {
  if (seconds < 1n || seconds > MAX_TTL_SECONDS) {
    throw new Invalid(
      `${name} must be between 1 and ${MAX_TTL_SECONDS} seconds, not ${seconds}`,
    );
  }
}

/** A call's TTL argument: 0 means `defaultTtl`. */
export function resolveTtl(requested, defaultTtl) {
  if (requested === 0n) {
    return defaultTtl;
  }
  if (requested < 0n) {
    throw new Invalid(`ttl must not be negative, got ${requested}`);
  }
  if (requested > MAX_TTL_SECONDS) {
    throw new Invalid(`ttl must be at most ${MAX_TTL_SECONDS} seconds, got ${requested}`);
  }
  return requested;
}

/**
 * Refuses an empty or oversized user id, one holding a control character,
 * one with white space at an edge, and one ending in `_` and 32 hex digits
 * (its index key would be another user's token key).
 */
export function checkUserId(userId) {
  if (userId === '') {
    throw new Invalid('user id must not be empty');
  }
  const size = utf8Length(userId);
  if (size > MAX_USER_ID_BYTES) {
    throw new Invalid(`user id must be at most ${MAX_USER_ID_BYTES} bytes, got ${size}`);
  }
  const control = CONTROL.exec(userId);
  if (control) {
    throw new Invalid(
      `user id must not contain control characters, found ${JSON.stringify(control[0])}`,
    );
  }
  if (EDGE_SPACE.test(userId)) {
    throw new Invalid('user id must not start or end with white space');
  }
  if (TOKEN_SUFFIX.test(userId)) {
    throw new Invalid(
      `user id must not end in '_' and ${TOKEN_RANDOM_HEX} hex digits: ` +
        "its keys would collide with a token's",
    );
  }
}

/**
 * The user id of a well-formed token: the part before its last `_`, the
 * part after being 32 lowercase hex digits. null for a malformed token;
 * Invalid for an empty one or one longer than any call could issue.
 */
export function tokenUser(token) {
  if (token === '') {
    throw new Invalid('token must not be empty');
  }
  const size = utf8Length(token);
  if (size > MAX_TOKEN_BYTES) {
    throw new Invalid(
      `token must be at most ${MAX_TOKEN_BYTES} bytes ` +
        `(a user id of at most ${MAX_USER_ID_BYTES}), got ${size}`,
    );
  }
  const split = token.lastIndexOf('_');
  if (split < 0 || !SECRET.test(token.slice(split + 1))) {
    return null;
  }
  const userId = token.slice(0, split);
  try {
    checkUserId(userId);
  } catch (error) {
    if (error instanceof Invalid) {
      return null;
    }
    throw error;
  }
  return userId;
}

/** A new token for `userId` from 16 random bytes (a Uint8Array). */
export function newToken(userId, random) {
  let hex = '';
  for (const byte of random) {
    hex += byte.toString(16).padStart(2, '0');
  }
  return `${userId}_${hex}`;
}

/**
 * [seconds left, expiry in unix seconds] from a `TTL` reply read at `now`:
 * [-1, -1] for a key without expiry, null for a missing key.
 */
export function lifetime(ttl, now) {
  if (ttl === -1n) {
    return [-1n, -1n];
  }
  if (ttl >= 0n) {
    return [ttl, now + ttl];
  }
  return null;
}

/** Orders strings by code point, as Python and Rust order theirs. */
const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const U64 = (1n << 64n) - 1n;
const UNREADABLE = -(1n << 63n);

/** FNV-1a, 64 bits, of `text`'s UTF-8: orders tokens of one expiry. */
export function fnv1a(text) {
  let hash = FNV_OFFSET;
  for (const byte of UTF8.encode(text)) {
    hash = ((hash ^ BigInt(byte)) * FNV_PRIME) & U64;
  }
  return hash;
}

/** A token's place in its user's list: its expiry (an unreadable one
 * sorts last) and its hash, both BigInts. */
export function listPosition(expiry, token) {
  const seconds = /^-?[0-9]+$/.test(expiry) ? BigInt(expiry) : UNREADABLE;
  return { expiry: seconds, hash: fnv1a(token) };
}

/** Latest expiry first, then by hash: < 0 when `a` comes first. */
export function comparePositions(a, b) {
  if (a.expiry !== b.expiry) {
    return a.expiry > b.expiry ? -1 : 1;
  }
  if (a.hash !== b.hash) {
    return a.hash < b.hash ? -1 : 1;
  }
  return 0;
}

/** The cursor text of a place in the list. */
export function cursor(at) {
  return `${at.expiry} ${at.hash.toString(16).padStart(16, '0')}`;
}

/** The place a cursor names, or null when it is not one. */
export function parseCursor(text) {
  const match = /^(-?[0-9]{1,18}) ([0-9a-f]{1,64})$/.exec(text);
  return match === null ? null : { expiry: BigInt(match[1]), hash: BigInt(`0x${match[2]}`) };
}

export function byCodePoint(a, b) {
  const left = a[Symbol.iterator]();
  const right = b[Symbol.iterator]();
  for (;;) {
    const x = left.next();
    const y = right.next();
    if (x.done || y.done) {
      return (y.done ? 0 : -1) + (x.done ? 0 : 1);
    }
    const difference = x.value.codePointAt(0) - y.value.codePointAt(0);
    if (difference !== 0) {
      return difference;
    }
  }
}

/**
 * Compact JSON with object keys sorted, as serde_json writes a value (and
 * the Python policy's `json.dumps(..., sort_keys=True)`). Numbers are as
 * JavaScript reads them: doubles.
 */
export function dump(value) {
  if (Array.isArray(value)) {
    return `[${value.map(dump).join(',')}]`;
  }
  if (value !== null && typeof value === 'object') {
    const fields = Object.keys(value)
      .sort(byCodePoint)
      .map((key) => `${JSON.stringify(key)}:${dump(value[key])}`);
    return `{${fields.join(',')}}`;
  }
  return JSON.stringify(value);
}

/** gosession's user-info cache entry, `{"id":...,"detail":...}`. */
export function encodeUser(userId, detail) {
  return `{"id":${JSON.stringify(userId)},"detail":${dump(detail)}}`;
}

/** The keys of gosession's layout under one call's settings. */
export class Layout {
  /** `_` in a prefix becomes `-`, as in gosession. */
  constructor(tokenPrefix, userPrefix, defaultTtl, indexTtl) {
    for (const [name, prefix] of [
      ['token key prefix', tokenPrefix],
      ['user key prefix', userPrefix],
    ]) {
      if (prefix === '') {
        throw new Invalid(`${name} must not be empty`);
      }
    }
    checkTtlSetting('default expire', defaultTtl);
    checkTtlSetting('index expire', indexTtl);
    this.tokenPrefix = tokenPrefix.replaceAll('_', '-');
    this.userPrefix = userPrefix.replaceAll('_', '-');
    this.defaultTtl = defaultTtl;
    this.indexTtl = indexTtl;
  }

  /** Holds the user key; lives as long as the token. */
  tokenKey(token) {
    return `${this.tokenPrefix}_${token}`;
  }

  /** Hash of the user's tokens to their expiry (unix seconds). */
  indexKey(userId) {
    return `${this.tokenPrefix}_${userId}`;
  }

  /** The user-info cache entry. */
  userKey(userId) {
    return `${this.userPrefix}_${userId}`;
  }

  /** How long the index lives after a token of `ttl` seconds is written. */
  indexTtlFor(ttl) {
    return ttl > this.indexTtl ? ttl : this.indexTtl;
  }
}
