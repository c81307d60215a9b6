//! Lending windows of non-dedicated nodes: `window=mon-fri@19:00-07:00,sat-sun`.
//!
//! A window is a weekly schedule of the hours a workstation's owner lends it to the cluster.
//! Items are comma-separated; each is a day or day range (`mon`, `mon-fri`, `fri-mon` wraps,
//! `daily` or `*` for every day), optionally `@HH:MM-HH:MM` (a range whose end is not after its
//! start runs past midnight into the next day). Without `@` the whole day is lent.
//!
//! Pure: times are seconds since the epoch *in local time* (the caller adds the UTC offset),
//! so the scheduler never reads a clock or a time zone database.

use std::fmt;

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// 1970-01-01 was a Thursday: shift so that Monday 00:00 is second 0 of the week.
const EPOCH_TO_MONDAY: i64 = 3 * DAY;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A parsed lending window: merged, sorted `[start, end)` second-of-week intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    text: String,
    intervals: Vec<(i64, i64)>,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn day(name: &str) -> Option<i64> {
    DAYS.iter().position(|d| *d == name).map(|i| i as i64)
}

fn clock(text: &str) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 24 * 60)
        .then_some(h * 3600 + m * 60)
}

impl Window {
    /// Parses the nodes-file syntax; `Err` names what is wrong.
    pub fn parse(text: &str) -> Result<Window, String> {
        let mut raw: Vec<(i64, i64)> = Vec::new();
        for item in text.split(',') {
            let (days, hours) = match item.split_once('@') {
                Some((d, h)) => (d, Some(h)),
                None => (item, None),
            };
            let day_list: Vec<i64> = match days {
                "daily" | "*" => (0..7).collect(),
                _ => {
                    let (first, last) = days.split_once('-').unwrap_or((days, days));
                    let first = day(first).ok_or_else(|| format!("bad day `{first}`"))?;
                    let last = day(last).ok_or_else(|| format!("bad day `{last}`"))?;
                    let len = (last - first).rem_euclid(7) + 1;
                    (0..len).map(|i| (first + i) % 7).collect()
                }
            };
            let (from, to) = match hours {
                None => (0, DAY),
                Some(h) => {
                    let (a, b) = h
                        .split_once('-')
                        .ok_or_else(|| format!("bad hours `{h}`"))?;
                    let a = clock(a).ok_or_else(|| format!("bad time `{a}`"))?;
                    let b = clock(b).ok_or_else(|| format!("bad time `{b}`"))?;
                    (a, if b <= a { b + DAY } else { b })
                }
            };
            for d in day_list {
                let (s, e) = (d * DAY + from, d * DAY + to);
                if e > WEEK {
                    raw.push((s, WEEK));
                    raw.push((0, e - WEEK));
                } else {
                    raw.push((s, e));
                }
            }
        }
        raw.sort_unstable();
        let mut intervals: Vec<(i64, i64)> = Vec::new();
        for (s, e) in raw {
            match intervals.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => intervals.push((s, e)),
            }
        }
        Ok(Window {
            text: text.to_string(),
            intervals,
        })
    }

    fn second_of_week(local: i64) -> i64 {
        (local + EPOCH_TO_MONDAY).rem_euclid(WEEK)
    }

    /// Is the node lent at this local time?
    pub fn is_open(&self, local: i64) -> bool {
        let s = Self::second_of_week(local);
        self.intervals.iter().any(|&(a, b)| a <= s && s < b)
    }

    /// When the open stretch that contains `local` ends (local time); `None` when closed now,
    /// `Some(i64::MAX)` when the window is open all week.
    pub fn open_until(&self, local: i64) -> Option<i64> {
        let s = Self::second_of_week(local);
        let i = self.intervals.iter().position(|&(a, b)| a <= s && s < b)?;
        let (_, mut end) = self.intervals[i];
        let mut remaining = end - s;
        // An interval ending at the week's end continues into one starting at 0.
        let mut guard = 0;
        while end == WEEK {
            match self.intervals.first() {
                Some(&(0, e)) if guard == 0 => {
                    if e == WEEK {
                        return Some(i64::MAX);
                    }
                    remaining += e;
                    end = e;
                    guard += 1;
                }
                _ => break,
            }
        }
        Some(local + remaining)
    }

    /// The next time (local, `>= local`) the window opens; `local` itself when open now.
    pub fn next_open(&self, local: i64) -> Option<i64> {
        if self.is_open(local) {
            return Some(local);
        }
        let s = Self::second_of_week(local);
        let next = self
            .intervals
            .iter()
            .map(|&(a, _)| if a > s { a - s } else { a + WEEK - s })
            .min()?;
        Some(local + next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-11-16 00:00 UTC as local epoch seconds.
    const MON: i64 = 1_794_787_200;

    fn at(day: i64, h: i64, m: i64) -> i64 {
        MON + day * DAY + h * 3600 + m * 60
    }

    #[test]
    fn monday_constant_is_a_monday() {
        assert_eq!(Window::second_of_week(MON), 0);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "",
            "mon-xyz",
            "mon@19:00",
            "mon@25:00-07:00",
            "tue@7-8",
            "sun@10:61-11:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_table() {
        let w = Window::parse("mon-fri@19:00-07:00,sat-sun").unwrap();
        // (name, time, open, open_until)
        let cases = [
            (
                "monday 06:00: the weekend ended at midnight",
                at(0, 6, 0),
                false,
                None,
            ),
            ("monday 12:00 closed", at(0, 12, 0), false, None),
            ("monday 19:00 opens", at(0, 19, 0), true, Some(at(1, 7, 0))),
            (
                "friday 20:00 runs through the weekend",
                at(4, 20, 0),
                true,
                Some(at(7, 0, 0)),
            ),
            ("saturday noon", at(5, 12, 0), true, Some(at(7, 0, 0))),
            ("tuesday 07:00 closed", at(1, 7, 0), false, None),
        ];
        for (name, t, open, until) in cases {
            assert_eq!(w.is_open(t), open, "{name}");
            assert_eq!(w.open_until(t), until, "{name}");
        }
        assert_eq!(w.next_open(at(0, 12, 0)), Some(at(0, 19, 0)));
        assert_eq!(w.next_open(at(0, 20, 0)), Some(at(0, 20, 0)));
    }

    #[test]
    fn always_and_wrapping_days() {
        let w = Window::parse("daily").unwrap();
        assert_eq!(w.open_until(at(2, 3, 0)), Some(i64::MAX));
        let w = Window::parse("sun@22:00-02:00").unwrap();
        assert!(w.is_open(at(6, 23, 0)));
        assert!(w.is_open(at(7, 1, 0)), "wraps into monday");
        assert_eq!(w.open_until(at(6, 23, 0)), Some(at(7, 2, 0)));
        let w = Window::parse("fri-mon").unwrap();
        assert!(w.is_open(at(0, 10, 0)) && w.is_open(at(4, 10, 0)) && !w.is_open(at(2, 10, 0)));
        assert_eq!(w.to_string(), "fri-mon");
    }
}
