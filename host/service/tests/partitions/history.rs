//! The history of a run and its checker: the Jepsen "set" model, sized for
//! a session store.
//!
//! Every client operation is logged with its invoke and complete times and
//! its outcome. After the heal the checker reads every issued token once
//! more and decides, for each, what the history allows:
//! - a token whose login was acknowledged, and that nothing may have
//!   revoked since it was invoked, must be valid (else it is **lost**);
//! - a token whose revoke, or whose user's revoke-all invoked after its
//!   login completed, was acknowledged must be invalid (else it is
//!   **revived**);
//! - any other token is indeterminate: an operation that could have
//!   revoked it failed or timed out, or overlapped its login.
//!
//! With a session limit, no user may have more valid tokens than the
//! limit.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Login,
    Check,
    Revoke,
    RevokeAll,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged; for a check, whether the token was valid.
    Ok { valid: bool },
    /// Refused with the service's JSON error: its HTTP status and code.
    Failed { status: u16, code: String },
    /// No answer within the client's timeout, or an answer that is not the
    /// documented JSON error: it may or may not have happened.
    Unknown { why: String },
}

/// One operation, as a client saw it.
#[derive(Debug, Clone)]
pub struct Op {
    pub kind: Kind,
    pub user: String,
    /// The token issued (a login) or used.
    pub token: Option<String>,
    /// Which dsession instance served it.
    pub node: usize,
    pub invoke: Instant,
    pub complete: Instant,
    pub outcome: Outcome,
}

impl Op {
    fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok { .. })
    }
}

/// What the checker found.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    /// Acknowledged logins, revokes and revoke-alls.
    pub acknowledged: usize,
    /// Acknowledged logins whose token, never revoked, is invalid.
    pub lost: usize,
    /// Tokens an acknowledged revoke covers that are valid again.
    pub revived: usize,
    /// Tokens whose state the history leaves open.
    pub indeterminate: usize,
    /// Operations that timed out or got no documented answer.
    pub unknown: usize,
    /// Users with more valid tokens than the limit.
    pub over_limit: usize,
    /// Checks that answered "invalid" for a token that must be valid.
    pub false_invalid: usize,
    /// Refusals by HTTP status and error code, and unknown outcomes by why.
    pub errors: BTreeMap<String, usize>,
    /// The longest any operation took.
    pub slowest: Duration,
}

/// Checks `history` against `valid`, each issued token's validity read
/// after the heal, and `limit`, the sessions a user may hold.
pub fn check(history: &[Op], valid: &HashMap<String, bool>, limit: Option<usize>) -> Verdict {
    let mut verdict = Verdict::default();
    let mut by_user: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in history {
        by_user.entry(op.user.as_str()).or_default().push(op);
        verdict.slowest = verdict.slowest.max(op.complete - op.invoke);
        match &op.outcome {
            Outcome::Ok { .. } if op.kind != Kind::Check => verdict.acknowledged += 1,
            Outcome::Ok { .. } => {}
            Outcome::Failed { status, code } => {
                *verdict
                    .errors
                    .entry(format!("{status} {code}"))
                    .or_default() += 1;
            }
            Outcome::Unknown { why } => {
                verdict.unknown += 1;
                *verdict.errors.entry(format!("unknown: {why}")).or_default() += 1;
            }
        }
    }
    for ops in by_user.values() {
        let mut valid_now = 0;
        for login in ops.iter().filter(|op| op.kind == Kind::Login && op.ok()) {
            let token = login
                .token
                .as_deref()
                .expect("an acknowledged login has a token");
            let is_valid = valid[token];
            valid_now += usize::from(is_valid);
            match expected(login, token, ops, limit.is_some()) {
                Some(true) if !is_valid => verdict.lost += 1,
                Some(false) if is_valid => verdict.revived += 1,
                Some(true) => {
                    verdict.false_invalid += ops
                        .iter()
                        .filter(|op| {
                            op.kind == Kind::Check
                                && op.token.as_deref() == Some(token)
                                && op.outcome == Outcome::Ok { valid: false }
                        })
                        .count();
                }
                Some(false) => {}
                None => verdict.indeterminate += 1,
            }
        }
        if limit.is_some_and(|limit| valid_now > limit) {
            verdict.over_limit += 1;
        }
    }
    verdict
}

/// What the history says `token`, issued by `login`, must be now: valid,
/// invalid, or either (None). With `limited`, another login of the user
/// may have evicted it.
fn expected(login: &Op, token: &str, ops: &[&Op], limited: bool) -> Option<bool> {
    let revokes = |op: &&&Op| match op.kind {
        Kind::Revoke => op.token.as_deref() == Some(token),
        Kind::RevokeAll => true,
        Kind::Login | Kind::Check => false,
    };
    let revoked = ops
        .iter()
        .filter(revokes)
        .any(|op| op.ok() && (op.kind == Kind::Revoke || op.invoke >= login.complete));
    if revoked {
        return Some(false);
    }
    let maybe_revoked = ops
        .iter()
        .filter(revokes)
        .any(|op| op.complete >= login.invoke);
    let maybe_evicted = limited
        && ops.iter().any(|op| {
            op.kind == Kind::Login
                && op.token.as_deref() != Some(token)
                && op.complete >= login.invoke
        });
    (!maybe_revoked && !maybe_evicted).then_some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: Kind, token: &str, at: (u64, u64), outcome: Outcome) -> Op {
        let start = *START;
        Op {
            kind,
            user: "u".into(),
            token: (!token.is_empty()).then(|| token.to_owned()),
            node: 0,
            invoke: start + Duration::from_millis(at.0),
            complete: start + Duration::from_millis(at.1),
            outcome,
        }
    }

    static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

    const OK: Outcome = Outcome::Ok { valid: true };

    fn unknown() -> Outcome {
        Outcome::Unknown {
            why: "timeout".into(),
        }
    }

    fn state(pairs: &[(&str, bool)]) -> HashMap<String, bool> {
        pairs.iter().map(|(t, v)| ((*t).to_owned(), *v)).collect()
    }

    #[test]
    fn a_lost_login_and_a_revived_token_are_found() {
        let history = [
            op(Kind::Login, "a", (0, 1), OK),
            op(Kind::Login, "b", (2, 3), OK),
            op(Kind::Revoke, "b", (4, 5), OK),
        ];
        let verdict = check(&history, &state(&[("a", false), ("b", true)]), None);
        assert_eq!(
            (verdict.lost, verdict.revived, verdict.acknowledged),
            (1, 1, 3)
        );
    }

    #[test]
    fn a_revoke_that_timed_out_leaves_the_token_open_and_is_counted_apart() {
        let history = [
            op(Kind::Login, "a", (0, 1), OK),
            op(Kind::Revoke, "a", (2, 3), unknown()),
        ];
        for valid in [true, false] {
            let verdict = check(&history, &state(&[("a", valid)]), None);
            assert_eq!((verdict.lost, verdict.revived), (0, 0));
            assert_eq!((verdict.indeterminate, verdict.unknown), (1, 1));
        }
    }

    #[test]
    fn a_revoke_all_covers_only_logins_completed_before_it_began() {
        let history = [
            op(Kind::Login, "before", (0, 1), OK),
            op(Kind::Login, "overlapping", (2, 6), OK),
            op(Kind::RevokeAll, "", (5, 7), OK),
        ];
        let verdict = check(
            &history,
            &state(&[("before", true), ("overlapping", true)]),
            None,
        );
        assert_eq!((verdict.revived, verdict.indeterminate), (1, 1));
    }

    #[test]
    fn with_a_limit_a_later_login_may_evict_and_the_limit_is_checked() {
        let history = [
            op(Kind::Login, "a", (0, 1), OK),
            op(Kind::Login, "b", (2, 3), OK),
        ];
        let verdict = check(&history, &state(&[("a", false), ("b", true)]), Some(1));
        assert_eq!(
            (verdict.lost, verdict.indeterminate, verdict.over_limit),
            (0, 1, 0)
        );
        let verdict = check(&history, &state(&[("a", true), ("b", true)]), Some(1));
        assert_eq!(verdict.over_limit, 1);
    }

    #[test]
    fn a_check_answering_invalid_for_a_token_that_must_be_valid_is_counted() {
        let history = [
            op(Kind::Login, "a", (0, 1), OK),
            op(Kind::Check, "a", (2, 3), Outcome::Ok { valid: false }),
            op(Kind::Check, "a", (4, 5), OK),
        ];
        let verdict = check(&history, &state(&[("a", true)]), None);
        assert_eq!((verdict.false_invalid, verdict.lost), (1, 0));
    }
}
