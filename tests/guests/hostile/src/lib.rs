//! A policy that misbehaves on request, for the host's limit tests:
//! `set-token` for user `loop` never returns, for `alloc` allocates without
//! bound, for `panic` panics; for any other user it issues a fixed token.
//! Every other operation is refused.

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
    generate_all,
});

use std::hint::black_box;

use dsession::session::types::{Error, IssuedToken, Settings, TokenEntry, User, UserInfo};
use exports::dsession::session::token_manage::Guest;

struct Hostile;

export!(Hostile);

fn refused<T>() -> Result<T, Error> {
    Err(Error::InvalidArgument(
        "the hostile test policy only issues tokens".into(),
    ))
}

impl Guest for Hostile {
    fn set_token(_: Settings, user_id: String, _: i64) -> Result<IssuedToken, Error> {
        match user_id.as_str() {
            "loop" => loop {
                black_box(&user_id);
            },
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "panic" => panic!("the hostile policy panics on request"),
            _ => Ok(IssuedToken {
                token: format!("{user_id}_{}", "0".repeat(32)),
                token_expire_time: 0,
            }),
        }
    }

    fn refresh_token(_: Settings, _: String, _: i64) -> Result<i64, Error> {
        refused()
    }

    fn delete_token(_: Settings, _: String) -> Result<(), Error> {
        refused()
    }

    fn check_token(_: Settings, _: String) -> Result<Option<User>, Error> {
        refused()
    }

    fn check_token_or_update_user(_: Settings, _: String, _: i64) -> Result<Option<User>, Error> {
        refused()
    }

    fn list_user_token(_: Settings, _: String) -> Result<Vec<TokenEntry>, Error> {
        refused()
    }

    fn delete_user_token(_: Settings, _: String) -> Result<(), Error> {
        refused()
    }

    fn refresh_user(_: Settings, _: Vec<String>, _: i64) -> Result<(), Error> {
        refused()
    }

    fn delete_user(_: Settings, _: String) -> Result<(), Error> {
        refused()
    }

    fn add_user(_: Settings, _: String, _: i64) -> Result<UserInfo, Error> {
        refused()
    }
}
