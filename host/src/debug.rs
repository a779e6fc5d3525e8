//! `Debug` for the types that show a few of their fields and keep the rest
//! (stores, loaders, secrets) out of logs.

use std::fmt;

/// Writes `name { field: value, .. }` with only `fields`.
pub(crate) fn some_fields(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    fields: &[(&str, &dyn fmt::Debug)],
) -> fmt::Result {
    let mut out = f.debug_struct(name);
    for (field, value) in fields {
        out.field(field, value);
    }
    out.finish_non_exhaustive()
}
