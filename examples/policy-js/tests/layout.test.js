// The layout's rules, as guest/src/layout.rs and the Python policy's
// tests/test_layout.py test them; `build.sh` runs this with `node --test`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import * as layout from '../policy/layout.js';
import { Invalid, Layout } from '../policy/layout.js';

test('keys follow gosession, underscores in prefixes replaced', () => {
  const keys = new Layout('gosession_token', 'gosession-user', 604800n, 2592000n);
  assert.equal(keys.tokenKey('a_b_00'), 'gosession-token_a_b_00');
  assert.equal(keys.indexKey('a_b'), 'gosession-token_a_b');
  assert.equal(keys.userKey('a_b'), 'gosession-user_a_b');
  assert.equal(keys.indexTtlFor(10n), 2592000n);
  assert.equal(keys.indexTtlFor(layout.MAX_TTL_SECONDS), layout.MAX_TTL_SECONDS);
});

test('bad settings are rejected', () => {
  for (const args of [
    ['', 'u', 1n, 1n],
    ['t', '', 1n, 1n],
    ['t', 'u', 0n, 1n],
    ['t', 'u', 1n, -1n],
    ['t', 'u', layout.MAX_TTL_SECONDS + 1n, 1n],
  ]) {
    assert.throws(() => new Layout(...args), Invalid, JSON.stringify(args.map(String)));
  }
});

test('user ids that end like a token or a header cannot carry are rejected', () => {
  for (const bad of [
    '',
    'x'.repeat(layout.MAX_USER_ID_BYTES + 1),
    'é'.repeat(layout.MAX_USER_ID_BYTES / 2 + 1),
    'alice_0123456789abcdef0123456789abcdef',
    'alice_0123456789ABCDEF0123456789ABCDEF',
    'a\rb',
    'a\nb',
    'a\0b',
    ' alice',
    'alice ',
    'alice\t',
    '\u0085x',
    'x\u3000',
  ]) {
    assert.throws(() => layout.checkUserId(bad), Invalid, JSON.stringify(bad));
  }
  for (const good of [
    'alice_bob',
    '0123456789abcdef0123456789abcdef',
    'a',
    'józef kowalski',
    'é'.repeat(300),
    '😀',
  ]) {
    layout.checkUserId(good);
  }
});

test('a token\'s user is the part before the last underscore', () => {
  const token = layout.newToken('a_b', new Uint8Array(16).fill(0xab));
  assert.equal(token, `a_b_${'ab'.repeat(16)}`);
  assert.equal(layout.tokenUser(token), 'a_b');
  assert.equal(layout.newToken('u', new Uint8Array(16)), `u_${'0'.repeat(32)}`);
  assert.equal(layout.tokenUser('nounderscore'), null);
  assert.equal(layout.tokenUser(`_${'ab'.repeat(16)}`), null);
  assert.equal(layout.tokenUser(`a_${'AB'.repeat(16)}`), null);
  assert.equal(layout.tokenUser('a_abc'), null);
  assert.throws(() => layout.tokenUser(''), Invalid);
});

test('tokens of user ids up to the bound are read and longer ones rejected', () => {
  const longest = 'x'.repeat(layout.MAX_USER_ID_BYTES);
  const token = layout.newToken(longest, new Uint8Array(16));
  assert.equal(layout.tokenUser(token), longest);
  assert.throws(() => layout.tokenUser(`x${token}`), Invalid);
});

test('a ttl of zero is the default and negative or past ten years is rejected', () => {
  assert.equal(layout.resolveTtl(0n, 604800n), 604800n);
  assert.equal(layout.resolveTtl(5n, 604800n), 5n);
  for (const bad of [-1n, layout.MAX_TTL_SECONDS + 1n]) {
    assert.throws(() => layout.resolveTtl(bad, 604800n), Invalid, String(bad));
  }
});

test('a ttl reply reads as a lifetime', () => {
  assert.deepEqual(layout.lifetime(5n, 100n), [5n, 105n]);
  assert.deepEqual(layout.lifetime(-1n, 100n), [-1n, -1n]);
  assert.equal(layout.lifetime(-2n, 100n), null);
});

test('strings sort by code point', () => {
  assert.deepEqual(['b', '\uffff', 'a', '😀', 'ab'].sort(layout.byCodePoint), [
    'a',
    'ab',
    'b',
    '\uffff',
    '😀',
  ]);
  assert.equal(layout.byCodePoint('same', 'same'), 0);
});

test('user info is compact JSON with sorted keys, as serde_json writes it', () => {
  assert.equal(layout.encodeUser('alice', null), '{"id":"alice","detail":null}');
  assert.equal(
    layout.encodeUser('a"\n', { z: [1, { y: 'é', b: true }], a: 2.5 }),
    '{"id":"a\\"\\n","detail":{"a":2.5,"z":[1,{"b":true,"y":"é"}]}}',
  );
  assert.equal(layout.dump('\u001f'), '"\\u001f"');
});

test('control characters and white space are Unicode\'s Cc and White_Space', () => {
  for (let code = 0; code <= 0xffff; code++) {
    const c = String.fromCharCode(code);
    if (code >= 0xd800 && code <= 0xdfff) {
      continue;
    }
    const refused = (() => {
      try {
        layout.checkUserId(`a${c}`);
        return false;
      } catch (error) {
        assert.ok(error instanceof Invalid);
        return true;
      }
    })();
    assert.equal(refused, /\p{Cc}|\p{White_Space}/u.test(c), `U+${code.toString(16)}`);
  }
});

test('cursors name a place by expiry, then hash, as the default policy', () => {
  const token = `alice_${'0'.repeat(32)}`;
  assert.equal(layout.fnv1a(token), 0x3b638201f997dc88n);
  const place = layout.listPosition('1700000000', token);
  assert.equal(layout.cursor(place), '1700000000 3b638201f997dc88');
  assert.deepEqual(layout.parseCursor(layout.cursor(place)), place);
  assert.ok(layout.comparePositions(layout.listPosition('1700000001', token), place) < 0);
  assert.ok(layout.comparePositions(layout.listPosition('never', token), place) > 0);
  assert.equal(layout.parseCursor('alice_00'), null);
});
