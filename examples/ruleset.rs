//! Prints the 1,000-rule ruleset the exposure figures are measured with
//! (`benches/common/ruleset.rs`), for `nft -f -`: `bench/rss-ruleset.sh`
//! loads it into a namespace of its own.

#[path = "../benches/common/ruleset.rs"]
mod ruleset;

fn main() {
    print!("{}", ruleset::text());
}
