//! Classifies a query name under the agent's domain, following Consul's naming rules.

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
    /// Under the domain but not a form we answer.
    Invalid,
    /// Outside the domain (recursion candidate).
    Outside,
}

/// Classifies `qname` (any case, with or without the trailing dot) against `domain` (`consul.`).
pub fn classify(qname: &str, domain: &str) -> Lookup {
    let q = qname.trim_end_matches('.').to_ascii_lowercase();
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
}
