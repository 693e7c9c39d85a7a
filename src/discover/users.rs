//! uid → user name, from the host's passwd file.
//!
//! We parse the file ourselves rather than call `getpwuid`: NSS modules are
//! not something a static binary can load, and in a container the host's
//! names live at `<proc root>/1/root/etc/passwd`, not at `/etc/passwd`.

use std::collections::HashMap;

use super::procfs::ProcRoot;

/// Names of the users known to the host.
#[derive(Debug, Default, Clone)]
pub struct Users {
    names: HashMap<u32, String>,
}

impl Users {
    /// Reads PID 1's passwd file through the proc root (the host's, even from
    /// a container), falling back to our own `/etc/passwd`, then to none.
    pub fn load(proc: &ProcRoot) -> Self {
        let mut buf = Vec::new();
        if proc.read_rel("1/root/etc/passwd", &mut buf).is_ok() && !buf.is_empty() {
            return Users::parse(&String::from_utf8_lossy(&buf));
        }
        match std::fs::read("/etc/passwd") {
            Ok(bytes) => Users::parse(&String::from_utf8_lossy(&bytes)),
            Err(_) => Users::default(),
        }
    }

    /// Parses passwd text (`name:x:uid:gid:…`); bad lines are skipped. The
    /// first name for a uid wins, as with `getpwuid`.
    pub fn parse(text: &str) -> Self {
        let mut names = HashMap::new();
        for line in text.lines() {
            let mut fields = line.split(':');
            let (Some(name), Some(_), Some(uid)) = (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let Ok(uid) = uid.parse::<u32>()
                && !name.is_empty()
            {
                names.entry(uid).or_insert_with(|| name.to_string());
            }
        }
        Users { names }
    }

    /// The user's name, or the uid as a number when it has none.
    pub fn name(&self, uid: u32) -> String {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_passwd() {
        let users = Users::parse(
            "root:x:0:0:root:/root:/bin/bash\n# comment\nbad\ntoor:x:0:0::/:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        );
        assert_eq!(users.name(0), "root");
        assert_eq!(users.name(33), "www-data");
        assert_eq!(users.name(4242), "4242");
    }
}
