//! Exposure: whether each listening socket can be reached from other
//! hosts, by the namespace's firewall ruleset ([`ruleset`], read by the
//! platform's discovery) and its evaluation for a new connection from
//! outside ([`eval`]).

pub mod eval;
mod index;
mod memo;
pub mod nat;
pub mod ranges;
pub mod ruleset;
mod xt;

pub use eval::{Evaluator, Exposure, Probe, RuleRef};
pub use memo::Memo;

use std::sync::Arc;

/// A namespace's firewall as discovery found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firewall {
    Rules(Arc<ruleset::Ruleset>),
    /// Not read, and why (`no permission (needs CAP_NET_ADMIN)`).
    Unreadable(Arc<str>),
}
