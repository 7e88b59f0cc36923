//! The one `Range` form artifact serving needs (RFC 9110 section 14): a single byte range,
//! `bytes=a-b`, `bytes=a-` or `bytes=-n`. Several ranges in one request are refused (a puller
//! asks for one chunk at a time).

use std::ops::Range;

/// Why a `Range` header cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `bytes=…`, or not numbers.
    #[error("malformed Range header {0:?}")]
    Malformed(String),
    /// More than one range.
    #[error("only one byte range per request is served")]
    Multiple,
    /// Outside the content (416).
    #[error("range {0:?} is outside the content of {1} bytes")]
    Unsatisfiable(String, u64),
}

/// The byte range `header` asks of content `size` bytes long; `None` without a header.
///
/// # Errors
/// [`RangeError`] for a header that cannot be served.
pub fn parse(header: Option<&str>, size: u64) -> Result<Option<Range<u64>>, RangeError> {
    let Some(header) = header else {
        return Ok(None);
    };
    let malformed = || RangeError::Malformed(header.chars().take(64).collect());
    let spec = header.trim().strip_prefix("bytes=").ok_or_else(malformed)?;
    if spec.contains(',') {
        return Err(RangeError::Multiple);
    }
    let (first, last) = spec.split_once('-').ok_or_else(malformed)?;
    let number = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        s.parse().map_err(|_| malformed())
    };
    let unsatisfiable = || RangeError::Unsatisfiable(spec.chars().take(64).collect(), size);
    let range = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n = number(suffix)?;
            if n == 0 {
                return Err(unsatisfiable());
            }
            size.saturating_sub(n)..size
        }
        (start, "") => number(start)?..size,
        (start, end) => {
            let (start, end) = (number(start)?, number(end)?);
            if end < start {
                return Err(malformed());
            }
            start..end.saturating_add(1).min(size)
        }
    };
    if range.start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms() {
        assert_eq!(parse(None, 10), Ok(None));
        assert_eq!(parse(Some("bytes=0-3"), 10), Ok(Some(0..4)));
        assert_eq!(parse(Some("bytes=4-"), 10), Ok(Some(4..10)));
        assert_eq!(parse(Some("bytes=-3"), 10), Ok(Some(7..10)));
        assert_eq!(
            parse(Some("bytes=-30"), 10),
            Ok(Some(0..10)),
            "suffix longer than the content"
        );
        assert_eq!(parse(Some("bytes=8-100"), 10), Ok(Some(8..10)), "end clamped");
        assert_eq!(parse(Some(" bytes=9-9 "), 10), Ok(Some(9..10)));
    }

    #[test]
    fn what_is_refused() {
        for bad in [
            "items=0-1",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=-",
            "bytes=0",
            "bytes=+1-2",
        ] {
            assert!(
                matches!(parse(Some(bad), 10), Err(RangeError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!(parse(Some("bytes=0-1,4-5"), 10), Err(RangeError::Multiple));
        assert!(matches!(
            parse(Some("bytes=10-"), 10),
            Err(RangeError::Unsatisfiable(..))
        ));
        assert!(matches!(
            parse(Some("bytes=-0"), 10),
            Err(RangeError::Unsatisfiable(..))
        ));
        assert!(matches!(
            parse(Some("bytes=0-"), 0),
            Err(RangeError::Unsatisfiable(..))
        ));
        assert!(matches!(
            parse(Some("bytes=99999999999999999999999-"), 10),
            Err(RangeError::Malformed(_))
        ));
    }
}
