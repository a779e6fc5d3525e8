//! The policy's own settings, the operator's `[policy.config]` table, as
//! `wasi:config/store` hands them over.

use crate::Error;
use crate::bindings::wasi::config::store;

/// Every key and value of `[policy.config]`; an invalid argument when the
/// host cannot say. Values never change within an instance, so a policy
/// may read them once per instance.
pub fn get_all() -> Result<Vec<(String, String)>, Error> {
    store::get_all()
        .map_err(|e| Error::InvalidArgument(format!("cannot read the policy config: {e:?}")))
}
