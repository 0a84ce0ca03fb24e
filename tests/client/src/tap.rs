//! KTAP-style output: one line per check, then "N passed, N failed".

/// Counts checks and prints their lines.
#[derive(Default)]
pub struct Tap {
    n: u32,
    pub passed: u32,
    pub failed: u32,
}

/// One line of text: reasons travel on single lines (and over the side channel).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Tap {
    pub fn plan(&self, n: usize) {
        println!("1..{n}");
    }

    pub fn diag(&self, msg: &str) {
        println!("# {}", one_line(msg));
    }

    /// Record a check; `Err` carries the reason of a failure.
    pub fn result(&mut self, name: &str, r: &Result<(), String>) {
        self.n += 1;
        match r {
            Ok(()) => {
                self.passed += 1;
                println!("ok {} - {name}", self.n);
            }
            Err(e) => {
                self.failed += 1;
                println!("not ok {} - {name} # {}", self.n, one_line(e));
            }
        }
    }

    /// The closing line; returns the process exit status.
    pub fn finish(&self) -> i32 {
        println!("{} passed, {} failed", self.passed, self.failed);
        i32::from(self.failed > 0 || self.passed == 0)
    }
}
