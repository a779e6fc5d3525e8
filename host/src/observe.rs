//! What the library reports as it works, for metrics: every operation with
//! its outcome and duration, every user loader call, every policy reload.
//!
//! The library keeps no metrics registry of its own; an [`Observer`] given
//! to [`crate::SessionManagerBuilder::observer`] turns these events into
//! whatever the embedder exports (the service feeds Prometheus). Every
//! label is one of a closed set: [`Operation::ALL`], [`Outcome::ALL`],
//! [`LoadOutcome::LABELS`], [`crate::loader::LoadFailure::REASONS`].

use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// A token operation, as metrics and spans name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`crate::SessionManager::set_token`].
    SetToken,
    /// [`crate::SessionManager::refresh_token`].
    RefreshToken,
    /// [`crate::SessionManager::delete_token`].
    DeleteToken,
    /// [`crate::SessionManager::check_token`].
    CheckToken,
    /// [`crate::SessionManager::check_token_or_update_user`].
    CheckTokenOrUpdateUser,
    /// [`crate::SessionManager::list_user_token`].
    ListUserToken,
    /// [`crate::SessionManager::delete_user_token`].
    DeleteUserToken,
    /// [`crate::SessionManager::refresh_user`].
    RefreshUser,
    /// [`crate::SessionManager::delete_user`].
    DeleteUser,
    /// [`crate::SessionManager::add_user`].
    AddUser,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Self; 10] = [
        Self::SetToken,
        Self::RefreshToken,
        Self::DeleteToken,
        Self::CheckToken,
        Self::CheckTokenOrUpdateUser,
        Self::ListUserToken,
        Self::DeleteUserToken,
        Self::RefreshUser,
        Self::DeleteUser,
        Self::AddUser,
    ];

    /// The operation's snake_case name, gosession's method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SetToken => "set_token",
            Self::RefreshToken => "refresh_token",
            Self::DeleteToken => "delete_token",
            Self::CheckToken => "check_token",
            Self::CheckTokenOrUpdateUser => "check_token_or_update_user",
            Self::ListUserToken => "list_user_token",
            Self::DeleteUserToken => "delete_user_token",
            Self::RefreshUser => "refresh_user",
            Self::DeleteUser => "delete_user",
            Self::AddUser => "add_user",
        }
    }
}

/// How one token operation ended: `ok`, or the kind of its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It succeeded (a "not valid" answer included).
    Ok,
    /// It failed with an error of this kind.
    Failed(ErrorKind),
}

impl Outcome {
    /// Every outcome: `Ok`, then every [`ErrorKind`].
    pub const ALL: [Self; ErrorKind::ALL.len() + 1] = {
        let mut all = [Self::Ok; ErrorKind::ALL.len() + 1];
        let mut i = 0;
        while i < ErrorKind::ALL.len() {
            all[i + 1] = Self::Failed(ErrorKind::ALL[i]);
            i += 1;
        }
        all
    };

    /// The outcome of `result`.
    pub fn of<T>(result: &Result<T, Error>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(error) => Self::Failed(error.kind()),
        }
    }

    /// `ok`, or the error's [`ErrorKind::code`]: one of a closed set, for a
    /// metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed(kind) => kind.code(),
        }
    }
}

/// What one call to the user loader gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The user's detail.
    Detail,
    /// The user has none.
    NoDetail,
    /// The load failed, for this [`crate::loader::LoadFailure::reason`]
    /// (`other` for an embedder's own error).
    Error(&'static str),
}

impl LoadOutcome {
    /// Every [`Self::label`].
    pub const LABELS: [&'static str; 3] = ["detail", "no_detail", "error"];

    /// `detail`, `no_detail` or `error`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Detail => "detail",
            Self::NoDetail => "no_detail",
            Self::Error(_) => "error",
        }
    }
}

/// Receives the library's events. Every method has an empty default, so an
/// observer implements only what it exports. Methods run on the hot path:
/// keep them to a counter increment.
pub trait Observer: Send + Sync + 'static {
    /// One token operation finished.
    fn operation(&self, operation: Operation, outcome: Outcome, elapsed: Duration) {
        let _ = (operation, outcome, elapsed);
    }

    /// One call to the wrapped user loader finished (coalesced waits and
    /// remembered answers are not calls).
    fn loader_call(&self, outcome: LoadOutcome, elapsed: Duration) {
        let _ = (outcome, elapsed);
    }

    /// A load waited for another load of the same user.
    fn loader_coalesced_wait(&self) {}

    /// A load was answered "no detail" from memory.
    fn loader_no_detail_hit(&self) {}

    /// A check was answered without detail because the loader failed and
    /// the caller asked for that (see [`crate::Authenticator::without_detail_on_loader_error`]).
    fn loader_fallback(&self) {}

    /// A policy reload took effect (`accepted`) or was refused, the old
    /// policy serving on.
    fn policy_reload(&self, accepted: bool) {
        let _ = accepted;
    }
}

/// The observer of a manager built without one.
#[derive(Debug)]
pub(crate) struct Unobserved;

impl Observer for Unobserved {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_are_ok_and_the_error_codes() {
        let labels: Vec<&str> = Outcome::ALL.iter().map(|o| o.label()).collect();
        let expected: Vec<&str> = std::iter::once("ok").chain(Error::CODES).collect();
        assert_eq!(labels, expected);
        assert_eq!(
            Outcome::of::<()>(&Err(Error::Store("down".into()))),
            Outcome::Failed(ErrorKind::Store)
        );
    }
}
