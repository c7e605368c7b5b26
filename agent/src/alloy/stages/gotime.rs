//! Go's `time.Parse` / `time.ParseInLocation` for `stage.timestamp`: Alloy hands `format`
//! straight to Go, so a layout is written against Go's reference time
//! (`Mon Jan 2 15:04:05 MST 2006`) and parsed with Go's rules, quirks included: `15` and `1`
//! take one or two digits, runs of spaces match runs of spaces, a fractional second is accepted
//! after seconds even when the layout has none, month and day names ignore case, an unknown zone
//! abbreviation means offset 0, and a time without a zone is in the default location.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::{OffsetName, Tz};

/// A zone a layout without its own offset is read in (`location`, Go's `time.LoadLocation`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Location {
    Utc,
    Tz(Tz),
}

impl Location {
    /// Go's `time.LoadLocation`: "" and "UTC" are UTC, anything else an IANA name. "Local" is
    /// the process zone; the agent runs in UTC like Alloy's container image, so it is UTC.
    pub fn load(name: &str) -> Result<Location, String> {
        match name {
            "" | "UTC" | "Local" => Ok(Location::Utc),
            _ => name
                .parse::<Tz>()
                .map(Location::Tz)
                .map_err(|_| format!("unknown time zone {name}")),
        }
    }

    /// Offset east of UTC, in seconds, in effect at the Unix second `unix`.
    fn offset_at(&self, unix: i64) -> i32 {
        match self {
            Location::Utc => 0,
            Location::Tz(tz) => match chrono::DateTime::from_timestamp(unix, 0) {
                Some(t) => tz
                    .offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc(),
                None => 0,
            },
        }
    }

    fn abbreviation_at(&self, unix: i64) -> Option<(String, i32)> {
        match self {
            Location::Utc => Some(("UTC".into(), 0)),
            Location::Tz(tz) => {
                let t = chrono::DateTime::from_timestamp(unix, 0)?;
                let off = tz.offset_from_utc_datetime(&t.naive_utc());
                Some((off.abbreviation()?.to_string(), off.fix().local_minus_utc()))
            }
        }
    }

    /// Go's `Location.lookupName`: the offset of a zone called `name`, preferring one in effect
    /// at `unix`. Go scans the location's whole zone table; this samples a year around `unix`,
    /// which finds both halves of a DST pair.
    fn lookup_name(&self, name: &str, unix: i64) -> Option<i32> {
        const MONTH: i64 = 30 * 86_400;
        // Around 2000 as well, for year-less layouts that are parsed in year 0.
        const Y2K: i64 = 946_684_800;
        let seen: Vec<(String, i32)> = (-6..=6)
            .map(|m| unix + m * MONTH)
            .chain((-6..=6).map(|m| Y2K + m * MONTH))
            .filter_map(|t| self.abbreviation_at(t))
            .filter(|(n, _)| n == name)
            .collect();
        seen.iter()
            .find(|(_, off)| {
                self.abbreviation_at(unix - i64::from(*off))
                    .is_some_and(|(n, _)| n == name)
            })
            .or(seen.first())
            .map(|(_, off)| *off)
    }

    /// Go's `time.Date` in this location: the wall clock read with the offset in effect then
    /// (Go's choice inside DST gaps and overlaps).
    fn resolve(&self, wall: NaiveDateTime) -> i64 {
        let unix = wall.and_utc().timestamp();
        let first = self.offset_at(unix);
        let offset = if first != 0 {
            self.offset_at(unix - i64::from(first))
        } else {
            0
        };
        unix - i64::from(offset)
    }
}

/// One element of a Go layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    Tz,
    Iso8601Tz,
    Iso8601SecondsTz,
    Iso8601ShortTz,
    Iso8601ColonTz,
    Iso8601ColonSecondsTz,
    NumTz,
    NumSecondsTz,
    NumShortTz,
    NumColonTz,
    NumColonSecondsTz,
    /// `.000`: exactly this many digits.
    FracSecond0(usize),
    /// `.999`: any number of digits, or none.
    FracSecond9,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Lit(Vec<u8>),
    Std(Std),
}

/// A compiled Go layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    chunks: Vec<Chunk>,
}

fn is_digit(s: &[u8], i: usize) -> bool {
    s.get(i).is_some_and(u8::is_ascii_digit)
}

fn starts_lower(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_lowercase)
}

/// Go's `nextStdChunk`: the literal before the first element, the element, and the rest.
fn next_std(l: &[u8]) -> (&[u8], Option<Std>, &[u8]) {
    let at = |i: usize, s: &str| l[i..].starts_with(s.as_bytes());
    for i in 0..l.len() {
        let (std, len) = match l[i] {
            b'J' if at(i, "January") => (Std::LongMonth, 7),
            b'J' if at(i, "Jan") && !starts_lower(&l[i + 3..]) => (Std::Month, 3),
            b'M' if at(i, "Monday") => (Std::LongWeekDay, 6),
            b'M' if at(i, "Mon") && !starts_lower(&l[i + 3..]) => (Std::WeekDay, 3),
            b'M' if at(i, "MST") => (Std::Tz, 3),
            b'0' if l.get(i + 1).is_some_and(|c| (b'1'..=b'6').contains(c)) => (
                [
                    Std::ZeroMonth,
                    Std::ZeroDay,
                    Std::ZeroHour12,
                    Std::ZeroMinute,
                    Std::ZeroSecond,
                    Std::Year,
                ][usize::from(l[i + 1] - b'1')],
                2,
            ),
            b'0' if at(i, "002") => (Std::ZeroYearDay, 3),
            b'1' if at(i, "15") => (Std::Hour, 2),
            b'1' => (Std::NumMonth, 1),
            b'2' if at(i, "2006") => (Std::LongYear, 4),
            b'2' => (Std::Day, 1),
            // `_2006` is a literal `_` and then the year.
            b'_' if at(i, "_2006") => return (&l[..i + 1], Some(Std::LongYear), &l[i + 5..]),
            b'_' if at(i, "_2") => (Std::UnderDay, 2),
            b'_' if at(i, "__2") => (Std::UnderYearDay, 3),
            b'3' => (Std::Hour12, 1),
            b'4' => (Std::Minute, 1),
            b'5' => (Std::Second, 1),
            b'P' if at(i, "PM") => (Std::PM, 2),
            b'p' if at(i, "pm") => (Std::Pm, 2),
            b'-' if at(i, "-070000") => (Std::NumSecondsTz, 7),
            b'-' if at(i, "-07:00:00") => (Std::NumColonSecondsTz, 9),
            b'-' if at(i, "-0700") => (Std::NumTz, 5),
            b'-' if at(i, "-07:00") => (Std::NumColonTz, 6),
            b'-' if at(i, "-07") => (Std::NumShortTz, 3),
            b'Z' if at(i, "Z070000") => (Std::Iso8601SecondsTz, 7),
            b'Z' if at(i, "Z07:00:00") => (Std::Iso8601ColonSecondsTz, 9),
            b'Z' if at(i, "Z0700") => (Std::Iso8601Tz, 5),
            b'Z' if at(i, "Z07:00") => (Std::Iso8601ColonTz, 6),
            b'Z' if at(i, "Z07") => (Std::Iso8601ShortTz, 3),
            b'.' | b',' if matches!(l.get(i + 1), Some(b'0' | b'9')) => {
                let ch = l[i + 1];
                let mut j = i + 1;
                while l.get(j) == Some(&ch) {
                    j += 1;
                }
                // Only a run of one digit that ends here is a fractional second.
                if is_digit(l, j) {
                    continue;
                }
                let std = if ch == b'0' {
                    Std::FracSecond0(j - i - 1)
                } else {
                    Std::FracSecond9
                };
                return (&l[..i], Some(std), &l[j..]);
            }
            _ => continue,
        };
        return (&l[..i], Some(std), &l[i + len..]);
    }
    (l, None, &[])
}

impl Layout {
    pub fn new(layout: &str) -> Layout {
        let mut chunks = Vec::new();
        let mut rest = layout.as_bytes();
        loop {
            let (lit, std, after) = next_std(rest);
            if !lit.is_empty() {
                chunks.push(Chunk::Lit(lit.to_vec()));
            }
            match std {
                Some(s) => chunks.push(Chunk::Std(s)),
                None => break,
            }
            rest = after;
        }
        Layout { chunks }
    }

    fn std_after(&self, i: usize) -> Option<Std> {
        self.chunks[i + 1..].iter().find_map(|c| match c {
            Chunk::Std(s) => Some(*s),
            Chunk::Lit(_) => None,
        })
    }
}

/// What a parse found, before it is placed on the time line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parsed {
    /// The wall clock as written; year 0 when the layout has none.
    pub wall: NaiveDateTime,
    pub zone: Zone,
}

/// How the wall clock maps to an instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// A numeric offset, `Z`, or a known abbreviation.
    Fixed(i32),
    /// No zone in the value: the default location.
    Default(Location),
}

impl Parsed {
    /// Unix nanoseconds, if representable.
    pub fn unix_nanos(&self) -> Option<i64> {
        let secs = match self.zone {
            Zone::Fixed(off) => self.wall.and_utc().timestamp() - i64::from(off),
            Zone::Default(loc) => loc.resolve(self.wall),
        };
        secs.checked_mul(1_000_000_000)?
            .checked_add(i64::from(self.wall.and_utc().timestamp_subsec_nanos()))
    }

    /// Alloy's `SetYearForLimitedTimeFormat`: the year of `now`, except that December read in
    /// January is last year and January read in December is next year. Go's `AddDate` rolls
    /// Feb 29 into Mar 1 in a year without it.
    pub fn with_year_near(mut self, now: NaiveDateTime) -> Parsed {
        let (m, nm) = (self.wall.month(), now.month());
        let year = match (m, nm) {
            (12, 1) => now.year() - 1,
            (1, 12) => now.year() + 1,
            _ => now.year(),
        };
        let date = NaiveDate::from_ymd_opt(year, m, self.wall.day())
            .or_else(|| NaiveDate::from_ymd_opt(year, m + 1, 1));
        if let Some(d) = date {
            self.wall = d.and_time(self.wall.time());
        }
        self
    }
}

/// Why a value did not match its layout (Go's message shapes, for debug logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    Bad,
    Range(&'static str),
    ExtraText,
}

fn getnum(s: &[u8], fixed: bool) -> Result<(i32, &[u8]), ParseError> {
    if !is_digit(s, 0) {
        return Err(ParseError::Bad);
    }
    if !is_digit(s, 1) {
        if fixed {
            return Err(ParseError::Bad);
        }
        return Ok((i32::from(s[0] - b'0'), &s[1..]));
    }
    Ok((
        i32::from(s[0] - b'0') * 10 + i32::from(s[1] - b'0'),
        &s[2..],
    ))
}

fn getnum3(s: &[u8], fixed: bool) -> Result<(i32, &[u8]), ParseError> {
    let mut n = 0;
    let mut i = 0;
    while i < 3 && is_digit(s, i) {
        n = n * 10 + i32::from(s[i] - b'0');
        i += 1;
    }
    if i == 0 || (fixed && i != 3) {
        return Err(ParseError::Bad);
    }
    Ok((n, &s[i..]))
}

/// Go's `atoi`: an optional sign, then only digits.
fn atoi(s: &[u8]) -> Result<i64, ParseError> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Bad);
    }
    let mut n: i64 = 0;
    for d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(d - b'0')))
            .ok_or(ParseError::Bad)?;
    }
    Ok(if neg { -n } else { n })
}

fn frac_nanos(value: &[u8], mut nbytes: usize) -> Result<i32, ParseError> {
    if !matches!(value.first(), Some(b'.' | b',')) {
        return Err(ParseError::Bad);
    }
    nbytes = nbytes.min(10);
    let ns = atoi(&value[1..nbytes])?;
    if ns < 0 {
        return Err(ParseError::Range("fractional second"));
    }
    let scaled = (nbytes..10).fold(ns, |n, _| n * 10);
    i32::try_from(scaled).map_err(|_| ParseError::Bad)
}

fn lookup<'v>(names: &[&str], value: &'v [u8]) -> Result<(usize, &'v [u8]), ParseError> {
    names
        .iter()
        .position(|n| value.len() >= n.len() && value[..n.len()].eq_ignore_ascii_case(n.as_bytes()))
        .map(|i| (i, &value[names[i].len()..]))
        .ok_or(ParseError::Bad)
}

/// Go's `skip`: the literal must be there; a run of spaces matches a run of spaces.
fn skip<'v>(mut value: &'v [u8], mut lit: &[u8]) -> Result<&'v [u8], ParseError> {
    while let Some(&c) = lit.first() {
        if c == b' ' {
            if value.first().is_some_and(|&v| v != b' ') {
                return Err(ParseError::Bad);
            }
            while lit.first() == Some(&b' ') {
                lit = &lit[1..];
            }
            while value.first() == Some(&b' ') {
                value = &value[1..];
            }
            continue;
        }
        if value.first() != Some(&c) {
            return Err(ParseError::Bad);
        }
        lit = &lit[1..];
        value = &value[1..];
    }
    Ok(value)
}

/// Go's `parseTimeZone`: how long the zone abbreviation at the start of `v` is.
fn zone_len(v: &[u8]) -> Option<usize> {
    if v.len() < 3 {
        return None;
    }
    if v.starts_with(b"ChST") || v.starts_with(b"MeST") {
        return Some(4);
    }
    if v.starts_with(b"GMT") {
        return Some(3 + signed_offset_len(&v[3..]));
    }
    if matches!(v[0], b'+' | b'-') {
        return Some(signed_offset_len(v)).filter(|&n| n > 0);
    }
    let upper = v
        .iter()
        .take(6)
        .take_while(|c| c.is_ascii_uppercase())
        .count();
    match upper {
        3 => Some(3),
        4 if v[3] == b'T' || v.starts_with(b"WITA") => Some(4),
        5 if v[4] == b'T' => Some(5),
        _ => None,
    }
}

/// Go's `parseSignedOffset`: `+h`/`-hh` up to 23, or 0 when it is not one.
fn signed_offset_len(v: &[u8]) -> usize {
    if !matches!(v.first(), Some(b'+' | b'-')) {
        return 0;
    }
    let digits = v[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return 0;
    }
    match atoi(&v[1..1 + digits]) {
        Ok(x) if x <= 23 => 1 + digits,
        _ => 0,
    }
}

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const SHORT_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const SHORT_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

fn is_leap(y: i32) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(month: i32, year: i32) -> i32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's `time.ParseInLocation(layout, value, default)` (and `time.Parse` with UTC).
pub fn parse(layout: &Layout, value: &str, default: Location) -> Result<Parsed, ParseError> {
    let mut v = value.as_bytes();
    let (mut year, mut month, mut day, mut yday) = (0i32, -1i32, -1i32, -1i32);
    let (mut hour, mut min, mut sec, mut nsec) = (0i32, 0i32, 0i32, 0i32);
    let (mut pm, mut am) = (false, false);
    let mut utc = false;
    let mut offset: Option<i32> = None;
    let mut zone_name: Option<String> = None;
    for (i, chunk) in layout.chunks.iter().enumerate() {
        let std = match chunk {
            Chunk::Lit(lit) => {
                v = skip(v, lit)?;
                continue;
            }
            Chunk::Std(s) => *s,
        };
        match std {
            Std::Year => {
                if v.len() < 2 {
                    return Err(ParseError::Bad);
                }
                let y = atoi(&v[..2])? as i32;
                v = &v[2..];
                year = if y >= 69 { y + 1900 } else { y + 2000 };
            }
            Std::LongYear => {
                if v.len() < 4 || !is_digit(v, 0) {
                    return Err(ParseError::Bad);
                }
                year = atoi(&v[..4])? as i32;
                v = &v[4..];
            }
            Std::Month | Std::LongMonth => {
                let names: &[&str] = if std == Std::Month {
                    &SHORT_MONTHS
                } else {
                    &LONG_MONTHS
                };
                let (m, r) = lookup(names, v)?;
                month = m as i32 + 1;
                v = r;
            }
            Std::NumMonth | Std::ZeroMonth => {
                let (m, r) = getnum(v, std == Std::ZeroMonth)?;
                if !(1..=12).contains(&m) {
                    return Err(ParseError::Range("month"));
                }
                (month, v) = (m, r);
            }
            Std::WeekDay => v = lookup(&SHORT_DAYS, v)?.1,
            Std::LongWeekDay => v = lookup(&LONG_DAYS, v)?.1,
            Std::Day | Std::UnderDay | Std::ZeroDay => {
                if std == Std::UnderDay && v.first() == Some(&b' ') {
                    v = &v[1..];
                }
                (day, v) = getnum(v, std == Std::ZeroDay)?;
            }
            Std::UnderYearDay | Std::ZeroYearDay => {
                for _ in 0..2 {
                    if std == Std::UnderYearDay && v.first() == Some(&b' ') {
                        v = &v[1..];
                    }
                }
                (yday, v) = getnum3(v, std == Std::ZeroYearDay)?;
            }
            Std::Hour => {
                (hour, v) = getnum(v, false)?;
                if !(0..24).contains(&hour) {
                    return Err(ParseError::Range("hour"));
                }
            }
            Std::Hour12 | Std::ZeroHour12 => {
                (hour, v) = getnum(v, std == Std::ZeroHour12)?;
                if !(0..=12).contains(&hour) {
                    return Err(ParseError::Range("hour"));
                }
            }
            Std::Minute | Std::ZeroMinute => {
                (min, v) = getnum(v, std == Std::ZeroMinute)?;
                if !(0..60).contains(&min) {
                    return Err(ParseError::Range("minute"));
                }
            }
            Std::Second | Std::ZeroSecond => {
                (sec, v) = getnum(v, std == Std::ZeroSecond)?;
                if !(0..60).contains(&sec) {
                    return Err(ParseError::Range("second"));
                }
                // A fraction in the value the layout does not ask for is read anyway.
                let layout_has_frac = matches!(
                    layout.std_after(i),
                    Some(Std::FracSecond0(_) | Std::FracSecond9)
                );
                if v.len() >= 2 && matches!(v[0], b'.' | b',') && is_digit(v, 1) && !layout_has_frac
                {
                    let mut n = 2;
                    while is_digit(v, n) {
                        n += 1;
                    }
                    nsec = frac_nanos(v, n)?;
                    v = &v[n..];
                }
            }
            Std::PM | Std::Pm => {
                if v.len() < 2 {
                    return Err(ParseError::Bad);
                }
                let (p, a) = if std == Std::PM {
                    (&b"PM"[..], &b"AM"[..])
                } else {
                    (&b"pm"[..], &b"am"[..])
                };
                if &v[..2] == p {
                    pm = true;
                } else if &v[..2] == a {
                    am = true;
                } else {
                    return Err(ParseError::Bad);
                }
                v = &v[2..];
            }
            Std::Iso8601Tz
            | Std::Iso8601SecondsTz
            | Std::Iso8601ShortTz
            | Std::Iso8601ColonTz
            | Std::Iso8601ColonSecondsTz
                if v.first() == Some(&b'Z') =>
            {
                v = &v[1..];
                utc = true;
            }
            Std::Iso8601Tz
            | Std::Iso8601SecondsTz
            | Std::Iso8601ShortTz
            | Std::Iso8601ColonTz
            | Std::Iso8601ColonSecondsTz
            | Std::NumTz
            | Std::NumSecondsTz
            | Std::NumShortTz
            | Std::NumColonTz
            | Std::NumColonSecondsTz => {
                let (off, r) = numeric_offset(std, v)?;
                offset = Some(off);
                v = r;
            }
            Std::Tz => {
                if v.starts_with(b"UTC") {
                    utc = true;
                    v = &v[3..];
                } else {
                    let n = zone_len(v).ok_or(ParseError::Bad)?;
                    zone_name = Some(String::from_utf8_lossy(&v[..n]).into_owned());
                    v = &v[n..];
                }
            }
            Std::FracSecond0(digits) => {
                let n = 1 + digits;
                if v.len() < n {
                    return Err(ParseError::Bad);
                }
                nsec = frac_nanos(v, n)?;
                v = &v[n..];
            }
            Std::FracSecond9 => {
                if v.len() >= 2 && matches!(v[0], b'.' | b',') && is_digit(v, 1) {
                    let mut n = 1;
                    while is_digit(v, n) {
                        n += 1;
                    }
                    nsec = frac_nanos(v, n)?;
                    v = &v[n..];
                }
            }
        }
    }
    if !v.is_empty() {
        return Err(ParseError::ExtraText);
    }
    if pm && hour < 12 {
        hour += 12;
    } else if am && hour == 12 {
        hour = 0;
    }
    if yday >= 0 {
        (month, day) = from_year_day(year, yday, month, day)?;
    } else {
        if month < 0 {
            month = 1;
        }
        if day < 0 {
            day = 1;
        }
    }
    if day < 1 || day > days_in(month, year) {
        return Err(ParseError::Range("day"));
    }
    let wall = NaiveDate::from_ymd_opt(year, month as u32, day as u32)
        .and_then(|d| d.and_hms_nano_opt(hour as u32, min as u32, sec as u32, nsec as u32))
        .ok_or(ParseError::Range("day"))?;
    let zone = if utc {
        Zone::Fixed(0)
    } else if let Some(off) = offset {
        Zone::Fixed(off)
    } else if let Some(name) = zone_name {
        let unix = wall.and_utc().timestamp();
        match default.lookup_name(&name, unix) {
            Some(off) => Zone::Fixed(off),
            // Unknown abbreviations get offset 0, except GMT+h.
            None => Zone::Fixed(
                name.strip_prefix("GMT")
                    .filter(|r| !r.is_empty())
                    .and_then(|r| atoi(r.as_bytes()).ok())
                    .map_or(0, |h| (h * 3600) as i32),
            ),
        }
    } else {
        Zone::Default(default)
    };
    Ok(Parsed { wall, zone })
}

fn numeric_offset(std: Std, v: &[u8]) -> Result<(i32, &[u8]), ParseError> {
    let need = |n: usize| {
        if v.len() < n {
            Err(ParseError::Bad)
        } else {
            Ok(())
        }
    };
    let (h, m, s, rest): (&[u8], &[u8], &[u8], &[u8]) = match std {
        Std::Iso8601ColonTz | Std::NumColonTz => {
            need(6)?;
            if v[3] != b':' {
                return Err(ParseError::Bad);
            }
            (&v[1..3], &v[4..6], b"00", &v[6..])
        }
        Std::NumShortTz | Std::Iso8601ShortTz => {
            need(3)?;
            (&v[1..3], b"00", b"00", &v[3..])
        }
        Std::Iso8601ColonSecondsTz | Std::NumColonSecondsTz => {
            need(9)?;
            if v[3] != b':' || v[6] != b':' {
                return Err(ParseError::Bad);
            }
            (&v[1..3], &v[4..6], &v[7..9], &v[9..])
        }
        Std::Iso8601SecondsTz | Std::NumSecondsTz => {
            need(7)?;
            (&v[1..3], &v[3..5], &v[5..7], &v[7..])
        }
        _ => {
            need(5)?;
            (&v[1..3], &v[3..5], b"00", &v[5..])
        }
    };
    let (hr, _) = getnum(h, true)?;
    let (mm, _) = getnum(m, true)?;
    let (ss, _) = getnum(s, true)?;
    // Go compares with > so that offsets of 24 h, 60 min or 60 s are accepted.
    if hr > 24 {
        return Err(ParseError::Range("time zone offset hour"));
    }
    if mm > 60 {
        return Err(ParseError::Range("time zone offset minute"));
    }
    if ss > 60 {
        return Err(ParseError::Range("time zone offset second"));
    }
    let off = (hr * 60 + mm) * 60 + ss;
    match v[0] {
        b'+' => Ok((off, rest)),
        b'-' => Ok((-off, rest)),
        _ => Err(ParseError::Bad),
    }
}

fn from_year_day(year: i32, mut yday: i32, month: i32, day: i32) -> Result<(i32, i32), ParseError> {
    const BEFORE: [i32; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];
    let (mut m, mut d) = (0, 0);
    if is_leap(year) {
        if yday == 31 + 29 {
            (m, d) = (2, 29);
        } else if yday > 31 + 29 {
            yday -= 1;
        }
    }
    if !(1..=365).contains(&yday) {
        return Err(ParseError::Range("day-of-year"));
    }
    if m == 0 {
        m = (yday - 1) / 31 + 1;
        if BEFORE[m as usize] < yday {
            m += 1;
        }
        d = yday - BEFORE[m as usize - 1];
    }
    if (month >= 0 && month != m) || (day >= 0 && day != d) {
        return Err(ParseError::Range("day-of-year"));
    }
    Ok((m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(layout: &str, v: &str, loc: Location) -> Option<i64> {
        parse(&Layout::new(layout), v, loc).ok()?.unix_nanos()
    }

    fn utc(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn layouts_table() {
        let u = Location::Utc;
        let ny = Location::load("America/New_York").unwrap();
        // (layout, value, location, expected RFC 3339 instant or None)
        let cases: &[(&str, &str, Location, Option<&str>)] = &[
            (
                "2006-01-02T15:04:05Z07:00",
                "2024-05-01T10:00:00Z",
                u,
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                "2006-01-02T15:04:05Z07:00",
                "2024-05-01T10:00:00+02:00",
                u,
                Some("2024-05-01T08:00:00Z"),
            ),
            // A fraction after seconds is read even though the layout has none.
            (
                "2006-01-02T15:04:05Z07:00",
                "2024-05-01T10:00:00.123456789Z",
                u,
                Some("2024-05-01T10:00:00.123456789Z"),
            ),
            (
                "2006-01-02 15:04:05.000",
                "2024-05-01 10:00:00.250",
                u,
                Some("2024-05-01T10:00:00.25Z"),
            ),
            // `.000` wants exactly three digits; `.999` takes any number or none.
            ("2006-01-02 15:04:05.000", "2024-05-01 10:00:00.25", u, None),
            (
                "2006-01-02 15:04:05.999",
                "2024-05-01 10:00:00",
                u,
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                "2006-01-02 15:04:05.999",
                "2024-05-01 10:00:00.1234",
                u,
                Some("2024-05-01T10:00:00.1234Z"),
            ),
            (
                "2006-01-02 15:04:05,000",
                "2024-05-01 10:00:00,500",
                u,
                Some("2024-05-01T10:00:00.5Z"),
            ),
            // `15` and `1`/`2` take one or two digits; `01`/`02` need two.
            (
                "2006-1-2 15:04",
                "2024-5-1 9:07",
                u,
                Some("2024-05-01T09:07:00Z"),
            ),
            ("2006-01-02", "2024-5-01", u, None),
            (
                "02/Jan/2006:15:04:05 -0700",
                "01/May/2024:10:00:00 -0700",
                u,
                Some("2024-05-01T17:00:00Z"),
            ),
            (
                "02/Jan/2006:15:04:05 -0700",
                "01/may/2024:10:00:00 +0530",
                u,
                Some("2024-05-01T04:30:00Z"),
            ),
            (
                "Monday, 02-Jan-06 15:04:05 MST",
                "Wednesday, 01-May-24 10:00:00 UTC",
                u,
                Some("2024-05-01T10:00:00Z"),
            ),
            // An abbreviation the location does not know means offset 0 (Go's fabricated zone).
            (
                "Mon, 02 Jan 2006 15:04:05 MST",
                "Wed, 01 May 2024 10:00:00 PDT",
                u,
                Some("2024-05-01T10:00:00Z"),
            ),
            // ...but one it knows has its offset.
            (
                "Mon, 02 Jan 2006 15:04:05 MST",
                "Wed, 01 May 2024 10:00:00 EDT",
                ny,
                Some("2024-05-01T14:00:00Z"),
            ),
            (
                "Mon, 02 Jan 2006 15:04:05 MST",
                "Wed, 01 Jan 2024 10:00:00 EST",
                ny,
                Some("2024-01-01T15:00:00Z"),
            ),
            (
                "2006-01-02 15:04:05 MST",
                "2024-05-01 10:00:00 GMT+3",
                u,
                Some("2024-05-01T07:00:00Z"),
            ),
            // No zone in the value: the location, with its DST.
            (
                "2006-01-02 15:04:05",
                "2024-07-01 12:00:00",
                ny,
                Some("2024-07-01T16:00:00Z"),
            ),
            (
                "2006-01-02 15:04:05",
                "2024-01-01 12:00:00",
                ny,
                Some("2024-01-01T17:00:00Z"),
            ),
            (
                "2006-01-02 15:04:05",
                "2024-07-01 12:00:00",
                Location::load("Europe/Berlin").unwrap(),
                Some("2024-07-01T10:00:00Z"),
            ),
            // An explicit offset wins over the location.
            (
                "2006-01-02 15:04:05 -0700",
                "2024-07-01 12:00:00 +0000",
                ny,
                Some("2024-07-01T12:00:00Z"),
            ),
            (
                "3:04PM 2006-01-02",
                "1:30PM 2024-05-01",
                u,
                Some("2024-05-01T13:30:00Z"),
            ),
            (
                "3:04PM 2006-01-02",
                "12:30AM 2024-05-01",
                u,
                Some("2024-05-01T00:30:00Z"),
            ),
            ("3:04pm 2006-01-02", "1:30PM 2024-05-01", u, None),
            // Runs of spaces match runs of spaces; `_2` takes a padding space.
            (
                "Jan _2 2006",
                "May  1 2024",
                u,
                Some("2024-05-01T00:00:00Z"),
            ),
            ("Jan _2 2006", "May 1 2024", u, Some("2024-05-01T00:00:00Z")),
            (
                "Jan _2 2006",
                "May 11 2024",
                u,
                Some("2024-05-11T00:00:00Z"),
            ),
            ("2006-01-02", "2024-02-30", u, None),
            ("2006-01-02", "2024-05-01 trailing", u, None),
            ("2006-002", "2024-032", u, Some("2024-02-01T00:00:00Z")),
            (
                "20060102150405",
                "20240501100000",
                u,
                Some("2024-05-01T10:00:00Z"),
            ),
            ("06-01-02", "99-12-31", u, Some("1999-12-31T00:00:00Z")),
            (
                "2006-01-02T15:04:05Z07",
                "2024-05-01T10:00:00-03",
                u,
                Some("2024-05-01T13:00:00Z"),
            ),
            (
                "2006-01-02T15:04:05-07:00:00",
                "2024-05-01T10:00:00+01:00:30",
                u,
                Some("2024-05-01T08:59:30Z"),
            ),
        ];
        for (layout, value, loc, want) in cases {
            assert_eq!(
                ns(layout, value, *loc),
                want.map(utc),
                "{layout:?} {value:?} {loc:?}"
            );
        }
    }

    #[test]
    fn layout_without_year_gets_a_year_near_now() {
        let now = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().naive_utc();
        let l = Layout::new("Jan _2 15:04:05");
        let p = parse(&l, "May  1 10:00:00", Location::Utc).unwrap();
        assert_eq!(p.wall.year(), 0, "Go leaves the year at 0");
        // (value, now, expected)
        let cases = [
            (
                "May  1 10:00:00",
                "2024-06-01T00:00:00Z",
                "2024-05-01T10:00:00Z",
            ),
            (
                "Dec 31 23:59:59",
                "2025-01-01T00:00:05Z",
                "2024-12-31T23:59:59Z",
            ),
            (
                "Jan  1 00:00:01",
                "2024-12-31T23:59:59Z",
                "2025-01-01T00:00:01Z",
            ),
            (
                "Feb 29 12:00:00",
                "2025-03-10T00:00:00Z",
                "2025-03-01T12:00:00Z",
            ),
        ];
        for (v, n, want) in cases {
            let p = parse(&l, v, Location::Utc).unwrap().with_year_near(now(n));
            assert_eq!(p.unix_nanos(), Some(utc(want)), "{v} at {n}");
        }
    }

    #[test]
    fn location_names() {
        assert_eq!(Location::load(""), Ok(Location::Utc));
        assert_eq!(Location::load("UTC"), Ok(Location::Utc));
        assert!(matches!(Location::load("Asia/Tokyo"), Ok(Location::Tz(_))));
        assert!(Location::load("Mars/Olympus").is_err());
    }

    proptest::proptest! {
        /// For any instant and offset, chrono's RFC 3339 rendering parses back to that instant
        /// with Go's RFC3339Nano layout, and with a custom layout read in a fixed location.
        #[test]
        fn any_rfc3339_time_round_trips(
            secs in 0i64..8_000_000_000,
            nanos in 0u32..1_000_000_000,
            offset_min in -1439i32..=1439,
        ) {
            let off = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
            let t = chrono::DateTime::from_timestamp(secs, nanos).unwrap().with_timezone(&off);
            let want = t.timestamp_nanos_opt().unwrap();
            let rfc = t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string();
            let layout = Layout::new("2006-01-02T15:04:05.999999999Z07:00");
            proptest::prop_assert_eq!(ns_of(&layout, &rfc), Some(want));
            let custom = t.format("%d/%b/%Y:%H:%M:%S%.3f %z").to_string();
            let layout = Layout::new("02/Jan/2006:15:04:05.000 -0700");
            proptest::prop_assert_eq!(
                ns_of(&layout, &custom),
                Some(want - i64::from(nanos % 1_000_000))
            );
        }
    }

    fn ns_of(layout: &Layout, v: &str) -> Option<i64> {
        parse(layout, v, Location::Utc).ok()?.unix_nanos()
    }
}
