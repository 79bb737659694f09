//! A hand-written HTTP/1.1 responder on 127.0.0.1 for the HTTP backend's tests.
//!
//! Written on `std::net::TcpListener` rather than axum because the tests need faults at
//! the socket level (a connection closed after the request, an answer that never comes),
//! which a framework hides, and because it adds no dependency to build. It answers one
//! request per connection (`Connection: close`). Every loop is bounded: the accept loop
//! stops when the server is dropped or after [`MAX_LIFETIME`], reads time out, and stalls
//! end at their duration or when the server stops.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Safety bound on a server's life, far above any test's.
pub const MAX_LIFETIME: Duration = Duration::from_secs(120);

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
    /// How many earlier requests carried the same `seed` (0 on the first attempt).
    pub attempt: usize,
}

impl Seen {
    pub fn seed(&self) -> u64 {
        self.body["seed"].as_u64().unwrap_or(u64::MAX)
    }
}

/// What the server does with a request.
pub enum Reply {
    /// Answer with this status and body after `delay`.
    Respond {
        status: u16,
        body: String,
        delay: Duration,
        headers: Vec<(String, String)>,
    },
    /// Never answer: hold the connection for this long (or until the server stops), then
    /// close it.
    Stall(Duration),
    /// Close the connection without answering.
    Drop,
}

impl Reply {
    pub fn ok(body: String) -> Reply {
        Reply::Respond {
            status: 200,
            body,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Respond {
            status,
            body: body.to_string(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
}

/// A chat completion as vLLM writes it.
pub fn completion(
    content: &str,
    finish: &str,
    prompt_tokens: u32,
    completion_tokens: u32,
) -> String {
    serde_json::json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "model": "mock",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
    .to_string()
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

pub struct MockServer {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl MockServer {
    /// Listens on a free loopback port and answers each request with `handler`.
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (stop, seen, connections) = (stop.clone(), seen.clone(), connections.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LIFETIME {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (stop, seen, handler) =
                                (stop.clone(), seen.clone(), handler.clone());
                            let handle = std::thread::spawn(move || {
                                serve_one(stream, &stop, &seen, handler.as_ref())
                            });
                            connections.lock().unwrap().push(handle);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        MockServer {
            port,
            stop,
            seen,
            accept: Some(accept),
            connections,
        }
    }

    /// The base URL, as given to `--endpoint`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let handles: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        for handle in handles {
            let _ = handle.join();
        }
    }
}

fn serve_one(stream: TcpStream, stop: &AtomicBool, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    // Accepted sockets may inherit non-blocking mode; reads below must block (with a limit).
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Some(mut request) = read_request(&stream) else {
        return;
    };
    {
        let mut log = seen.lock().unwrap();
        let seed = request.seed();
        request.attempt = log.iter().filter(|s| s.seed() == seed).count();
        log.push(request.clone());
    }
    let mut stream = stream;
    match handler(&request) {
        Reply::Respond {
            status,
            body,
            delay,
            headers,
        } => {
            if !sleep_unless_stopped(delay, stop) {
                return;
            }
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                reason(status),
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
            let _ = stream.flush();
            let _ = stream.shutdown(Shutdown::Write);
        }
        Reply::Stall(duration) => {
            sleep_unless_stopped(duration, stop);
            let _ = stream.shutdown(Shutdown::Both);
        }
        Reply::Drop => {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Sleeps in short steps; false when the server stopped meanwhile.
fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5).min(until - Instant::now()));
    }
    true
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    // Header count is bounded: a request with more than 100 lines of headers is refused.
    for _ in 0..100 {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            let length: usize = headers
                .get("content-length")
                .and_then(|v: &String| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).ok()?;
            return Some(Seen {
                method,
                path,
                headers,
                body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                attempt: 0,
            });
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    None
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
