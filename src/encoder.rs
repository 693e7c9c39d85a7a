//! The encoder: metric families written as Prometheus text 0.0.4 by
//! default, OpenMetrics 1.0 when the scraper asks; the collectors decide
//! what is written.
//!
//! Our own small encoder rather than `prometheus-client`'s: that crate writes
//! OpenMetrics only, and the plugin we replace (and every dashboard built on
//! it) is scraped as text 0.0.4. Encoding is pure CPU over data already in
//! memory: a scrape never waits on I/O.

use std::fmt::Write as _;
use std::io::Write as _;

use flate2::write::GzEncoder;

/// Text kept before it is handed to the compressor: a gzipped exposition
/// is never held whole in plain text.
const SPILL: usize = 64 * 1024;

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Picks the format an `Accept` header prefers: OpenMetrics when it is
    /// listed with a higher (or equal) weight than plain text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best = (Format::Text, -1.0f32);
        for item in accept.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" | "*/*" => Format::Text,
                _ => continue,
            };
            let better = q > best.1 || (q == best.1 && format == Format::OpenMetrics);
            if better && q > 0.0 {
                best = (format, q);
            }
        }
        best.0
    }
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// Writes metric families in one format, as text or straight into gzip.
pub struct Encoder {
    format: Format,
    out: String,
    gzip: Option<GzEncoder<Vec<u8>>>,
}

impl Encoder {
    pub fn new(format: Format) -> Self {
        Encoder {
            format,
            out: String::with_capacity(SPILL),
            gzip: None,
        }
    }

    /// An encoder whose text goes through gzip as it is written: with
    /// 10,000 ports the plain text is tens of megabytes, its gzip a few
    /// hundred kilobytes.
    pub fn gzip(format: Format) -> Self {
        Encoder {
            gzip: Some(GzEncoder::new(
                Vec::with_capacity(SPILL),
                flate2::Compression::fast(),
            )),
            ..Encoder::new(format)
        }
    }

    /// Starts a family. For counters `name` is without `_total`.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> Family<'_> {
        let (type_name, kind_word) = match (self.format, kind) {
            (Format::Text, Kind::Counter) => (format!("{name}_total"), "counter"),
            (_, Kind::Counter) => (name.to_string(), "counter"),
            (_, Kind::Gauge) => (name.to_string(), "gauge"),
            (_, Kind::Histogram) => (name.to_string(), "histogram"),
        };
        let _ = writeln!(
            self.out,
            "# HELP {type_name} {}",
            escape_help(help, self.format)
        );
        let _ = writeln!(self.out, "# TYPE {type_name} {kind_word}");
        Family {
            name: name.to_string(),
            kind,
            out: &mut self.out,
            gzip: &mut self.gzip,
        }
    }

    /// A family with one label: one sample per (label value, value).
    pub fn by_label<'v>(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        label: &str,
        samples: impl IntoIterator<Item = (&'v str, f64)>,
    ) {
        let mut f = self.family(name, help, kind);
        for (value, v) in samples {
            f.sample(&[(label, value)], v);
        }
    }

    /// Ends the exposition and returns it (gzipped, from [`Encoder::gzip`]).
    pub fn finish(mut self) -> Vec<u8> {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        match self.gzip {
            None => self.out.into_bytes(),
            // Writing to a Vec cannot fail.
            Some(mut z) => {
                let _ = z.write_all(self.out.as_bytes());
                z.finish().unwrap_or_default()
            }
        }
    }
}

/// One family being written.
pub struct Family<'a> {
    name: String,
    kind: Kind,
    out: &'a mut String,
    gzip: &'a mut Option<GzEncoder<Vec<u8>>>,
}

impl Family<'_> {
    /// Hands the text written so far to gzip, once there is enough of it.
    fn spill(&mut self) {
        if self.out.len() >= SPILL
            && let Some(z) = self.gzip.as_mut()
        {
            let _ = z.write_all(self.out.as_bytes());
            self.out.clear();
        }
    }

    /// A gauge or counter sample.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let suffix = if self.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        write_sample(self.out, &self.name, suffix, labels, None, value);
        self.spill();
    }

    /// A histogram: cumulative bucket counts by upper bound, sum and count.
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        for &(le, n) in buckets {
            write_sample(self.out, &self.name, "_bucket", labels, Some(le), n as f64);
        }
        write_sample(
            self.out,
            &self.name,
            "_bucket",
            labels,
            Some(f64::INFINITY),
            count as f64,
        );
        write_sample(self.out, &self.name, "_sum", labels, None, sum);
        write_sample(self.out, &self.name, "_count", labels, None, count as f64);
        self.spill();
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<f64>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        if let Some(le) = le {
            if !first {
                out.push(',');
            }
            out.push_str("le=\"");
            write_value(out, le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    write_value(out, value);
    out.push('\n');
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Longest label value written, in bytes before escaping. Values come from hostile sources
/// (a path can be 4,096 bytes, and every series repeats it); a longer one is
/// cut at a character boundary and ends in `…` and a hash of the whole
/// value, so two long values that share a beginning stay two series.
pub const MAX_LABEL_VALUE: usize = 512;

/// Escapes a label value: backslash, double quote and line feed, as both
/// formats require. Anything else (any UTF-8) passes as is. Values over
/// [`MAX_LABEL_VALUE`] bytes are shortened first.
pub fn escape_label_value(out: &mut String, v: &str) {
    if v.len() > MAX_LABEL_VALUE {
        // Room for "…" (3 bytes) and 16 hex digits.
        let mut cut = MAX_LABEL_VALUE - 3 - 16;
        while !v.is_char_boundary(cut) {
            cut -= 1;
        }
        escape_chars(out, &v[..cut]);
        let _ = write!(out, "…{:016x}", fnv1a(v.as_bytes()));
        return;
    }
    escape_chars(out, v);
}

/// FNV-1a, 64 bits: stable across runs and versions, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn escape_chars(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: backslash and line feed escaped in both formats, and the
/// double quote too in OpenMetrics (its grammar allows it only escaped).
fn escape_help(help: &str, format: Format) -> String {
    let mut out = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_escapes_what_each_format_requires() {
        let help = |format| {
            let mut enc = Encoder::new(format);
            enc.family("x", "a \"quoted\" \\ word\nand a line", Kind::Gauge);
            String::from_utf8(enc.finish()).expect("UTF-8")
        };
        assert!(
            help(Format::Text).starts_with("# HELP x a \"quoted\" \\\\ word\\nand a line\n"),
            "{}",
            help(Format::Text)
        );
        assert!(
            help(Format::OpenMetrics)
                .starts_with("# HELP x a \\\"quoted\\\" \\\\ word\\nand a line\n"),
            "{}",
            help(Format::OpenMetrics)
        );
    }

    #[test]
    fn text_and_openmetrics() {
        for format in [Format::Text, Format::OpenMetrics] {
            let mut enc = Encoder::new(format);
            let mut g = enc.family("node_tcp_port_alive", "TCP port answers.", Kind::Gauge);
            g.sample(&[("process_name", "a\"b\\c\nd"), ("port", "80")], 1.0);
            let mut c = enc.family("portwarden_probes", "Probes run.", Kind::Counter);
            c.sample(&[("kind", "tcp")], 3.0);
            let mut h = enc.family(
                "portwarden_probe_duration_seconds",
                "Probe time.",
                Kind::Histogram,
            );
            h.histogram(&[("kind", "tcp")], &[(0.001, 1), (0.5, 2)], 0.25, 3);
            let out = String::from_utf8(enc.finish()).expect("UTF-8");
            assert!(
                out.contains(
                    "node_tcp_port_alive{process_name=\"a\\\"b\\\\c\\nd\",port=\"80\"} 1\n"
                ),
                "{out}"
            );
            assert!(out.contains("portwarden_probes_total{kind=\"tcp\"} 3\n"));
            assert!(out.contains(
                "portwarden_probe_duration_seconds_bucket{kind=\"tcp\",le=\"0.001\"} 1\n"
            ));
            assert!(out.contains(
                "portwarden_probe_duration_seconds_bucket{kind=\"tcp\",le=\"+Inf\"} 3\n"
            ));
            assert!(out.contains("portwarden_probe_duration_seconds_sum{kind=\"tcp\"} 0.25\n"));
            match format {
                Format::Text => {
                    assert!(out.contains("# TYPE portwarden_probes_total counter\n"));
                    assert!(!out.contains("# EOF"));
                }
                Format::OpenMetrics => {
                    assert!(out.contains("# TYPE portwarden_probes counter\n"));
                    assert!(out.ends_with("# EOF\n"));
                }
            }
        }
    }

    #[test]
    fn negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        // What Prometheus 2.x/3.x sends.
        let prom = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text
        );
        assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
    }

    #[test]
    fn values() {
        let mut s = String::new();
        for v in [0.0, 1.0, -3.0, 0.25, f64::NAN, f64::INFINITY, 1e20] {
            write_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "0 1 -3 0.25 NaN +Inf 100000000000000000000 ");
    }

    #[test]
    fn a_gzipped_exposition_is_the_text_exposition_gzipped() {
        let write = |enc: &mut Encoder| {
            let mut f = enc.family("node_tcp_port_alive", "Alive.", Kind::Gauge);
            // Well past one spill of text.
            for port in 0..20_000u32 {
                let port = port.to_string();
                f.sample(&[("process_name", "nginx"), ("port", &port)], 1.0);
            }
        };
        for format in [Format::Text, Format::OpenMetrics] {
            let mut plain = Encoder::new(format);
            write(&mut plain);
            let plain = plain.finish();
            let mut gz = Encoder::gzip(format);
            write(&mut gz);
            let gz = gz.finish();
            assert!(plain.len() > 4 * SPILL && gz.len() < plain.len() / 4);
            let mut unpacked = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unpacked)
                .expect("gunzip");
            assert!(unpacked == plain, "{format:?}");
        }
    }

    #[test]
    fn long_label_values_are_cut_and_stay_distinct() {
        let a = format!("/{}a", "x".repeat(4000));
        let b = format!("/{}b", "x".repeat(4000));
        let (mut ea, mut eb) = (String::new(), String::new());
        escape_label_value(&mut ea, &a);
        escape_label_value(&mut eb, &b);
        assert!(ea.len() <= MAX_LABEL_VALUE && eb.len() <= MAX_LABEL_VALUE);
        assert_ne!(ea, eb);
        assert!(ea.starts_with("/xxx") && ea.contains('…'));
        // Cut on a character boundary, escapes kept whole.
        let c = "é\"".repeat(400);
        let mut ec = String::new();
        escape_label_value(&mut ec, &c);
        assert!(ec.len() <= 2 * MAX_LABEL_VALUE);
        assert!(!ec.ends_with('\\') || ec.ends_with("\\\\"));
        // Short values are untouched.
        let mut short = String::new();
        escape_label_value(&mut short, "/usr/sbin/nginx");
        assert_eq!(short, "/usr/sbin/nginx");
    }
}
