//! The kernel-side port filter: `inet_diag` bytecode that lets only the
//! wanted ports' sockets cross into user space.

/// `INET_DIAG_REQ_BYTECODE`: the request attribute carrying a filter.
pub(super) const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// Filter op codes (include/uapi/linux/inet_diag.h).
pub(super) const INET_DIAG_BC_JMP: u8 = 1;
pub(super) const INET_DIAG_BC_S_GE: u8 = 2;
pub(super) const INET_DIAG_BC_S_LE: u8 = 3;
/// Bytes of a port comparison (the op and the port) and of a jump.
pub(super) const CMP_LEN: usize = 8;
pub(super) const JMP_LEN: usize = 4;
/// Most ranges in one filter: jumps are 16-bit and so is the attribute's
/// length.
pub(super) const MAX_RANGES: usize = 3000;

/// An `inet_diag` bytecode filter accepting a socket whose local port lies
/// in one of the ranges covering `ports`. Past [`MAX_RANGES`] the closest
/// ranges are merged (the filter then lets a few other ports through; the
/// caller matches exactly).
///
/// The kernel checks a filter before running it (`inet_diag_bc_audit`):
/// every op's `yes` must be its own length, and every `no` jump must land on
/// an op boundary, at the end (accept) or 4 bytes past it (reject). Proving
/// that a jump lands on a boundary walks the filter from its start, so a
/// filter with thousands of jumps into itself costs the kernel more to check
/// than the dump it saves. The ranges are therefore cut into about √n blocks:
/// a binary search tree over the blocks (two jumps into the filter per
/// block), each block a linear scan whose jumps all go to accept or reject.
/// The kernel runs a few dozen comparisons per socket and checks the filter
/// in well under a millisecond.
pub fn port_filter(ports: &[u16]) -> Vec<u8> {
    let ranges = cover(ports, MAX_RANGES);
    let per_block = ranges.len().isqrt().max(1);
    let blocks: Vec<&[(u16, u16)]> = ranges.chunks(per_block).collect();
    let end = tree_len(&blocks);
    let mut out = vec![0u8; end];
    emit(&blocks, 0, end, &mut out);
    out
}

/// How many filters `ports` needs for each to be exact (no ranges merged).
pub fn filter_parts(ports: impl Iterator<Item = u16>) -> usize {
    let mut sorted: Vec<u16> = ports.collect();
    sorted.sort_unstable();
    sorted.dedup();
    let ranges = 1 + sorted.windows(2).filter(|w| w[1] != w[0] + 1).count();
    ranges.div_ceil(MAX_RANGES)
}

/// Sorted, disjoint ranges covering `ports`, at most `max` of them (the
/// smallest gaps closed first).
pub(super) fn cover(ports: &[u16], max: usize) -> Vec<(u16, u16)> {
    let mut sorted = ports.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    for p in sorted {
        match ranges.last_mut() {
            Some((_, hi)) if u32::from(*hi) + 1 == u32::from(p) => *hi = p,
            _ => ranges.push((p, p)),
        }
    }
    if ranges.len() > max.max(1) {
        // Close the (len - max) smallest gaps: gap i lies after range i.
        let mut gaps: Vec<(u16, usize)> = ranges
            .windows(2)
            .enumerate()
            .map(|(i, w)| (w[1].0 - w[0].1, i))
            .collect();
        gaps.sort_unstable();
        let mut close = vec![false; ranges.len()];
        for &(_, i) in &gaps[..ranges.len() - max.max(1)] {
            close[i] = true;
        }
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(max);
        let mut extend = false;
        for (i, r) in ranges.iter().enumerate() {
            match merged.last_mut() {
                Some(last) if extend => last.1 = r.1,
                _ => merged.push(*r),
            }
            extend = close[i];
        }
        ranges = merged;
    }
    ranges
}

/// Bytes of a block's linear scan: two comparisons per range but its last,
/// and a jump.
pub(super) fn block_len(block: &[(u16, u16)]) -> usize {
    2 * CMP_LEN * (block.len() - 1) + JMP_LEN
}

/// Bytes of the search tree over `blocks`: per block, its two bounds and
/// its scan.
pub(super) fn tree_len(blocks: &[&[(u16, u16)]]) -> usize {
    blocks.iter().map(|b| 2 * CMP_LEN + block_len(b)).sum()
}

/// Writes the search tree over `blocks` at byte `at` of a filter `end`
/// bytes long: the middle block's bounds, its scan, the left subtree, the
/// right subtree.
pub(super) fn emit(blocks: &[&[(u16, u16)]], at: usize, end: usize, out: &mut [u8]) {
    if blocks.is_empty() {
        return;
    }
    let mid = blocks.len() / 2;
    let (left, block, right) = (&blocks[..mid], blocks[mid], &blocks[mid + 1..]);
    let (lo, hi) = (block[0].0, block[block.len() - 1].1);
    let scan_at = at + 2 * CMP_LEN;
    let left_at = scan_at + block_len(block);
    let right_at = left_at + tree_len(left);
    let reject = end + 4;
    let target = |subtree: &[&[(u16, u16)]], start: usize| {
        if subtree.is_empty() { reject } else { start }
    };
    // Above the block: the right subtree; below it, the left one.
    compare(out, at, INET_DIAG_BC_S_LE, hi, target(right, right_at) - at);
    let ge = at + CMP_LEN;
    compare(out, ge, INET_DIAG_BC_S_GE, lo, target(left, left_at) - ge);
    // Within its bounds: past each range but the last, either inside it
    // (accept) or in the gap after it (reject) or further on.
    let mut cursor = scan_at;
    for pair in block.windows(2) {
        let ((_, prev_hi), (next_lo, _)) = (pair[0], pair[1]);
        // `prev_hi` < `next_lo`, so `prev_hi + 1` does not overflow.
        compare(out, cursor, INET_DIAG_BC_S_GE, prev_hi + 1, end - cursor);
        cursor += CMP_LEN;
        compare(out, cursor, INET_DIAG_BC_S_GE, next_lo, reject - cursor);
        cursor += CMP_LEN;
    }
    // Inside the last range.
    op(out, cursor, INET_DIAG_BC_JMP, JMP_LEN, end - cursor);
    emit(left, left_at, end, out);
    emit(right, right_at, end, out);
}

/// `struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }` at `at`.
pub(super) fn op(out: &mut [u8], at: usize, code: u8, yes: usize, no: usize) {
    out[at] = code;
    out[at + 1] = yes as u8;
    out[at + 2..at + 4].copy_from_slice(&(no as u16).to_ne_bytes());
}

/// A port comparison at `at`: on success the next op, else `no` bytes on.
/// The port is the `no` field of a second op, in host order.
pub(super) fn compare(out: &mut [u8], at: usize, code: u8, port: u16, no: usize) {
    op(out, at, code, CMP_LEN, no);
    out[at + 6..at + 8].copy_from_slice(&port.to_ne_bytes());
}
