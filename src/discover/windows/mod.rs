//! The Windows discoverer: listening TCP and bound UDP sockets, both
//! families, with the pid that owns each, from the IP Helper's owner-pid
//! tables (`GetExtendedTcpTable`, `GetExtendedUdpTable`); each owner's
//! name and path (the process list, `QueryFullProcessImageNameW`), its
//! creation time (`GetProcessTimes`: with the pid, the process's identity),
//! its user (its token) and the services the SCM runs in it. What the
//! tables give is read by [`super::tables`], which is pure.
//!
//! Windows has one network stack for the host: one namespace, `host`. Its
//! tables name one owner per socket, so there is no fd scan: every pass
//! reads the tables whole, and what is known of a process is kept while
//! it lives.

pub mod service;
pub(super) mod win;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::runstate::RunState;
use super::tables::{self, Process, Row, Table};
use super::{Discovery, Namespace, Options};
use crate::error::Error;
use crate::exclude::Exclusions;
use crate::model::{AcceptQueue, Owner, ScanStats};

/// Discovers ports and owners, remembering owners between passes.
#[derive(Debug)]
pub struct Discoverer {
    exclusions: Exclusions,
    /// What was read of each process, by pid and creation time.
    known: HashMap<(u32, u64), Arc<Owner>>,
    /// Services by the pid they run in, read at each full pass.
    services: HashMap<u32, Vec<String>>,
    /// Account names by SID, looked up once each (a domain account's
    /// lookup may ask a domain controller).
    accounts: win::Accounts,
}

impl Discoverer {
    /// `--path.procfs` has no meaning here: there is no /proc to read.
    pub fn new(options: Options) -> Result<Self, Error> {
        Ok(Discoverer {
            exclusions: options.exclusions,
            known: HashMap::new(),
            services: HashMap::new(),
            accounts: win::Accounts::default(),
        })
    }

    /// Every TCP listener now, by id: a second look. Windows reports no
    /// accept queue.
    pub fn listeners_again(&self) -> Result<super::ids::IdMap<u64, Option<AcceptQueue>>, Error> {
        let rows = read(&[Table::Tcp4, Table::Tcp6])?;
        Ok(tables::ids(&rows)
            .into_iter()
            .map(|id| (id, None))
            .collect())
    }

    /// Connections per listener are counted on Linux only.
    pub fn counts_connections(&self) -> bool {
        false
    }

    /// A pass that also reads which services run in which process.
    pub fn discover_full(&mut self) -> Result<Discovery, Error> {
        self.services = win::services();
        self.known.clear();
        self.pass(true)
    }

    /// A pass with what is known of processes kept.
    pub fn refresh(&mut self) -> Result<Discovery, Error> {
        self.pass(false)
    }

    fn pass(&mut self, full: bool) -> Result<Discovery, Error> {
        let started = Instant::now();
        let rows = read(&Table::ALL)?;
        let mut stats = ScanStats {
            full_scan: full,
            ..Default::default()
        };
        let owners = self.owners(&rows, &mut stats);
        let ports = tables::ports(&rows, &owners, &self.exclusions);
        Ok(Discovery {
            ports,
            stats,
            source: super::SocketSource::Netlink,
            duration_seconds: started.elapsed().as_secs_f64(),
            namespaces: vec![Namespace {
                label: "host".into(),
                entry: None,
                listen: None,
                firewall: None,
            }],
            replaced: Default::default(),
        })
    }

    /// The owner of each pid the rows name: from what is known when the
    /// pid still has the same creation time, else read anew.
    fn owners(&mut self, rows: &[Row], stats: &mut ScanStats) -> HashMap<u32, Arc<Owner>> {
        let mut wanted: Vec<u32> = rows.iter().map(|r| r.pid).filter(|&p| p != 0).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let list = win::processes();
        let mut out = HashMap::with_capacity(wanted.len());
        let mut live = HashMap::with_capacity(wanted.len());
        for pid in wanted {
            let Some(entry) = list.get(&pid) else {
                stats.vanished += 1;
                continue;
            };
            let opened = win::Opened::new(pid);
            let start_time = opened
                .as_ref()
                .and_then(win::Opened::start_time)
                .unwrap_or(0);
            let owner = match self.known.get(&(pid, start_time)) {
                Some(o) if start_time != 0 => Arc::clone(o),
                _ => {
                    stats.processes_scanned += 1;
                    if opened.is_none() && pid > 4 {
                        stats.fd_denied += 1;
                    }
                    let process = Process {
                        pid,
                        ppid: entry.ppid,
                        image: entry.image.clone(),
                        path: opened.as_ref().and_then(win::Opened::image_path),
                        start_time,
                        user: opened.as_ref().and_then(|o| o.user(&mut self.accounts)),
                    };
                    let services = self.services.get(&pid).map(Vec::as_slice);
                    Arc::new(process.owner(services.unwrap_or_default()))
                }
            };
            live.insert((pid, start_time), Arc::clone(&owner));
            out.insert(pid, owner);
        }
        self.known = live;
        out
    }

    /// Whether each process (pid, creation time) still runs: a reused pid
    /// is not the process.
    pub fn alive(&self, processes: &[(u32, u64)]) -> Vec<bool> {
        processes
            .iter()
            .map(|&(pid, start_time)| {
                win::Opened::new(pid).is_some_and(|o| {
                    o.running() && (start_time == 0 || o.start_time() == Some(start_time))
                })
            })
            .collect()
    }

    /// Whether a process can run: running when it is; Windows has no
    /// stopped state to read, nor frozen cgroups.
    pub fn run_state(&self, pid: u32) -> (Option<RunState>, Option<Option<String>>) {
        let running = win::Opened::new(pid).is_some_and(|o| o.running());
        (running.then_some(RunState::Running), None)
    }
}

/// The rows of these tables, in this order.
fn read(which: &[Table]) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for &table in which {
        let call = match table.proto() {
            crate::model::Proto::Tcp => "GetExtendedTcpTable",
            crate::model::Proto::Udp => "GetExtendedUdpTable",
        };
        let what = || format!("the {table:?} table ({call})");
        let buf = win::table(table).map_err(|source| Error::SocketTable {
            what: what(),
            source,
        })?;
        rows.extend(tables::parse(table, &buf).map_err(|e| Error::SocketTable {
            what: what(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?);
    }
    Ok(rows)
}
