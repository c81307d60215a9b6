//! Torque's job array request, `qsub -t`: `1-3`, `1,5,7-8`, `0-9%2`. The server parses it
//! into the indices of the sub-jobs it creates; `qsub` checks it first with the same rules,
//! so a malformed request is refused before the script is sent.

/// Most sub-jobs one array may have: Torque's `max_job_array_size`, which Torque leaves
/// unset; Capstan sets it because a request is stored as that many jobs at once.
pub const MAX_ARRAY_SIZE: usize = 10_000;

/// Highest index a sub-job may have: Torque's `PBS_MAXJOBARRAY`. Indices need not be dense
/// (`-t 5,90000`), so this is apart from [`MAX_ARRAY_SIZE`].
pub const MAX_ARRAY_INDEX: u32 = 99_999;

/// A parsed `-t` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayRequest {
    /// The sub-jobs' indices, ascending, each once (`1-3,2` is 1, 2, 3).
    pub indices: Vec<u32>,
    /// `%N`: at most N sub-jobs of the array run at once.
    pub slot_limit: Option<u32>,
}

/// Why a `-t` value was refused: either way Torque's `Bad Job Array Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArrayRequestError {
    #[error("malformed array request")]
    Malformed,
    #[error("an index above {MAX_ARRAY_INDEX}")]
    IndexTooHigh,
    #[error("more than {MAX_ARRAY_SIZE} sub-jobs")]
    TooManyJobs,
}

/// Parses `RANGE[,RANGE...][%SLOTS]`, each range `N` or `N-M` with `N <= M`, as Torque's
/// `translate_range_string_to_vector` reads them: a run of commas or spaces separates
/// ranges. The slot limit is at least 1; an empty one (`1-3%`) is none, as in Torque.
pub fn parse(text: &str) -> Result<ArrayRequest, ArrayRequestError> {
    let (ranges, slots) = match text.split_once('%') {
        Some((r, s)) => (r, Some(s)),
        None => (text, None),
    };
    let slot_limit = match slots {
        Some("") | None => None,
        Some(s) => match number(s)? {
            0 => return Err(ArrayRequestError::Malformed),
            n => Some(n),
        },
    };
    let mut items = ranges
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|item| !item.is_empty())
        .peekable();
    if items.peek().is_none() {
        return Err(ArrayRequestError::Malformed);
    }
    let mut indices = std::collections::BTreeSet::new();
    for item in items {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(item)?, number(item)?),
        };
        if first > last {
            return Err(ArrayRequestError::Malformed);
        }
        if last > MAX_ARRAY_INDEX {
            return Err(ArrayRequestError::IndexTooHigh);
        }
        // A range too long on its own is refused before it is taken in (`-t 0-99999`).
        if (last - first) as usize >= MAX_ARRAY_SIZE {
            return Err(ArrayRequestError::TooManyJobs);
        }
        indices.extend(first..=last);
        if indices.len() > MAX_ARRAY_SIZE {
            return Err(ArrayRequestError::TooManyJobs);
        }
    }
    Ok(ArrayRequest {
        indices: indices.into_iter().collect(),
        slot_limit,
    })
}

/// A decimal number of digits only (no sign, no spaces), as Torque's parser reads one.
fn number(text: &str) -> Result<u32, ArrayRequestError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ArrayRequestError::Malformed);
    }
    // Digits that overflow are an index far too high.
    text.parse().map_err(|_| ArrayRequestError::IndexTooHigh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indices(text: &str) -> Vec<u32> {
        parse(text).unwrap().indices
    }

    #[test]
    fn ranges_lists_and_slot_limits() {
        assert_eq!(indices("1-3"), [1, 2, 3]);
        assert_eq!(indices("7"), [7]);
        assert_eq!(indices("1,5,7-8"), [1, 5, 7, 8]);
        assert_eq!(indices("3-4,1-3"), [1, 2, 3, 4]);
        let limited = parse("0-9%2").unwrap();
        assert_eq!(limited.indices.len(), 10);
        assert_eq!(limited.slot_limit, Some(2));
        assert_eq!(parse("1-3").unwrap().slot_limit, None);
        // Torque's separators are runs of commas or spaces; an empty `%` is no limit.
        assert_eq!(indices("1,,2"), [1, 2]);
        assert_eq!(indices(" 1 3-4 "), [1, 3, 4]);
        assert_eq!(parse("1-3%").unwrap().slot_limit, None);
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            "", "abc", "3-1", "%2", " , ", "1-3%0", "-1", "1-", "+1", "1-3x", "1-3%x", "1:3",
        ] {
            assert_eq!(parse(bad), Err(ArrayRequestError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn size_limits() {
        assert_eq!(indices("0-9999").len(), MAX_ARRAY_SIZE);
        assert_eq!(parse("0-10000"), Err(ArrayRequestError::TooManyJobs));
        assert_eq!(
            parse("0-9998,20000-20001"),
            Err(ArrayRequestError::TooManyJobs)
        );
        // Overlapping ranges count each index once.
        assert_eq!(indices("0-9999,5-10").len(), MAX_ARRAY_SIZE);
        assert_eq!(indices("99999"), [MAX_ARRAY_INDEX]);
        assert_eq!(parse("100000"), Err(ArrayRequestError::IndexTooHigh));
        assert_eq!(
            parse("99999999999999999999"),
            Err(ArrayRequestError::IndexTooHigh)
        );
        assert_eq!(parse("0-99999"), Err(ArrayRequestError::TooManyJobs));
    }
}
