//! A policy that misbehaves on request, for the host's limit tests:
//! `set-token` for user `loop` never returns, for `alloc` allocates without
//! bound, for `panic` panics; for any other user it issues a fixed token.
//! Every other operation is refused.
//!
//! It also keeps state in statics, which a policy must never rely on, so
//! that tests can see which calls share an instance: each `set-token`
//! returns, as its expiry, how many calls this instance has served; `taint`
//! marks the instance and then panics; `peek` returns 1 as its expiry when
//! the instance is marked; `hoard` keeps 4 MiB for the instance's life.

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use dsession_policy_sdk::{
    Error, IssuedToken, PageRequest, Policy, SelfCheckReport, SessionAttributes, Settings,
    TokenPage, User, UserCache, UserDetail, UserInfo,
};

/// Takes every argument as it comes: the limits under test are the host's.
struct Hostile;

dsession_policy_sdk::export!(Hostile);

/// Calls this instance has served.
static CALLS: AtomicI64 = AtomicI64::new(0);
/// Set by `taint` just before it traps.
static TAINTED: AtomicBool = AtomicBool::new(false);
/// What `hoard` keeps.
static HOARD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn refused<T>() -> Result<T, Error> {
    Err(Error::InvalidArgument(
        "the hostile test policy only issues tokens".into(),
    ))
}

impl UserCache for Hostile {
    fn user_key(&self, user_id: &str) -> String {
        user_id.to_owned()
    }

    fn user_loader(&self) -> bool {
        false
    }
}

impl Policy for Hostile {
    fn new(_: &Settings) -> Result<Self, Error> {
        Ok(Self)
    }

    fn self_check(&self) -> Result<SelfCheckReport, Error> {
        Ok(SelfCheckReport {
            probe_token: "probe".into(),
            single_mode: false,
            max_sessions: None,
        })
    }

    fn ttl(&self, requested: i64) -> Result<i64, Error> {
        Ok(requested)
    }

    fn check_user_id(&self, _: &str) -> Result<(), Error> {
        Ok(())
    }

    fn set_token(
        &self,
        user_id: &str,
        _: i64,
        _: &SessionAttributes,
    ) -> Result<IssuedToken, Error> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let issued = |token_expire_time| {
            Ok(IssuedToken {
                token: format!("{user_id}_{}", "0".repeat(32)),
                token_expire_time,
            })
        };
        match user_id {
            "loop" => loop {
                black_box(user_id);
            },
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "panic" => panic!("the hostile policy panics on request"),
            "taint" => {
                TAINTED.store(true, Ordering::SeqCst);
                panic!("the hostile policy tainted its instance")
            }
            "peek" => issued(i64::from(TAINTED.load(Ordering::SeqCst))),
            "hoard" => {
                HOARD
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(vec![1; 4 << 20]);
                issued(calls)
            }
            _ => issued(calls),
        }
    }

    fn refresh_token(&self, _: &str, _: i64) -> Result<i64, Error> {
        refused()
    }

    fn delete_token(&self, _: &str) -> Result<(), Error> {
        refused()
    }

    fn check_token(&self, _: &str, _: UserDetail) -> Result<Option<User>, Error> {
        refused()
    }

    fn list_user_token(&self, _: &str, _: &PageRequest) -> Result<TokenPage, Error> {
        refused()
    }

    fn delete_user_token(&self, _: &str) -> Result<(), Error> {
        refused()
    }

    fn refresh_user(&self, _: &[String], _: i64) -> Result<(), Error> {
        refused()
    }

    fn delete_user(&self, _: &str) -> Result<(), Error> {
        refused()
    }

    fn add_user(&self, _: &str, _: i64) -> Result<UserInfo, Error> {
        refused()
    }
}
