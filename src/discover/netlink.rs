//! One datagram of netlink answers split into its messages, for the
//! readers that speak netlink by hand (the ruleset, routes). Pure: the
//! kernel's bytes are checked as any input is.

use std::io;

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

/// One message: its type, sequence number and what follows its header.
pub struct Message<'a> {
    pub kind: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// The messages of `datagram`, in order; an error if a length runs past it.
pub fn messages(datagram: &[u8]) -> io::Result<Vec<Message<'_>>> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || len > rest.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a netlink message's length runs past its datagram",
            ));
        }
        out.push(Message {
            kind: u16::from_ne_bytes([rest[4], rest[5]]),
            seq: u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes")),
            payload: &rest[16..len],
        });
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(out)
}

/// What an `NLMSG_ERROR` says: `None` for an acknowledgement (code 0).
pub fn error(payload: &[u8]) -> Option<io::Error> {
    let code = payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    (code != 0).then(|| io::Error::from_raw_os_error(code.saturating_neg()))
}
