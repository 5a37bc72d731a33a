//! Whether the addresses a config listens on can be bound, asked before serving.
//!
//! Pingora retries a busy address once a second for ever ("is in use, will try again"):
//! right during a graceful upgrade, where the old process still holds it, and a silent
//! hang otherwise. So outside an upgrade `gatehouse run` probes every address first and
//! exits at once naming the one that is taken and, where Linux tells (`/proc`), which
//! process holds it; `gatehouse check` and `doctor` report the same as a warning.

use crate::config::model::ServerSettings;
use socket2::{Domain, Protocol, Socket, Type};
use std::fmt;
use std::io::ErrorKind;
use std::net::SocketAddr;

/// One address a config listens on, and what it is for (in messages).
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    pub addr: SocketAddr,
    pub role: &'static str,
}

/// Why an address cannot be bound.
#[derive(Debug)]
pub struct PortProblem {
    pub listener: Listener,
    pub reason: String,
    /// `pid 1234 (nginx)`, when the holder could be found.
    pub owner: Option<String>,
}

impl fmt::Display for PortProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The role is left to the caller: it is the field path of a config problem.
        write!(f, "{}: {}", self.listener.addr, self.reason)?;
        if let Some(owner) = &self.owner {
            write!(f, ", held by {owner}")?;
        }
        Ok(())
    }
}

/// Every address `server` listens on: the proxy's plain and TLS listeners and the admin's.
pub fn listeners(server: &ServerSettings) -> Vec<Listener> {
    let plain = server.listen.iter().map(|&addr| Listener { addr, role: "listen" });
    let tls = server.tls_listen.iter().map(|&addr| Listener {
        addr,
        role: "tls.listen",
    });
    let admin = server.admin.iter().map(|a| Listener {
        addr: a.listen,
        role: "admin.listen",
    });
    plain.chain(tls).chain(admin).collect()
}

/// Every listener of `listeners` that cannot be bound right now. `reuse_port` probes as
/// the listeners will bind: processes sharing a port with SO_REUSEPORT are not a problem.
pub fn unavailable(listeners: &[Listener], reuse_port: bool) -> Vec<PortProblem> {
    listeners.iter().filter_map(|l| probe(*l, reuse_port).err()).collect()
}

fn probe(listener: Listener, reuse_port: bool) -> Result<(), PortProblem> {
    let problem = |reason: String, owner: Option<String>| PortProblem {
        listener,
        reason,
        owner,
    };
    let socket = Socket::new(Domain::for_address(listener.addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| problem(format!("cannot open a socket: {e}"), None))?;
    // As Pingora binds: SO_REUSEADDR, so a port with connections in TIME_WAIT is free.
    let _ = socket.set_reuse_address(true);
    if reuse_port {
        let _ = socket.set_reuse_port(true);
    }
    // The probe socket is closed at once; it never listens, so it takes no connection.
    match socket.bind(&listener.addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AddrInUse => Err(problem(
            "the address is already in use".into(),
            owner_of(listener.addr.port()),
        )),
        Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
            Err(problem("no interface of this host has that address".into(), None))
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(problem(
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".into(),
            None,
        )),
        Err(e) => Err(problem(format!("cannot bind: {e}"), None)),
    }
}

/// The process listening on TCP `port`, from `/proc/net/tcp{,6}` and the processes' file
/// descriptors (only those this user may read: another user's process stays unnamed).
pub fn owner_of(port: u16) -> Option<String> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|table| listening_inode(&table, port))?;
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str()));
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", name.trim()));
        }
    }
    Some("another process (not one this user can inspect)".into())
}

/// The inode of the socket listening on `port` in one `/proc/net/tcp` table.
fn listening_inode(table: &str, port: u16) -> Option<u64> {
    const LISTEN: &str = "0A";
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = fields.get(1)?;
        let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        if local_port != port || *fields.get(3)? != LISTEN {
            return None;
        }
        fields.get(9)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_socket_of_a_port_in_the_table() {
        let table =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n\
   1: 0100007F:1F90 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0\n";
        assert_eq!(listening_inode(table, 8080), Some(4242));
        assert_eq!(listening_inode(table, 8081), None);
    }

    #[test]
    fn a_bound_port_is_reported_with_this_process_as_its_holder() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let problems = unavailable(&[Listener { addr, role: "listen" }], false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = problems[0].to_string();
        assert!(text.starts_with(&addr.to_string()) && text.contains("in use"), "{text}");
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
        drop(held);
        assert!(unavailable(&[Listener { addr, role: "listen" }], false).is_empty());
    }
}
