//! The TCP side channel: one text line per message, `VERB key=value ...`.
//!
//! It carries only connection info, what the next test expects, and verdicts; payload
//! bytes never travel over it.  A conversation, client first:
//!
//! ```text
//! HELLO qpn= psn= gid= addr= rkey= len= mtu= rd_atom= max_msg= qp= max_size= ...
//!                                          HELLO qpn= psn= gid= ... path_mtu=
//! PLAN n=
//! EXPECT_SEND t= name= len= rsge= n= imm=        READY
//! EXPECT_WRITE t= name= len= n= imm=             READY addr=A0,A1,...
//! EXPECT_READ t= name= len= n=                   READY addr=...
//! ATOMIC_SET t= name= value=                     READY addr=
//! GO | ABORT reason...                           RESULT ok [value=] | RESULT fail reason...
//! RESET psn=                                     RESET_OK psn=
//! QUIT passed= failed=                           BYE passed= failed=
//! ```

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// One parsed message.
pub struct Msg {
    pub verb: String,
    /// Whitespace-separated words after the verb.
    pub words: Vec<String>,
}

impl Msg {
    pub fn get(&self, key: &str) -> Result<&str, String> {
        self.words
            .iter()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .ok_or_else(|| format!("{} without {key}=", self.verb))
    }

    pub fn num(&self, key: &str) -> Result<u64, String> {
        let v = self.get(key)?;
        crate::parse_num(v).ok_or_else(|| format!("{}: {key}={v} is not a number", self.verb))
    }

    /// Everything after the verb and the first word (a reason).
    pub fn rest(&self) -> String {
        self.words.iter().skip(1).cloned().collect::<Vec<_>>().join(" ")
    }

    /// `expect` this verb, or say what came instead.
    pub fn want(self, verb: &str) -> Result<Msg, String> {
        if self.verb == verb {
            Ok(self)
        } else {
            Err(format!("expected {verb} from the peer, got {} {}", self.verb, self.words.join(" ")))
        }
    }
}

pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    pub peer: String,
}

impl Conn {
    fn new(s: TcpStream) -> Result<Conn, String> {
        s.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let peer = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let writer = s.try_clone().map_err(|e| format!("socket clone: {e}"))?;
        Ok(Conn { reader: BufReader::new(s), writer, peer })
    }

    /// Connect, retrying for up to `wait` while the server is not listening yet.
    pub fn connect(host: &str, port: u16, wait: Duration) -> Result<Conn, String> {
        let deadline = Instant::now() + wait;
        let addrs: Vec<_> = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{host}: {e}"))?
            .collect();
        loop {
            let mut last = String::new();
            for a in &addrs {
                match TcpStream::connect_timeout(a, Duration::from_secs(5)) {
                    Ok(s) => return Conn::new(s),
                    Err(e) => last = format!("connect {a}: {e}"),
                }
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Accept one client on `port` (all addresses of this network namespace).
    pub fn accept(port: u16) -> Result<Conn, String> {
        let l = TcpListener::bind(("::", port))
            .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
            .map_err(|e| format!("listen on port {port}: {e}"))?;
        println!("# listening on TCP port {port}");
        let (s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
        Conn::new(s)
    }

    pub fn send(&mut self, line: &str) -> Result<(), String> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("side channel write: {e}"))
    }

    /// The next message; `None` waits forever.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Msg, String> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(|e| format!("socket timeout: {e}"))?;
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("the peer closed the side channel".into()),
            Ok(_) => {
                let mut words = line.split_whitespace().map(String::from);
                let verb = words.next().unwrap_or_default();
                Ok(Msg { verb, words: words.collect() })
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(format!("no answer from the peer within {:?}", timeout.unwrap_or_default()))
            }
            Err(e) => Err(format!("side channel read: {e}")),
        }
    }

    /// Whether a message (or the peer's end of the stream) is waiting, without
    /// blocking: for loops that spin on memory and must notice a peer that gave up.
    pub fn ready(&self) -> bool {
        use std::os::fd::AsRawFd;
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let mut p = libc::pollfd { fd: self.reader.get_ref().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: p is one valid pollfd for the duration of the call; timeout 0.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    }

    /// Send a request and wait for the reply.
    pub fn ask(&mut self, line: &str, timeout: Duration) -> Result<Msg, String> {
        self.send(line)?;
        self.recv(Some(timeout))
    }
}
