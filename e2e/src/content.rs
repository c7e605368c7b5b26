//! Realistic log content: several services, levels, logfmt / JSON / plain bodies, multi-line Java
//! and Python stack traces, and occasional very long lines. Deterministic for a seeded RNG.
//!
//! Every physical line carries its own marker (see [`crate::marker`]): kubelet writes each line of
//! a stack trace as its own CRI line and the agent has no multi-line stage, so the checker counts
//! physical lines, each with its own sequence number. A very long line is one logical entry (the
//! runtime splits it into `P` chunks; the agent joins them).

use rand::Rng;

/// Where the marker goes in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// `<marker> <text>`: plain text and logfmt lines (the marker is itself valid logfmt).
    Prefix(String),
    /// `{"marker":"<marker>",<rest>`: a JSON object whose first field is the marker.
    Json(String),
}

impl Piece {
    /// Renders the line with its marker.
    pub fn render(&self, marker: &str) -> String {
        match self {
            Piece::Prefix(text) => format!("{marker} {text}"),
            Piece::Json(rest) => format!("{{\"marker\":\"{marker}\",{rest}"),
        }
    }
}

/// One logical event: the stream it goes to and its physical lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub stream: &'static str,
    pub lines: Vec<Piece>,
}

const SERVICES: &[&str] = &[
    "checkout",
    "payments",
    "inventory",
    "auth",
    "search",
    "frontend",
];
const PATHS: &[&str] = &[
    "/api/v1/orders",
    "/api/v1/cart",
    "/healthz",
    "/login",
    "/search",
    "/api/v1/items/42",
];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const MESSAGES: &[&str] = &[
    "request completed",
    "cache miss, loading from database",
    "retrying upstream call",
    "user session refreshed",
    "slow query detected",
    "connection pool exhausted, waiting",
    "order placed",
    "payment authorised",
];
const JAVA_FRAMES: &[&str] = &[
    "at com.example.shop.OrderService.place(OrderService.java:118)",
    "at com.example.shop.OrderController.post(OrderController.java:57)",
    "at org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)",
    "at javax.servlet.http.HttpServlet.service(HttpServlet.java:750)",
    "at org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:166)",
    "at java.base/java.lang.Thread.run(Thread.java:833)",
];
const PY_FRAMES: &[(&str, &str)] = &[
    (
        "File \"/app/server.py\", line 88, in handle",
        "    return self.router.dispatch(req)",
    ),
    (
        "File \"/app/router.py\", line 31, in dispatch",
        "    return view(req, **kwargs)",
    ),
    (
        "File \"/app/views/orders.py\", line 152, in create",
        "    total = compute_total(items)",
    ),
    (
        "File \"/app/pricing.py\", line 17, in compute_total",
        "    return sum(i.price * i.qty for i in items)",
    ),
];

/// Content settings.
#[derive(Debug, Clone, Copy)]
pub struct ContentMix {
    /// Probability that an event is a stack trace (Java or Python).
    pub trace_ratio: f64,
    /// Probability that an event is one very long line.
    pub long_line_ratio: f64,
    /// Length range of a very long line, in bytes.
    pub long_line_min: usize,
    pub long_line_max: usize,
}

impl Default for ContentMix {
    fn default() -> Self {
        ContentMix {
            trace_ratio: 0.02,
            long_line_ratio: 0.002,
            long_line_min: 17 * 1024,
            long_line_max: 48 * 1024,
        }
    }
}

fn pick<'a, R: Rng>(rng: &mut R, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

fn level<R: Rng>(rng: &mut R) -> &'static str {
    match rng.random_range(0..100) {
        0..10 => "debug",
        10..72 => "info",
        72..90 => "warn",
        _ => "error",
    }
}

/// Generates the next event for a container running `service`.
pub fn next_event<R: Rng>(rng: &mut R, mix: &ContentMix, service_hint: usize) -> Event {
    let service = SERVICES[service_hint % SERVICES.len()];
    let roll: f64 = rng.random();
    if roll < mix.long_line_ratio {
        let len = rng.random_range(mix.long_line_min..=mix.long_line_max.max(mix.long_line_min));
        let fill: String = (0..len)
            .map(|i| char::from(b'a' + ((i * 7 + len) % 26) as u8))
            .collect();
        return Event {
            stream: "stdout",
            lines: vec![Piece::Json(format!(
                "\"level\":\"info\",\"service\":\"{service}\",\"msg\":\"bulk payload\",\"payload\":\"{fill}\"}}"
            ))],
        };
    }
    if roll < mix.long_line_ratio + mix.trace_ratio {
        return if rng.random_bool(0.5) {
            java_trace(rng, service)
        } else {
            python_trace(rng, service)
        };
    }
    let lvl = level(rng);
    let stream = if lvl == "error" { "stderr" } else { "stdout" };
    let msg = pick(rng, MESSAGES);
    let dur = rng.random_range(1..2500);
    let status = [200, 200, 200, 201, 204, 404, 500][rng.random_range(0..7)];
    let method = pick(rng, METHODS);
    let path = pick(rng, PATHS);
    let user = rng.random_range(1000..99999);
    let piece = match rng.random_range(0..3) {
        0 => Piece::Prefix(format!(
            "level={lvl} service={service} msg=\"{msg}\" method={method} path={path} status={status} duration_ms={dur} user=u{user}"
        )),
        1 => Piece::Json(format!(
            "\"level\":\"{lvl}\",\"service\":\"{service}\",\"msg\":\"{msg}\",\"http\":{{\"method\":\"{method}\",\"path\":\"{path}\",\"status\":{status}}},\"latency_ms\":{dur},\"user\":\"u{user}\"}}"
        )),
        _ => Piece::Prefix(format!(
            "{} [{service}-worker-{}] {} - {msg} ({dur} ms)",
            lvl.to_uppercase(),
            rng.random_range(1..9),
            "c.e.shop.Handler"
        )),
    };
    Event {
        stream,
        lines: vec![piece],
    }
}

fn java_trace<R: Rng>(rng: &mut R, service: &str) -> Event {
    let depth = rng.random_range(3..=JAVA_FRAMES.len());
    let mut lines = vec![Piece::Prefix(format!(
        "ERROR [{service}] Exception in thread \"http-nio-8080-exec-{}\" java.lang.IllegalStateException: order {} has no items",
        rng.random_range(1..20),
        rng.random_range(1..1_000_000)
    ))];
    lines.extend(
        JAVA_FRAMES[..depth]
            .iter()
            .map(|f| Piece::Prefix(format!("\t{f}"))),
    );
    if rng.random_bool(0.5) {
        lines.push(Piece::Prefix(
            "Caused by: java.sql.SQLTransientConnectionException: pool timeout after 30000ms"
                .to_owned(),
        ));
        lines.push(Piece::Prefix("\t... 4 more".to_owned()));
    }
    Event {
        stream: "stderr",
        lines,
    }
}

fn python_trace<R: Rng>(rng: &mut R, _service: &str) -> Event {
    let depth = rng.random_range(2..=PY_FRAMES.len());
    let mut lines = vec![Piece::Prefix(
        "Traceback (most recent call last):".to_owned(),
    )];
    for (file, code) in &PY_FRAMES[..depth] {
        lines.push(Piece::Prefix(format!("  {file}")));
        lines.push(Piece::Prefix(code.to_string()));
    }
    lines.push(Piece::Prefix(format!(
        "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int' (item {})",
        rng.random_range(1..500)
    )));
    Event {
        stream: "stderr",
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn same_seed_same_content() {
        let mix = ContentMix::default();
        let a: Vec<Event> = {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            (0..500).map(|i| next_event(&mut rng, &mix, i)).collect()
        };
        let b: Vec<Event> = {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            (0..500).map(|i| next_event(&mut rng, &mix, i)).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn every_rendered_line_carries_a_parseable_marker_and_the_mix_is_varied() {
        let mix = ContentMix {
            trace_ratio: 0.1,
            long_line_ratio: 0.05,
            ..ContentMix::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (mut json, mut traces, mut long, mut seq) = (0, 0, 0, 0u64);
        for i in 0..2000 {
            let ev = next_event(&mut rng, &mix, i);
            if ev.lines.len() > 1 {
                traces += 1;
            }
            for p in &ev.lines {
                seq += 1;
                let m = format!("run=r src=c/n/p/k/{} seq={seq}", ev.stream);
                let line = p.render(&m);
                if line.len() > 16 * 1024 {
                    long += 1;
                    assert!(line.len() <= 48 * 1024 + 200);
                }
                if line.starts_with('{') {
                    json += 1;
                    let v: serde_json::Value = serde_json::from_str(&line).expect("valid json");
                    assert!(v.get("marker").is_some());
                }
                let parsed = marker::parse(&line).expect("marker");
                assert_eq!(parsed.seq, seq);
            }
        }
        assert!(
            json > 100 && traces > 50 && long > 20,
            "json={json} traces={traces} long={long}"
        );
    }
}
