//! Docker json-file records: `{"log":"text\n","stream":"stdout","time":"…"}`.

use std::borrow::Cow;

use serde::Deserialize;

use super::time::parse_rfc3339_nanos;
use crate::chunk::Stream;

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// One parsed record; `log` still carries its trailing `\n` when the record is complete.
#[derive(Debug, PartialEq, Eq)]
pub struct DockerRecord<'a> {
    pub ts_ns: i64,
    pub stream: Stream,
    pub log: Cow<'a, str>,
}

/// Parses a json-file line; `None` when it is not a docker record.
pub fn parse(line: &[u8]) -> Option<DockerRecord<'_>> {
    let raw: Raw<'_> = serde_json::from_slice(line).ok()?;
    let stream = match raw.stream.as_ref() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => Stream::Unknown,
    };
    Some(DockerRecord {
        ts_ns: parse_rfc3339_nanos(raw.time.as_bytes())?,
        stream,
        log: raw.log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_records() {
        let r = parse(br#"{"log":"a \"q\"\n","stream":"stderr","time":"1970-01-01T00:00:01Z"}"#);
        assert_eq!(
            r,
            Some(DockerRecord {
                ts_ns: 1_000_000_000,
                stream: Stream::Stderr,
                log: Cow::Owned("a \"q\"\n".into()),
            })
        );
        assert_eq!(parse(b"{\"log\":1}"), None);
        assert_eq!(parse(b"plain"), None);
    }
}
