//! Reading store replies: each accessor names what it read, so that a reply
//! of the wrong kind becomes `corrupt` with the command in the message.

use std::vec;

use crate::{Error, Reply};

impl Reply {
    /// The number of an `integer` reply (`DEL`, `EXISTS`, `TTL`, `EXPIRE`,
    /// `HSET`, `HDEL`, `HEXISTS`).
    pub fn integer(&self, what: &str) -> Result<i64, Error> {
        match self {
            Reply::Integer(n) => Ok(*n),
            other => Err(other.unexpected(what)),
        }
    }

    /// The value of a `text` reply, None for `nil` (`GET`, `GETEX`, `HGET`).
    pub fn text(self, what: &str) -> Result<Option<String>, Error> {
        match self {
            Reply::Text(text) => Ok(Some(text)),
            Reply::Nil => Ok(None),
            other => Err(other.unexpected(what)),
        }
    }

    /// Whether a `SET` wrote: `ok`, or `nil` when its condition kept it
    /// from writing.
    pub fn written(&self, what: &str) -> Result<bool, Error> {
        match self {
            Reply::Ok => Ok(true),
            Reply::Nil => Ok(false),
            other => Err(other.unexpected(what)),
        }
    }

    /// The fields and values of a `pairs` reply (`HGETALL`).
    pub fn pairs(self, what: &str) -> Result<Vec<(String, String)>, Error> {
        match self {
            Reply::Pairs(pairs) => Ok(pairs),
            other => Err(other.unexpected(what)),
        }
    }

    fn unexpected(&self, what: &str) -> Error {
        Error::Corrupt(format!("unexpected store reply for {what}: {self:?}"))
    }
}

/// The replies to one call's commands, in their order.
#[derive(Debug)]
pub struct Replies(vec::IntoIter<Reply>);

impl Replies {
    /// The next `N` replies; `corrupt` when the store sent fewer.
    pub fn next_n<const N: usize>(&mut self) -> Result<[Reply; N], Error> {
        let mut taken = Vec::with_capacity(N);
        taken.extend(self.0.by_ref().take(N));
        taken
            .try_into()
            .map_err(|_| Error::Corrupt("store returned too few replies".into()))
    }

    /// The reply to the command at `index`; `corrupt` when there is none.
    pub fn at(mut self, index: usize) -> Result<Reply, Error> {
        self.0
            .nth(index)
            .ok_or_else(|| Error::Corrupt(format!("store returned no reply #{index}")))
    }
}

impl From<Vec<Reply>> for Replies {
    fn from(replies: Vec<Reply>) -> Self {
        Self(replies.into_iter())
    }
}

impl Iterator for Replies {
    type Item = Reply;

    fn next(&mut self) -> Option<Reply> {
        self.0.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_of_another_kind_is_corrupt_and_names_the_command() {
        assert_eq!(Reply::Integer(3).integer("TTL token"), Ok(3));
        assert_eq!(Reply::Nil.text("GET token"), Ok(None));
        let Err(Error::Corrupt(message)) = Reply::Ok.pairs("HGETALL index") else {
            panic!("an ok reply read as pairs");
        };
        assert_eq!(
            message,
            "unexpected store reply for HGETALL index: Reply::Ok"
        );
    }

    #[test]
    fn too_few_replies_are_corrupt() {
        let mut replies = Replies::from(vec![Reply::Ok, Reply::Nil, Reply::Integer(1)]);
        assert_eq!(replies.next_n(), Ok([Reply::Ok, Reply::Nil]));
        assert!(replies.next_n::<2>().is_err());
        assert_eq!(Replies::from(vec![Reply::Ok]).at(0), Ok(Reply::Ok));
        assert!(Replies::from(vec![Reply::Ok]).at(1).is_err());
    }
}
