//! portwarden keeps watch over every listening port of a Linux host.
//!
//! Data flows one way:
//!
//! ```text
//! discover (netlink sock_diag + /proc fd scan) → model::Port list → cli (ls)
//! ```
//!
//! - [`discover`]: the only module that reads /proc or talks netlink. Lists
//!   listening TCP and bound UDP sockets per network namespace, and maps each
//!   socket to the processes holding it, cheaply on refresh.
//! - [`model`]: plain data handed between stages.
//! - [`exclude`]: which owners are not worth watching.
//! - [`config`]: every flag, its environment variable and its validation.
//! - [`cli`]: one-shot commands (`ls`).

pub mod cli;
pub mod config;
pub mod discover;
pub mod error;
pub mod exclude;
pub mod model;

pub use error::{Error, Result};
