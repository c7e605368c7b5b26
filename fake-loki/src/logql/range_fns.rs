//! The range functions over unwrapped samples, with Loki's float behaviour (its
//! incremental mean and variance, Prometheus' quantile, and `rate_counter`'s
//! extrapolation, including Loki's nanosecond timestamps in it).

use super::ast::RangeOp;

/// The value of `op` over one window's samples (time order, never empty).
pub fn over_window(
    op: RangeOp,
    param: Option<f64>,
    range_ns: i64,
    ts: &[i64],
    vals: &[f64],
) -> f64 {
    let secs = range_ns as f64 / 1e9;
    match op {
        RangeOp::Count => vals.len() as f64,
        RangeOp::Sum | RangeOp::Bytes => vals.iter().sum(),
        RangeOp::Rate | RangeOp::BytesRate => vals.iter().sum::<f64>() / secs,
        RangeOp::Avg => avg(vals),
        RangeOp::Min => vals
            .iter()
            .copied()
            .fold(vals[0], |m, v| if v < m || m.is_nan() { v } else { m }),
        RangeOp::Max => vals
            .iter()
            .copied()
            .fold(vals[0], |m, v| if v > m || m.is_nan() { v } else { m }),
        RangeOp::Stdvar => variance(vals),
        RangeOp::Stddev => variance(vals).sqrt(),
        RangeOp::Quantile => quantile(param.unwrap_or(f64::NAN), vals),
        RangeOp::First => vals[0],
        RangeOp::Last => vals[vals.len() - 1],
        RangeOp::RateCounter => rate_counter(range_ns, ts, vals),
        RangeOp::Absent => 1.0,
    }
}

fn avg(vals: &[f64]) -> f64 {
    let (mut mean, mut count) = (0.0f64, 0.0f64);
    for &v in vals {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

fn variance(vals: &[f64]) -> f64 {
    let (mut aux, mut count, mut mean) = (0.0f64, 0.0f64, 0.0f64);
    for &v in vals {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

/// Prometheus' quantile: linear interpolation between the closest ranks, NaN first.
fn quantile(q: f64, vals: &[f64]) -> f64 {
    if vals.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut sorted = vals.to_vec();
    sorted.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = sorted.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    sorted[lower as usize] * (1.0 - weight) + sorted[upper as usize] * weight
}

/// Loki's `rate_counter`: Prometheus' extrapolated counter rate, fed with nanosecond
/// timestamps where Prometheus has milliseconds (so the sampled interval is 10⁶ times
/// what it means in seconds). Reproduced as Loki computes it.
fn rate_counter(range_ns: i64, ts: &[i64], vals: &[f64]) -> f64 {
    let n = vals.len();
    if n < 2 {
        return 0.0;
    }
    let range_ms = range_ns / 1_000_000;
    let range_start = ts[0] - range_ms;
    let range_end = ts[n - 1];
    let mut result = vals[n - 1] - vals[0];
    let mut last = 0.0f64;
    for &v in vals {
        if v < last {
            result += last;
        }
        last = v;
    }
    let mut to_start = (ts[0] - range_start) as f64 / 1000.0;
    let to_end = (range_end - ts[n - 1]) as f64 / 1000.0;
    let sampled = (ts[n - 1] - ts[0]) as f64 / 1000.0;
    let avg_gap = sampled / (n - 1) as f64;
    if result > 0.0 && vals[0] >= 0.0 {
        let to_zero = sampled * (vals[0] / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_gap * 1.1;
    let mut extrapolate_to = sampled;
    extrapolate_to += if to_start < threshold {
        to_start
    } else {
        avg_gap / 2.0
    };
    extrapolate_to += if to_end < threshold {
        to_end
    } else {
        avg_gap / 2.0
    };
    result *= extrapolate_to / sampled;
    result / (range_ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn window_functions() {
        let ts = [S, 2 * S, 3 * S, 4 * S];
        let v = [4.0, 1.0, 3.0, 2.0];
        let f = |op, p| over_window(op, p, 10 * S, &ts, &v);
        assert_eq!(f(RangeOp::Sum, None), 10.0);
        assert_eq!(f(RangeOp::Avg, None), 2.5);
        assert_eq!(f(RangeOp::Min, None), 1.0);
        assert_eq!(f(RangeOp::Max, None), 4.0);
        assert_eq!(f(RangeOp::First, None), 4.0);
        assert_eq!(f(RangeOp::Last, None), 2.0);
        assert_eq!(f(RangeOp::Stdvar, None), 1.25);
        assert_eq!(f(RangeOp::Stddev, None), 1.25f64.sqrt());
        assert_eq!(f(RangeOp::Quantile, Some(0.5)), 2.5);
        assert_eq!(f(RangeOp::Quantile, Some(1.0)), 4.0);
        assert_eq!(f(RangeOp::Quantile, Some(2.0)), f64::INFINITY);
        assert_eq!(f(RangeOp::Rate, None), 1.0);
    }

    #[test]
    fn rate_counter_handles_resets_and_short_windows() {
        assert_eq!(rate_counter(60 * S, &[S], &[5.0]), 0.0);
        // 10 → 20, reset, → 5: an increase of 10 + 5 (Prometheus adds the value before a reset).
        let ts = [S, 2 * S, 3 * S];
        let got = rate_counter(60 * S, &ts, &[10.0, 20.0, 5.0]);
        // Increase 15; the start gap is range_ms/1000 = 60 "seconds", under the
        // threshold (1.1 × the 2e6 sampled interval), so it is added; the end gap is 0.
        let sampled = 2e6;
        let want = 15.0 * ((sampled + 60.0) / sampled) / 60.0;
        assert_eq!(got, want);
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// For any window of finite values: min ≤ quantile ≤ max, min ≤ avg ≤ max,
        /// first/last are the ends, and variance is never negative.
        #[test]
        fn window_functions_are_consistent(vals in prop::collection::vec(-1e9f64..1e9, 1..200), q in 0.0f64..=1.0) {
            let ts: Vec<i64> = (0..vals.len() as i64).collect();
            let f = |op, p| over_window(op, p, 60_000_000_000, &ts, &vals);
            let (min, max) = (f(RangeOp::Min, None), f(RangeOp::Max, None));
            let slack = 1e-6 * (max.abs() + min.abs() + 1.0);
            prop_assert!(min <= max);
            let quant = f(RangeOp::Quantile, Some(q));
            prop_assert!(quant >= min - slack && quant <= max + slack);
            let avg = f(RangeOp::Avg, None);
            prop_assert!(avg >= min - slack && avg <= max + slack);
            prop_assert_eq!(f(RangeOp::First, None), vals[0]);
            prop_assert_eq!(f(RangeOp::Last, None), vals[vals.len() - 1]);
            prop_assert!(f(RangeOp::Stdvar, None) >= -slack);
            prop_assert_eq!(f(RangeOp::Quantile, Some(0.0)), min);
            prop_assert_eq!(f(RangeOp::Quantile, Some(1.0)), max);
        }
    }
}
