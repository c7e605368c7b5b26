//! fake-loki out of file descriptors (issue 14 item 4): the accept loop backs off instead
//! of spinning, logs rate-limited, and `/ready` keeps answering on an open connection.
//! Runs the real binary under `ulimit -n` so the limit does not touch other tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the `(comm)`: state is 3rd overall; utime and stime are 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ready_on(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = conn.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn accept_backs_off_when_descriptors_run_out() {
    let bin = env!("CARGO_BIN_EXE_fake-loki");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n 48 && exec {bin} --listen 127.0.0.1:0"))
        .env("RUST_LOG", "warn,fake_loki=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("listening line");
        if let Some(a) = line.split("listening on ").nth(1) {
            break a.trim().to_string();
        }
    };
    let mut kept = TcpStream::connect(&addr).unwrap();
    assert!(ready_on(&mut kept).starts_with("HTTP/1.1 200"));
    // Use up the server's descriptors; the kernel keeps queueing connections.
    let flood: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(flood.len() > 48);
    // Wait until the server reports the failure.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut warns = 0;
    while warns == 0 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            warns += usize::from(l.contains("accept failed"));
        }
    }
    assert_eq!(warns, 1, "no accept failure logged");
    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    // A measurement window, not synchronisation: the server is starved throughout.
    std::thread::sleep(Duration::from_secs(2));
    let cpu = (cpu_ticks(pid) - ticks0) as f64 / 100.0;
    let wall = t0.elapsed().as_secs_f64();
    warns += rx
        .try_iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        cpu < 0.2 * wall,
        "accept loop spins: {cpu} CPU-s in {wall} s"
    );
    assert!(warns <= 2, "{warns} accept-failure lines in {wall} s");
    assert!(ready_on(&mut kept).starts_with("HTTP/1.1 200"));
    drop(flood);
    let _ = child.kill();
    let _ = child.wait();
}
