//! `qsub -a [[[[CC]YY]MM]DD]hhmm[.SS]`: the POSIX touch-style date, as Torque's `cvtdate`.
//!
//! Omitted fields default to "now", and an omitted field rolls forward when the given time
//! would otherwise lie in the past: `-a 0900` at 10:00 means tomorrow at 09:00, `-a 05hhmm`
//! on the 6th means the 5th of next month, a month before the current one means next year.
//! A two-digit year below 69 is 20YY, otherwise 19YY. Out-of-range days are normalised the
//! way `mktime(3)` does (31 April is 1 May).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike};

/// Parses `spec` relative to `now`; returns epoch seconds, or `None` for an illegal value.
pub fn parse_exec_time<Tz: TimeZone>(spec: &str, now: &DateTime<Tz>) -> Option<i64> {
    let (digits, seconds) = match spec.split_once('.') {
        Some((d, s)) => {
            if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let sec: u32 = s.parse().ok()?;
            if sec > 59 {
                return None;
            }
            (d, sec)
        }
        None => (spec, 0),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let two = |s: &str, at: usize| -> Option<i64> { s.get(at..at + 2)?.parse().ok() };

    let local = now.naive_local();
    let mut year = i64::from(local.year());
    let mut month0 = i64::from(local.month0());
    let mut mday = i64::from(local.day());
    let (hour, minute);

    let mut rest = digits;
    let mut year_given = false;
    let mut month_given = false;
    let mut day_given = false;
    match digits.len() {
        12 | 10 | 8 | 6 | 4 => {}
        _ => return None,
    }
    if rest.len() >= 10 {
        let yy;
        if rest.len() == 12 {
            let cc = two(rest, 0)?;
            yy = two(rest, 2)?;
            year = cc * 100 + yy;
            rest = &rest[4..];
        } else {
            yy = two(rest, 0)?;
            year = if yy > 68 { 1900 + yy } else { 2000 + yy };
            rest = &rest[2..];
        }
        year_given = true;
    }
    if rest.len() >= 8 {
        let mm = two(rest, 0)?;
        if !(1..=12).contains(&mm) {
            return None;
        }
        // Torque compares the 1-based month with the 0-based current one: only a month
        // strictly before the current one moves to next year.
        if !year_given && mm <= i64::from(local.month0()) {
            year += 1;
        }
        month0 = mm - 1;
        month_given = true;
        rest = &rest[2..];
    }
    if rest.len() >= 6 {
        let dd = two(rest, 0)?;
        if !(1..=31).contains(&dd) {
            return None;
        }
        if !month_given && dd < i64::from(local.day()) {
            month0 += 1;
        }
        mday = dd;
        day_given = true;
        rest = &rest[2..];
    }
    hour = two(rest, 0)?;
    minute = two(rest, 2)?;
    if hour > 23 || minute > 59 {
        return None;
    }
    if !day_given
        && (hour < i64::from(local.hour())
            || (hour == i64::from(local.hour()) && minute <= i64::from(local.minute())))
    {
        mday += 1;
    }

    // mktime-style normalisation of month and day overflow.
    year += month0.div_euclid(12);
    month0 = month0.rem_euclid(12);
    let first = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(month0 + 1).ok()?,
        1,
    )?;
    let date = first.checked_add_signed(Duration::days(mday - 1))?;
    let naive: NaiveDateTime = date.and_hms_opt(
        u32::try_from(hour).ok()?,
        u32::try_from(minute).ok()?,
        seconds,
    )?;
    let tz = now.timezone();
    let resolved = tz.from_local_datetime(&naive).earliest().or_else(|| {
        // In a DST gap mktime moves forward; an hour later always exists.
        tz.from_local_datetime(&(naive + Duration::hours(1)))
            .earliest()
    })?;
    Some(resolved.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn epoch(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn hhmm_today_or_tomorrow() {
        let now = at(2026, 11, 21, 17, 0);
        assert_eq!(
            parse_exec_time("2359", &now),
            Some(epoch(2026, 11, 21, 23, 59, 0))
        );
        assert_eq!(
            parse_exec_time("0900", &now),
            Some(epoch(2026, 11, 22, 9, 0, 0))
        );
        // The current minute counts as past.
        assert_eq!(
            parse_exec_time("1700", &now),
            Some(epoch(2026, 11, 22, 17, 0, 0))
        );
        assert_eq!(
            parse_exec_time("2359.30", &now),
            Some(epoch(2026, 11, 21, 23, 59, 30))
        );
    }

    #[test]
    fn day_month_year_roll_forward() {
        let now = at(2026, 11, 21, 17, 0);
        // Day before today: next month.
        assert_eq!(
            parse_exec_time("051200", &now),
            Some(epoch(2026, 12, 5, 12, 0, 0))
        );
        // Same day, earlier hour: stays (day given).
        assert_eq!(
            parse_exec_time("210800", &now),
            Some(epoch(2026, 11, 21, 8, 0, 0))
        );
        // Month before the current one: next year.
        assert_eq!(
            parse_exec_time("03011200", &now),
            Some(epoch(2027, 3, 1, 12, 0, 0))
        );
        // Current month: this year.
        assert_eq!(
            parse_exec_time("11251200", &now),
            Some(epoch(2026, 11, 25, 12, 0, 0))
        );
        assert_eq!(
            parse_exec_time("2701021200", &now),
            Some(epoch(2027, 1, 2, 12, 0, 0))
        );
        assert_eq!(
            parse_exec_time("7001021200", &now),
            Some(epoch(1970, 1, 2, 12, 0, 0))
        );
        assert_eq!(
            parse_exec_time("202801021200.05", &now),
            Some(epoch(2028, 1, 2, 12, 0, 5))
        );
        // December rolls into January of next year.
        let dec = at(2026, 12, 31, 23, 0);
        assert_eq!(
            parse_exec_time("2200", &dec),
            Some(epoch(2027, 1, 1, 22, 0, 0))
        );
        // 31 November is normalised to 1 December, as mktime does.
        assert_eq!(
            parse_exec_time("11310000", &now),
            Some(epoch(2026, 12, 1, 0, 0, 0))
        );
    }

    #[test]
    fn illegal_values() {
        let now = at(2026, 11, 21, 17, 0);
        for bad in [
            "", "1", "123", "12345", "2460", "2400", "1299", "abcd", "13011200", "00011200",
            "321200", "001200", "2359.6", "2359.60", "2359.ab", "12:00",
        ] {
            assert_eq!(parse_exec_time(bad, &now), None, "{bad}");
        }
    }
}
