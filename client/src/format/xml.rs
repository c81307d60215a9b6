//! The little XML that `qstat -x` and `pbsnodes -x` print: elements only, no whitespace,
//! values escaped (Torque's MXML writer escapes `&`, `<`, `>` and quotes).

/// Escapes a text value for an element body.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Appends `<tag>escaped value</tag>` to `out`.
pub fn element(out: &mut String, tag: &str, value: &str) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
        let mut s = String::new();
        element(&mut s, "note", "x & y");
        assert_eq!(s, "<note>x &amp; y</note>");
    }
}
