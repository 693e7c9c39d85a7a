//! The "recovery" group: each recovery action's attempts by result, its
//! escalations, and when it last tried (none without an actions file).
//! Every action's attempt counters exist from the start, at 0.

use crate::encoder::{Encoder, Kind};
use crate::engine::Snapshot;
use crate::value::time::unix_seconds;

/// Every result an attempt can have.
const RESULTS: [&str; 4] = ["success", "failed", "timeout", "dry_run"];

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    let Some(actions) = &s.recovery else {
        return;
    };
    super::reloads(
        enc,
        "portwarden_actions",
        s.actions_reloads,
        "Reloads of the actions file that failed (a broken file, or one not private): what was in force stays.",
        "Whether the actions file in force is the one on disk (1), or the last reload failed (0).",
    );
    {
        let mut f = enc.family(
            "portwarden_recovery_attempts",
            "Recovery attempts of each action, by result: success (healthy again within the cooldown), failed (the command failed, or the port stayed unhealthy), timeout (the command was killed), dry_run (--actions.dry-run: logged, not run).",
            Kind::Counter,
        );
        for (name, stats) in actions {
            for result in RESULTS {
                let n = stats.attempts.get(result).copied().unwrap_or(0);
                f.sample(&[("action", name), ("result", result)], n as f64);
            }
        }
    }
    {
        let mut f = enc.family(
            "portwarden_recovery_escalations",
            "Times an action's attempts ran out with its port still unhealthy (each sent to the webhook, when there is one).",
            Kind::Counter,
        );
        for (name, stats) in actions {
            f.sample(&[("action", name)], stats.escalations as f64);
        }
    }
    let mut f = enc.family(
        "portwarden_recovery_last_attempt_timestamp_seconds",
        "When each action last attempted a recovery, in seconds since the epoch; absent before its first.",
        Kind::Gauge,
    );
    for (name, stats) in actions {
        if let Some(at) = stats.last_attempt {
            f.sample(&[("action", name)], unix_seconds(at));
        }
    }
}
