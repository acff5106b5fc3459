//! `murmur tls ca create` and `murmur tls cert create`: the cluster CA and node certificates, written to
//! the current directory as Consul does (`murmur-agent-ca.pem`, `dc1-server-murmur-0.pem`, ...).

use std::net::IpAddr;
use std::path::Path;

use crate::net::tls;
use crate::util::files::{Access, create_new};
use crate::util::flags::{self, Arity, Flag};

const CA_SPEC: &[Flag] = &[
    Flag {
        name: "domain",
        arity: Arity::One,
        help: "Domain in certificate names (default murmur).",
    },
    Flag {
        name: "days",
        arity: Arity::One,
        help: "Validity in days (default 1825).",
    },
];

const CERT_SPEC: &[Flag] = &[
    Flag {
        name: "server",
        arity: Arity::Bool,
        help: "Certificate for a server.",
    },
    Flag {
        name: "client",
        arity: Arity::Bool,
        help: "Certificate for a client.",
    },
    Flag {
        name: "dc",
        arity: Arity::One,
        help: "Datacenter (default dc1).",
    },
    Flag {
        name: "domain",
        arity: Arity::One,
        help: "Domain (default murmur).",
    },
    Flag {
        name: "days",
        arity: Arity::One,
        help: "Validity in days (default 365).",
    },
    Flag {
        name: "ca",
        arity: Arity::One,
        help: "CA certificate (default <domain>-agent-ca.pem).",
    },
    Flag {
        name: "key",
        arity: Arity::One,
        help: "CA key (default <domain>-agent-ca-key.pem).",
    },
    Flag {
        name: "additional-ipaddress",
        arity: Arity::Many,
        help: "Extra IP SAN (repeatable).",
    },
    Flag {
        name: "additional-dnsname",
        arity: Arity::Many,
        help: "Extra DNS SAN (repeatable).",
    },
];

fn write_new(path: &str, text: &str, access: Access) -> Result<(), String> {
    create_new(Path::new(path), text.as_bytes(), access)?;
    println!("==> Saved {path}");
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    match (
        args.first().map(String::as_str),
        args.get(1).map(String::as_str),
    ) {
        (Some("ca"), Some("create")) => {
            let p = flags::parse(&args[2..], CA_SPEC)?;
            let domain = p.get("domain").unwrap_or("murmur");
            let days: u32 = p
                .get("days")
                .unwrap_or("1825")
                .parse()
                .map_err(|_| "invalid -days")?;
            let (cert_name, key_name) = tls::ca_file_names(domain);
            let (cert, key) = tls::create_ca(domain, days)?;
            write_new(&cert_name, &cert, Access::Public)?;
            write_new(&key_name, &key, Access::Owner)
        }
        (Some("cert"), Some("create")) => {
            let p = flags::parse(&args[2..], CERT_SPEC)?;
            let role = match (p.is_set("server"), p.is_set("client")) {
                (true, false) => "server",
                (false, true) => "client",
                _ => return Err("exactly one of -server or -client is required".into()),
            };
            let dc = p.get("dc").unwrap_or("dc1");
            let domain = p.get("domain").unwrap_or("murmur");
            let days: u32 = p
                .get("days")
                .unwrap_or("365")
                .parse()
                .map_err(|_| "invalid -days")?;
            let (def_ca, def_key) = tls::ca_file_names(domain);
            let ca_key_file = p.get("key").map(str::to_owned).unwrap_or(def_key);
            let ca_file = p.get("ca").map(str::to_owned).unwrap_or(def_ca);
            if !Path::new(&ca_file).exists() {
                return Err(format!(
                    "{ca_file} not found: create the CA first (murmur tls ca create)"
                ));
            }
            let ca_key = std::fs::read_to_string(&ca_key_file)
                .map_err(|e| format!("reading {ca_key_file}: {e}"))?;
            let ips = p
                .all("additional-ipaddress")
                .iter()
                .map(|s| s.parse::<IpAddr>().map_err(|_| format!("invalid IP {s:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            let (cert, key) = tls::create_cert(
                &ca_key,
                domain,
                role,
                dc,
                days,
                &p.all("additional-dnsname"),
                &ips,
            )?;
            // First free index, like Consul's dc1-server-consul-0.pem, -1, ...
            let i = (0..)
                .find(|i| !Path::new(&format!("{dc}-{role}-{domain}-{i}.pem")).exists())
                .unwrap_or(0);
            write_new(
                &format!("{dc}-{role}-{domain}-{i}.pem"),
                &cert,
                Access::Public,
            )?;
            write_new(
                &format!("{dc}-{role}-{domain}-{i}-key.pem"),
                &key,
                Access::Owner,
            )
        }
        _ => Err(
            "usage: murmur tls ca create | murmur tls cert create -server|-client [options]".into(),
        ),
    }
}

/// `murmur tls ...`.
pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("==> {e}");
            1
        }
    }
}
