"""The layout's rules, as guest/src/layout.rs tests them."""

import unittest

import layout
from layout import Invalid, Layout


class LayoutTest(unittest.TestCase):
    def test_keys_follow_gosession_with_underscores_in_prefixes_replaced(self):
        keys = Layout("gosession_token", "gosession-user", 604800, 2592000)
        self.assertEqual(keys.token_key("a_b_00"), "gosession-token_a_b_00")
        self.assertEqual(keys.index_key("a_b"), "gosession-token_a_b")
        self.assertEqual(keys.user_key("a_b"), "gosession-user_a_b")
        self.assertEqual(keys.index_ttl_for(10), 2592000)
        self.assertEqual(keys.index_ttl_for(layout.MAX_TTL_SECONDS), layout.MAX_TTL_SECONDS)

    def test_bad_settings_are_rejected(self):
        for args in [("", "u", 1, 1), ("t", "", 1, 1), ("t", "u", 0, 1), ("t", "u", 1, -1)]:
            with self.assertRaises(Invalid):
                Layout(*args)

    def test_user_ids_that_end_like_a_token_or_a_header_cannot_carry_are_rejected(self):
        for bad in [
            "",
            "x" * (layout.MAX_USER_ID_BYTES + 1),
            "alice_0123456789abcdef0123456789abcdef",
            "alice_0123456789ABCDEF0123456789ABCDEF",
            "a\rb",
            "a\nb",
            "a\0b",
            " alice",
            "alice ",
            "alice\t",
            "\x85x",
        ]:
            with self.assertRaises(Invalid, msg=repr(bad)):
                layout.check_user_id(bad)
        for good in [
            "alice_bob",
            "0123456789abcdef0123456789abcdef",
            "a",
            "józef kowalski",
            "é" * 300,
        ]:
            layout.check_user_id(good)

    def test_token_user_is_the_part_before_the_last_underscore(self):
        token = layout.new_token("a_b", bytes([0xAB] * 16))
        self.assertEqual(token, "a_b_" + "ab" * 16)
        self.assertEqual(layout.token_user(token), "a_b")
        self.assertIsNone(layout.token_user("nounderscore"))
        self.assertIsNone(layout.token_user("_" + "ab" * 16))
        self.assertIsNone(layout.token_user("a_" + "AB" * 16))
        self.assertIsNone(layout.token_user("a_abc"))
        with self.assertRaises(Invalid):
            layout.token_user("")

    def test_tokens_of_user_ids_up_to_the_bound_are_read_and_longer_ones_rejected(self):
        longest = "x" * layout.MAX_USER_ID_BYTES
        token = layout.new_token(longest, bytes(16))
        self.assertEqual(layout.token_user(token), longest)
        with self.assertRaises(Invalid):
            layout.token_user("x" + token)

    def test_a_ttl_of_zero_is_the_default_and_negative_or_past_ten_years_is_rejected(self):
        self.assertEqual(layout.resolve_ttl(0, 604800), 604800)
        self.assertEqual(layout.resolve_ttl(5, 604800), 5)
        for bad in [-1, layout.MAX_TTL_SECONDS + 1]:
            with self.assertRaises(Invalid):
                layout.resolve_ttl(bad, 604800)

    def test_a_ttl_reply_reads_as_a_lifetime(self):
        self.assertEqual(layout.lifetime(5, 100), (5, 105))
        self.assertEqual(layout.lifetime(-1, 100), (-1, -1))
        self.assertIsNone(layout.lifetime(-2, 100))


    def test_cursors_name_a_place_by_expiry_then_hash_as_the_default_policy(self):
        token = "alice_" + "0" * 32
        self.assertEqual(layout.fnv1a(token), 0x3B638201F997DC88)
        place = layout.list_position("1700000000", token)
        self.assertEqual(layout.cursor(place), "1700000000 3b638201f997dc88")
        self.assertEqual(layout.parse_cursor(layout.cursor(place)), place)
        self.assertLess(layout.list_position("1700000001", token), place)
        self.assertGreater(layout.list_position("never", token), place)
        self.assertIsNone(layout.parse_cursor("alice_00"))


if __name__ == "__main__":
    unittest.main()
