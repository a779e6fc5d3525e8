//! Every operation, written once and run on every store.
//!
//! Each concern's tests are in a file of their own; they are registered
//! here, so that a test is `behaviour::memory::name` (or `redis`,
//! `sentinel`), and `behaviour::hardened::memory::name` on the hardened
//! policy.

mod events;
mod expiry;
mod input;
mod tokens;
mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dsession::UserLoader;
use serde_json::json;

use crate::support::{Env, on_every_store};

use events::*;
use expiry::*;
use input::*;
use tokens::*;
use users::*;

/// The tokens in a user's index, sorted.
pub(super) async fn index_tokens(env: &Env, user: &str) -> Vec<String> {
    let index = env.hash(&format!("gosession-token_{user}")).await;
    index.into_iter().map(|(token, _)| token).collect()
}

/// A loader that counts its calls and returns `{"name": id}`.
pub(super) fn counting_loader() -> (impl UserLoader, Arc<AtomicUsize>) {
    let loads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&loads);
    let loader = move |id: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Some(json!({ "name": id }))))
    };
    (loader, loads)
}

on_every_store!(
    set_token_issues_a_token_that_checks_valid,
    tokens_are_never_reused,
    ttl_zero_means_the_default_expiry,
    refresh_extends_a_live_token,
    refresh_never_revives_a_revoked_token,
    refresh_of_an_unknown_or_malformed_token_is_not_found,
    delete_token_is_idempotent,
    check_of_a_dead_token_is_none_and_prunes_its_index_entry,
    check_of_a_malformed_token_is_not_valid,
    check_token_or_update_user_loads_once_then_uses_the_cache,
    without_a_loader_detail_comes_only_from_the_cache,
    a_failing_loader_is_a_loader_error_never_not_valid,
    a_null_detail_from_the_loader_is_no_detail,
    list_user_token_lists_live_tokens_and_prunes_dead_entries,
    delete_user_token_revokes_every_token_of_that_user_only,
    add_refresh_and_delete_user_manage_the_user_info_cache,
    without_a_loader_add_and_refresh_user_write_nothing_and_say_why,
    a_token_whose_index_entry_is_gone_is_not_valid_and_not_refreshed,
    tokens_of_long_user_ids_work_up_to_the_bound_and_longer_is_an_error,
    ids_a_header_cannot_carry_are_rejected_at_creation,
    a_token_is_valid_until_its_key_expires_even_with_one_second_left,
    a_key_of_the_wrong_type_is_corrupt_data_not_an_outage,
    user_ids_may_contain_underscores,
    bad_input_gets_a_clear_error_and_writes_nothing,
    bad_settings_are_an_invalid_argument,
    single_mode_keeps_only_the_newest_token,
    an_expired_token_is_invalid_unlisted_and_pruned,
    set_token_prunes_expired_entries_so_the_index_stays_small,
    the_index_outlives_its_longest_token_and_never_shrinks,
    configured_prefixes_are_used_with_underscores_replaced,
    attributes_given_at_login_are_listed_with_the_session,
    attributes_past_their_bounds_are_refused_by_field_and_write_nothing,
    many_sessions_are_listed_page_by_page_newest_first_each_once,
    each_change_is_recorded_as_an_event_naming_its_session,
    a_refresh_or_revoke_of_a_dead_token_records_what_happened,
    without_record_events_nothing_is_recorded,
    single_mode_records_the_eviction_of_each_older_token,
    events_of_many_users_are_read_as_one_stream_in_order,
);

/// The same behaviour on the hardened policy, where it fits: the tests
/// that read gosession's keys, its 32-hex tokens or listed tokens are the
/// default policy's alone (the hardened policy stores no token to list).
/// Its one hash tag per user lets it run on a Redis Cluster too.
mod hardened {
    use super::*;

    on_every_store!(
        tokens_are_never_reused,
        refresh_never_revives_a_revoked_token,
        refresh_of_an_unknown_or_malformed_token_is_not_found,
        delete_token_is_idempotent,
        check_of_a_malformed_token_is_not_valid,
        a_failing_loader_is_a_loader_error_never_not_valid,
        a_null_detail_from_the_loader_is_no_detail,
        delete_user_token_revokes_every_token_of_that_user_only,
        without_a_loader_add_and_refresh_user_write_nothing_and_say_why,
        ids_a_header_cannot_carry_are_rejected_at_creation,
        a_token_is_valid_until_its_key_expires_even_with_one_second_left,
        attributes_given_at_login_are_listed_with_the_session,
        attributes_past_their_bounds_are_refused_by_field_and_write_nothing,
        many_sessions_are_listed_page_by_page_newest_first_each_once,
        each_change_is_recorded_as_an_event_naming_its_session,
        a_refresh_or_revoke_of_a_dead_token_records_what_happened,
        without_record_events_nothing_is_recorded,
        single_mode_records_the_eviction_of_each_older_token,
        events_of_many_users_are_read_as_one_stream_in_order;
        policy = crate::support::hardened_policy, cluster
    );
}
