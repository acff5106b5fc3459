//! Classifies a query name under the agent's domain, following Consul's naming rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a query name asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The domain apex itself (SOA/NS).
    Apex,
    /// `NAME.node[.DC]`.
    Node {
        /// Node name.
        name: String,
        /// Datacenter, if given.
        dc: Option<String>,
    },
    /// `[TAG.]NAME.service[.DC]` or RFC 2782 `_NAME._TAG[.service][.DC]`.
    Service {
        /// Service name.
        name: String,
        /// Tag filter (`tcp`/`udp` in the RFC 2782 form means none).
        tag: Option<String>,
        /// Datacenter, if given.
        dc: Option<String>,
    },
    /// A reverse lookup (`4.3.2.1.in-addr.arpa`, or 32 nibbles under `ip6.arpa`) of one address.
    Reverse(IpAddr),
    /// Under the domain but not a form we answer.
    Invalid,
    /// Outside the domain (recursion candidate).
    Outside,
}

/// Classifies `qname` (any case, with or without the trailing dot) against `domain` (`consul.`).
pub fn classify(qname: &str, domain: &str) -> Lookup {
    let q = qname.trim_end_matches('.').to_ascii_lowercase();
    if let Some(ip) = reverse(&q) {
        return Lookup::Reverse(ip);
    }
    let d = domain.trim_end_matches('.');
    let rest = if q == d {
        return Lookup::Apex;
    } else if let Some(r) = q.strip_suffix(d).and_then(|r| r.strip_suffix('.')) {
        r
    } else {
        return Lookup::Outside;
    };
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Lookup::Invalid;
    }
    // RFC 2782: _name._tag[.service][.dc]
    if labels.len() >= 2 && labels[0].starts_with('_') && labels[1].starts_with('_') {
        let tail = &labels[2..];
        let dc = match tail {
            [] | ["service"] => None,
            ["service", dc] | [dc] => Some(dc.to_string()),
            _ => return Lookup::Invalid,
        };
        let tag = &labels[1][1..];
        return Lookup::Service {
            name: labels[0][1..].to_string(),
            tag: (tag != "tcp" && tag != "udp").then(|| tag.to_string()),
            dc,
        };
    }
    let (kind_at, dc) = match labels.iter().rposition(|l| *l == "node" || *l == "service") {
        Some(i) if i + 1 == labels.len() => (i, None),
        Some(i) if i + 2 == labels.len() => (i, Some(labels[i + 1].to_string())),
        _ => return Lookup::Invalid,
    };
    let before = &labels[..kind_at];
    if before.is_empty() {
        return Lookup::Invalid;
    }
    match labels[kind_at] {
        "node" => Lookup::Node {
            name: before.join("."),
            dc,
        },
        _ => match before {
            [name] => Lookup::Service {
                name: name.to_string(),
                tag: None,
                dc,
            },
            [tag, name] => Lookup::Service {
                name: name.to_string(),
                tag: Some(tag.to_string()),
                dc,
            },
            _ => Lookup::Invalid,
        },
    }
}

/// The address a full reverse name stands for; `None` for other names, including partial reverse zones
/// (those are left to the recursors, as Consul does).
fn reverse(q: &str) -> Option<IpAddr> {
    if let Some(rest) = q.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let mut labels = rest.split('.');
        for o in octets.iter_mut().rev() {
            let l = labels.next()?;
            // Leading zeros and signs are not part of the reverse form.
            if l.is_empty() || l.len() > 3 || (l.len() > 1 && l.starts_with('0')) {
                return None;
            }
            *o = l.parse().ok()?;
        }
        return labels
            .next()
            .is_none()
            .then(|| IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let rest = q.strip_suffix(".ip6.arpa")?;
    let mut bits: u128 = 0;
    let mut count = 0;
    // Nibbles come least significant first.
    for l in rest.split('.') {
        let [c] = l.as_bytes() else { return None };
        let nibble = (*c as char).to_digit(16)? as u128;
        if count == 32 {
            return None;
        }
        bits |= nibble << (4 * count);
        count += 1;
    }
    (count == 32).then(|| IpAddr::V6(Ipv6Addr::from(bits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str, dc: Option<&str>) -> Lookup {
        Lookup::Node {
            name: n.into(),
            dc: dc.map(Into::into),
        }
    }

    #[test]
    fn consul_name_forms() {
        let d = "consul.";
        assert_eq!(
            classify("agent-two.node.consul.", d),
            node("agent-two", None)
        );
        assert_eq!(
            classify("Agent-Two.NODE.dc1.Consul", d),
            node("agent-two", Some("dc1"))
        );
        assert_eq!(classify("consul.", d), Lookup::Apex);
        assert_eq!(classify("example.com.", d), Lookup::Outside);
        assert_eq!(classify("nonsense.consul.", d), Lookup::Invalid);
        assert_eq!(classify("a.b.c.node.x.y.consul.", d), Lookup::Invalid);
        assert_eq!(
            classify("primary.db.service.consul.", d),
            Lookup::Service {
                name: "db".into(),
                tag: Some("primary".into()),
                dc: None
            }
        );
        assert_eq!(
            classify("_db._tcp.service.dc2.consul.", d),
            Lookup::Service {
                name: "db".into(),
                tag: None,
                dc: Some("dc2".into())
            }
        );
        assert_eq!(
            classify("_db._v1.consul.", d),
            Lookup::Service {
                name: "db".into(),
                tag: Some("v1".into()),
                dc: None
            }
        );
        assert_eq!(classify("xconsul.", d), Lookup::Outside);
    }

    #[test]
    fn reverse_names() {
        let d = "consul.";
        assert_eq!(
            classify("11.0.0.127.IN-ADDR.ARPA.", d),
            Lookup::Reverse("127.0.0.11".parse().unwrap())
        );
        let v6: IpAddr = "2001:db8::567:89ab".parse().unwrap();
        let IpAddr::V6(a) = v6 else { unreachable!() };
        let nibbles: Vec<String> = a
            .octets()
            .iter()
            .rev()
            .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
            .collect();
        let name = format!("{}.ip6.arpa.", nibbles.join("."));
        assert_eq!(classify(&name, d), Lookup::Reverse(v6));
        for partial in [
            "0.127.in-addr.arpa.",
            "1.11.0.0.127.in-addr.arpa.",
            "011.0.0.127.in-addr.arpa.",
            "256.0.0.127.in-addr.arpa.",
            "x.0.0.127.in-addr.arpa.",
            "1.ip6.arpa.",
            "in-addr.arpa.",
        ] {
            assert_eq!(classify(partial, d), Lookup::Outside, "{partial}");
        }
    }
}
