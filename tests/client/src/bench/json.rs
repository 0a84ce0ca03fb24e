//! One JSON object per line, written by hand (the crate has no serde): numbers,
//! strings, nested objects, and the `--tag`s that go into every top-level object.

use std::fmt::Write as _;
use std::io::Write as _;

/// An object being built; `line()` closes it.
#[derive(Clone, Default)]
pub struct Obj {
    body: String,
}

pub fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }

    fn key(&mut self, k: &str) {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        self.body.push_str(&quote(k));
        self.body.push(':');
    }

    pub fn s(mut self, k: &str, v: &str) -> Obj {
        self.key(k);
        self.body.push_str(&quote(v));
        self
    }

    pub fn u(mut self, k: &str, v: u64) -> Obj {
        self.key(k);
        let _ = write!(self.body, "{v}");
        self
    }

    pub fn b(mut self, k: &str, v: bool) -> Obj {
        self.key(k);
        self.body.push_str(if v { "true" } else { "false" });
        self
    }

    /// A float with 6 significant digits; NaN and infinities become null.
    pub fn f(mut self, k: &str, v: f64) -> Obj {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.body, "{}", format!("{v:.6e}").parse::<f64>().unwrap_or(v));
        } else {
            self.body.push_str("null");
        }
        self
    }

    pub fn o(mut self, k: &str, v: &Obj) -> Obj {
        self.key(k);
        self.body.push('{');
        self.body.push_str(&v.body);
        self.body.push('}');
        self
    }

    /// A tag value: a number when it reads as one, else a string.
    pub fn tag(self, k: &str, v: &str) -> Obj {
        match v.parse::<u64>() {
            Ok(n) if !v.starts_with('0') || v == "0" => self.u(k, n),
            _ => self.s(k, v),
        }
    }

    /// `other`'s members after ours.
    pub fn merge(mut self, other: Obj) -> Obj {
        if !other.body.is_empty() {
            if !self.body.is_empty() {
                self.body.push(',');
            }
            self.body.push_str(&other.body);
        }
        self
    }

    pub fn text(&self) -> String {
        format!("{{{}}}", self.body)
    }
}

/// Writes objects to stdout, one a line, each with the run's tags.
pub struct Out {
    pub tags: Vec<(String, String)>,
}

impl Out {
    pub fn emit(&self, o: Obj) {
        let mut o = o;
        for (k, v) in &self.tags {
            o = o.tag(k, v);
        }
        let mut so = std::io::stdout().lock();
        let _ = writeln!(so, "{}", o.text());
        let _ = so.flush();
    }
}

/// The median, p99, min, max and mean of latency samples in nanoseconds, in
/// microseconds; sorts `samples`, which must not be empty.
pub fn latency_us(samples: &mut [u64]) -> Obj {
    samples.sort_unstable();
    let q = |p: f64| -> f64 {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i.min(samples.len() - 1)] as f64 / 1e3
    };
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1e3;
    Obj::new()
        .f("median_us", q(0.5))
        .f("p99_us", q(0.99))
        .f("min_us", q(0.0))
        .f("max_us", q(1.0))
        .f("mean_us", mean)
}

/// Counters as an object.
pub fn counters(c: &[(String, u64)]) -> Obj {
    c.iter().fold(Obj::new(), |o, (k, v)| o.u(k, *v))
}
