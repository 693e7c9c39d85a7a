//! What the exporter as a Windows service shares with every OS: how long
//! it tells the service control manager a stop may take, and the shape of
//! the exporter it runs. The SCM's calls are in `windows/service.rs`; on
//! Linux, `os::service` says the systemd unit does this.

use std::time::Duration;

/// The wait hint given to the SCM on stop or shutdown: the exporter stops
/// its checks, answers the requests in flight and exits well within it.
pub const STOP_WAIT_HINT: Duration = Duration::from_secs(10);

/// The exporter, run until [`super::os::terminated`] resolves; its error
/// in words.
pub type Serve = Box<dyn FnOnce() -> Result<(), String> + Send>;
