//! Value parsers the bench binaries' options share (with `clap`'s `value_parser`).

use std::time::Duration;

/// A whole number above 0: a count or a size.
pub fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("a whole number above 0, not {text}")),
        Ok(n) => Ok(n),
    }
}

/// A whole number of milliseconds.
pub fn millis(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse()
        .map(Duration::from_millis)
        .map_err(|_| format!("not a whole number of milliseconds: {text}"))
}

/// A whole number of minutes above 0.
pub fn positive_minutes(text: &str) -> Result<Duration, String> {
    positive(text).map(|minutes| Duration::from_secs(60 * minutes as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_durations() {
        assert_eq!(positive(" 64"), Ok(64));
        assert!(positive("0").is_err() && positive("-1").is_err() && positive("x").is_err());
        assert_eq!(millis("2000"), Ok(Duration::from_secs(2)));
        assert_eq!(positive_minutes("20"), Ok(Duration::from_secs(1200)));
        assert!(positive_minutes("0").is_err());
    }
}
