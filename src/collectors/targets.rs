//! The "targets" group: one set of series per target of the targets file
//! (none without one). `up`, `duration` and the certificate dates carry
//! the target's own labels beside `name`, `target` and `module`; the
//! failure counters only `name` and `reason`, every reason from the first
//! scrape on, so that `increase()` sees the first failure.

use crate::encoder::{Encoder, Kind};
use crate::engine::{Snapshot, TargetSeries};
use crate::probe::check::Reason;

pub(super) fn write(s: &Snapshot, enc: &mut Encoder) {
    if !s.by_list.from_files {
        return;
    }
    let family = |enc: &mut Encoder,
                  name: &str,
                  help: &str,
                  value: &dyn Fn(&TargetSeries) -> Option<f64>| {
        let mut f = enc.family(name, help, Kind::Gauge);
        for t in &s.targets {
            if let Some(v) = value(t) {
                f.sample(&labelled(t), v);
            }
        }
    };
    family(
        enc,
        "portwarden_target_up",
        "Whether the target passed its last check (1) or failed it (0); absent before the first.",
        &|t| t.last.as_ref().map(|l| f64::from(u8::from(l.success))),
    );
    family(
        enc,
        "portwarden_target_duration_seconds",
        "How long the target's last check took.",
        &|t| t.last.as_ref().map(|l| l.seconds),
    );
    family(
        enc,
        "portwarden_target_http_status_code",
        "The HTTP status of the target's last response (after redirects).",
        &|t| t.last.as_ref()?.http_status.map(f64::from),
    );
    family(
        enc,
        "portwarden_target_tls_not_after_seconds",
        "When the first of the certificates the target presented at its last check expires, in seconds since the epoch (verified or not).",
        &|t| t.last.as_ref()?.tls.map(|d| d.not_after as f64),
    );
    family(
        enc,
        "portwarden_target_tls_not_before_seconds",
        "When the last of the certificates the target presented at its last check became valid, in seconds since the epoch.",
        &|t| t.last.as_ref()?.tls.map(|d| d.not_before as f64),
    );
    {
        let mut f = enc.family(
            "portwarden_target_udp_class",
            "What the target's last UDP check saw: open (a reply), closed (port unreachable), open|filtered (silence), unreachable; always 1.",
            Kind::Gauge,
        );
        for t in &s.targets {
            if let Some(class) = t.last.as_ref().and_then(|l| l.udp_class) {
                let mut labels = labelled(t);
                labels.push(("class", class));
                f.sample(&labels, 1.0);
            }
        }
    }
    {
        let mut f = enc.family(
            "portwarden_target_failures",
            "Failed checks of each target, by reason: refused, timeout, unreachable, dns, tls, http_status, no_match, closed, denied (every address of a hop in --probe.deny).",
            Kind::Counter,
        );
        for t in &s.targets {
            for (reason, n) in Reason::ALL.iter().zip(t.failures) {
                f.sample(
                    &[
                        ("name", t.job.target.name.as_str()),
                        ("reason", reason.as_str()),
                    ],
                    n as f64,
                );
            }
        }
    }
    super::reloads(
        enc,
        "portwarden_targets",
        s.reloads,
        "Reloads of the targets or modules file that failed (what was in force stayed).",
        "Whether the last load of the targets and modules files succeeded.",
    );
}

/// A target's labels: `name`, `target`, `module`, then its own.
fn labelled(t: &TargetSeries) -> Vec<(&str, &str)> {
    let target = &t.job.target;
    let mut labels = vec![
        ("name", target.name.as_str()),
        ("target", target.target.as_str()),
        ("module", target.module.as_str()),
    ];
    labels.extend(target.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    labels
}
