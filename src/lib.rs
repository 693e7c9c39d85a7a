//! portwarden keeps watch over every listening port of a Linux host.
//!
//! Data flows one way:
//!
//! ```text
//! discover (netlink sock_diag + /proc fd scan) → model::Port list → cli (ls)
//!     ↘ engine: discovery thread + probe rounds → messages → state owner
//!         → immutable Snapshot → collectors → encoder → server
//! ```
//!
//! - [`discover`]: the only module that reads /proc or talks netlink. Lists
//!   listening TCP and bound UDP sockets per network namespace, and maps each
//!   socket to the processes holding it, cheaply on refresh.
//! - [`model`]: plain data handed between stages.
//! - [`exclude`]: which owners are not worth watching.
//! - [`value`]: values and units read one way everywhere (a leaf).
//! - [`config`]: every flag, its environment variable and its validation.
//! - [`cli`]: one-shot commands (`ls`).
//! - [`probe`]: TCP and HTTP checks; a failed check is data, never an error.
//! - [`engine`]: the background engine that discovers, probes and
//!   publishes snapshots, its threads and tasks supervised.
//! - [`collectors`]: a snapshot as metric families, one file per group.
//! - [`encoder`]: metric families as text 0.0.4 or OpenMetrics.
//! - [`conflicts`]: two programs on one port number, and stale owners.
//! - [`events`]: port events (a pass compared with the last) and their outputs.
//! - [`why`]: the "port unreachable" fault tree (`portwarden why`), pure.
//! - [`server`]: `/metrics`, the status page and its API, `/probe`, graceful shutdown.

pub mod actions;
pub mod baseline;
pub mod bounded;
pub mod cli;
pub mod collectors;
pub mod config;
pub mod conflicts;
pub mod counters;
pub mod discover;
pub mod encoder;
pub mod engine;
pub mod error;
pub mod events;
pub mod exclude;
pub mod exposure;
pub mod health;
pub mod model;
pub mod modules;
pub mod pem;
pub mod probe;
pub mod reload;
pub mod server;
pub mod targets;
pub mod text;
pub mod value;
pub mod why;

pub use error::{Error, Result};
