//! Small value checks shared by the kinds: integer ranges, log levels and
//! Kubernetes (Go) durations.

use crate::validate::Validator;

/// For `skip_serializing_if` on plain booleans.
pub fn is_false(value: &bool) -> bool {
    !*value
}

/// An integer within `min..=max`.
pub fn check_range(v: &mut Validator, value: i64, min: i64, max: i64) {
    if !(min..=max).contains(&value) {
        v.error(format!("{value} is out of range {min} to {max}"));
    }
}

/// The log levels Calico's daemons accept.
pub const LOG_LEVELS: &[&str] = &["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];

/// Checks a log level against Calico's case-insensitive list.
pub fn check_log_level(v: &mut Validator, level: &str, allowed: &[&str]) {
    if !level.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(level)) {
        v.error(format!(
            "unknown log level {level:?}; use one of {}",
            allowed.join(", ")
        ));
    }
}

/// Parses a Kubernetes (Go) duration such as `90s`, `1m30s`, `1.5h`,
/// `300ms` or `0`, returning seconds.
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if body == "0" {
        return Ok(0.0);
    }
    if body.is_empty() {
        return Err("empty duration".to_string());
    }
    let negative = text.starts_with('-');
    let mut rest = body;
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?} is missing a unit (ns, us, ms, s, m, h)"))?;
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(format!("{text:?} is not a duration like 90s or 1m30s"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 90s or 1m30s"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => {
                return Err(format!(
                    "{text:?} has unknown unit {unit:?} (use ns, us, ms, s, m or h)"
                ));
            }
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Ok(if negative { -total } else { total })
}

/// A non-negative Kubernetes duration.
pub fn check_duration(v: &mut Validator, text: &str) {
    match parse_duration(text) {
        Ok(seconds) if seconds < 0.0 => v.error(format!("duration {text} is negative")),
        Ok(_) => {}
        Err(e) => v.error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_kubernetes() {
        for (text, seconds) in [
            ("90s", 90.0),
            ("1m30s", 90.0),
            ("1.5h", 5400.0),
            ("300ms", 0.3),
            ("0", 0.0),
            ("2h45m", 9900.0),
        ] {
            let parsed = parse_duration(text).expect("a valid duration");
            assert!((parsed - seconds).abs() < 1e-9, "{text} -> {parsed}");
        }
    }

    #[test]
    fn hours_minutes_and_seconds_add_up() {
        for total in (0..200_000u32).step_by(37) {
            let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
            let text = format!("{h}h{m}m{s}s");
            let parsed = parse_duration(&text).expect("a valid duration");
            assert!(
                (parsed - f64::from(total)).abs() < 1e-6,
                "{text} -> {parsed}"
            );
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for text in ["", "90", "s", "1x", "1..5s", "ten seconds", "1m 30s"] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }
}
