//! What ferrite-testclient and ferrite-bench share: one side's verbs objects
//! (`endpoint`), picking a GID from sysfs (`gid`), and the TCP side channel that carries
//! connection info between the two roles (`proto`).  Both binaries are built from this
//! crate, so they set up a connection the same way.

pub mod endpoint;
pub mod gid;
pub mod proto;

/// The transport of the QP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QpKind {
    Rc,
    Uc,
}

impl QpKind {
    pub fn name(self) -> &'static str {
        match self {
            QpKind::Rc => "rc",
            QpKind::Uc => "uc",
        }
    }

    pub fn parse(s: &str) -> Option<QpKind> {
        match s {
            "rc" => Some(QpKind::Rc),
            "uc" => Some(QpKind::Uc),
            _ => None,
        }
    }
}

/// A number in decimal or 0x-hex, with an optional K/M/G (binary) suffix.
pub fn parse_num(s: &str) -> Option<u64> {
    let (digits, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1u64 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1u64 << 30),
        _ => (s, 1),
    };
    let v = if let Some(h) = digits.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()?
    } else {
        digits.parse().ok()?
    };
    v.checked_mul(mult)
}
