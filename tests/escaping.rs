//! Label values come from hostile sources: any bytes as a process name or
//! path must give an exposition `promtool check metrics` accepts, whose
//! label values read back as the (UTF-8-decoded) input, and JSON that parses
//! back to it. Property tests over arbitrary bytes.

mod common;

use common::promtool_check;
use portwarden::encoder::{Encoder, Format, Kind, MAX_LABEL_VALUE};
use proptest::prelude::*;

/// Names as discovery makes them: bytes decoded as UTF-8, invalid
/// sequences replaced.
fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..200)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Text exposition of one family with a sample per (name, path).
fn exposition(values: &[(String, String)]) -> String {
    let mut enc = Encoder::new(Format::Text);
    let mut f = enc.family("node_tcp_port_alive", "Alive.", Kind::Gauge);
    for (i, (name, path)) in values.iter().enumerate() {
        let port = i.to_string();
        f.sample(
            &[("process_name", name), ("exe_path", path), ("port", &port)],
            1.0,
        );
    }
    String::from_utf8(enc.finish()).expect("UTF-8 exposition")
}

/// The label values of one sample line, unescaped, in order.
fn label_values(line: &str) -> Vec<String> {
    let inner = &line[line.find('{').expect("labels") + 1..line.rfind('}').expect("labels")];
    let mut values = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut value = String::new();
        loop {
            match chars.next().expect("closing quote") {
                '"' => break,
                '\\' => match chars.next().expect("escaped char") {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        values.push(value);
    }
    values
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_bytes_as_names_and_paths_give_valid_exposition_that_reads_back(
        values in proptest::collection::vec((name(), name()), 1..8)
    ) {
        let text = exposition(&values);
        let said = promtool_check(&text);
        prop_assert!(said.is_empty(), "promtool: {said}\n{text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        prop_assert_eq!(lines.len(), values.len());
        for (line, (name, path)) in lines.iter().zip(&values) {
            let read = label_values(line);
            prop_assert_eq!(&read[0], name);
            prop_assert_eq!(&read[1], path);
        }
        // And as `ls --json` writes them.
        for (name, path) in &values {
            let json = serde_json::to_string(&serde_json::json!({"process_name": name, "exe_path": path}))
                .expect("serialize");
            let back: serde_json::Value = serde_json::from_str(&json).expect("parses");
            prop_assert_eq!(back["process_name"].as_str(), Some(name.as_str()));
            prop_assert_eq!(back["exe_path"].as_str(), Some(path.as_str()));
        }
    }

    #[test]
    fn overlong_values_are_cut_valid_and_distinct(
        a in proptest::collection::vec(any::<u8>(), MAX_LABEL_VALUE..4096),
        tail in any::<u8>(),
    ) {
        let a = String::from_utf8_lossy(&a).into_owned();
        let b = format!("{a}{}", char::from(tail % 64 + 32));
        let text = exposition(&[(a.clone(), "/".into()), (b, "/".into())]);
        let said = promtool_check(&text);
        prop_assert!(said.is_empty(), "promtool: {said}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let (ra, rb) = (label_values(lines[0]), label_values(lines[1]));
        prop_assert!(ra[0].len() <= MAX_LABEL_VALUE && rb[0].len() <= MAX_LABEL_VALUE);
        prop_assert_ne!(&ra[0], &rb[0]);
    }
}
