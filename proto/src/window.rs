//! A terminal's size as it travels for `qsub -I` (`WindowSize`: two `u32`s), and what it is
//! when there is none or it is nonsense: Torque's 20 × 80 (qsub's size without a terminal).

/// Torque's rows and columns for a session with no terminal (`qsub -I -x`).
pub const DEFAULT_ROWS: u16 = 20;
pub const DEFAULT_COLS: u16 = 80;

/// Rows and columns as a peer sent them; a part that is 0 or does not fit a terminal's
/// `u16` is the default's.
pub fn from_wire(rows: u32, cols: u32) -> (u16, u16) {
    let fit = |v: u32, default: u16| u16::try_from(v).ok().filter(|v| *v > 0).unwrap_or(default);
    (fit(rows, DEFAULT_ROWS), fit(cols, DEFAULT_COLS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_the_default() {
        assert_eq!(from_wire(24, 80), (24, 80));
        assert_eq!(from_wire(0, 70_000), (DEFAULT_ROWS, DEFAULT_COLS));
    }
}
