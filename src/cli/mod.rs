//! One-shot commands that print to a terminal or a pipe.

pub mod baseline;
pub mod check;
pub mod ls;
pub mod service;
mod watch;
pub mod why;

pub use crate::text::printable;

/// A table for the terminal: sized to `COLUMNS` when set, else to the
/// terminal's width; a terminal that reports 0 columns (`script`, some
/// `docker exec -t`) is one of unknown width, whose rows are not wrapped.
pub fn table(header: &[&str]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_header(header);
    match width(
        std::env::var("COLUMNS").ok().as_deref(),
        crate::discover::os::terminal_width(),
    ) {
        Some(w) => table
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(w),
        None => table.set_content_arrangement(comfy_table::ContentArrangement::Disabled),
    };
    table
}

/// Each row on one line: in a table narrower than its text a cell is cut
/// with an ellipsis, never wrapped (`4567` over `8` reads as two numbers).
pub fn one_line_rows(table: &mut comfy_table::Table) -> &comfy_table::Table {
    for row in table.row_iter_mut() {
        row.max_height(1);
    }
    table
}

/// The width to fit: `COLUMNS` if it is a positive number, else the
/// terminal's if it reports one.
fn width(columns: Option<&str>, terminal: Option<u16>) -> Option<u16> {
    columns
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c > 0)
        .or(terminal.filter(|&c| c > 0))
}

/// The discoverer every command builds from the flags they share (the
/// proc root, the excluded names); `connections`: count each port's
/// connections too (the exporter's load collector); `firewall`: read each
/// namespace's ruleset for the ports' exposure.
pub fn discoverer(
    global: &crate::config::GlobalArgs,
    connections: bool,
    firewall: bool,
) -> Result<crate::discover::Discoverer, crate::Error> {
    crate::discover::Discoverer::new(crate::discover::Options {
        proc_root: global.proc_root.clone(),
        exclusions: crate::exclude::Exclusions::new(&global.excluded_process_names)?,
        threads: 0,
        connections,
        firewall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_then_the_terminal_and_zero_is_unknown() {
        assert_eq!(width(Some("132"), Some(80)), Some(132));
        assert_eq!(width(Some("0"), Some(80)), Some(80));
        assert_eq!(width(Some("wide"), None), None);
        assert_eq!(width(None, Some(0)), None);
        assert_eq!(width(None, Some(100)), Some(100));
    }
}
