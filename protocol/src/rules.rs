//! Validity rules: which reports count.
//!
//! Every rule is a named function that returns `Ok` or the reason code of its
//! family ([`witness::Reason`], [`meter::Reason`]). Reason codes are `Copy`
//! enums with a stable [`as_str`](witness::Reason::as_str) name, used as
//! metrics labels and in invalid-report logs; a name never changes meaning once
//! released. Each family also has a `check` that runs its rules in a documented
//! order and returns the first failure, so every node reports the same reason.
//!
//! The rules are consensus-relevant: all arithmetic is integer, except the H3
//! distance whose determinism is argued in [`crate::geo`].

pub mod meter;
pub mod witness;
