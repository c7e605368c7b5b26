//! Allocation-free RFC 3339 (nano) timestamp parsing: the CRI and docker timestamps.

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into Unix nanoseconds.
pub fn parse_rfc3339_nanos(s: &[u8]) -> Option<i64> {
    if s.len() < 20 {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<i64> {
        let mut v: i64 = 0;
        for &c in s.get(a..b)? {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, min, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let mut digits = 0;
        while let Some(&c) = s.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            if digits < 9 {
                nanos = nanos * 10 + i64::from(c - b'0');
                digits += 1;
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match s.get(i)? {
        b'Z' | b'z' if i + 1 == s.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == s.len() && s[i + 3] == b':' => {
            let o = num(i + 1, i + 3)? * 3600 + num(i + 4, i + 6)? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_of_timestamps() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01T00:00:01.5Z", Some(1_500_000_000)),
            (
                "2024-05-01T10:00:00.123456789Z",
                Some(1_714_557_600_123_456_789),
            ),
            (
                "2024-05-01T12:00:00.123456789+02:00",
                Some(1_714_557_600_123_456_789),
            ),
            (
                "2024-05-01T10:00:00.1234567891Z",
                Some(1_714_557_600_123_456_789),
            ),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000_000_000)),
            ("2024-13-01T00:00:00Z", None),
            ("2024-05-01T10:00:00", None),
            ("2024-05-01T10:00:00.Z", None),
            ("garbage-and-more-garbage", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_rfc3339_nanos(input.as_bytes()), *want, "{input}");
        }
    }
}
