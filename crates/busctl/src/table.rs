//! Plain-text tables with aligned columns (numbers right-aligned), for terminals and logs.

/// Renders `rows` under `headers`, each line indented by two spaces. Columns whose cells are
/// all numbers are right-aligned. An empty table renders as `  (none)`.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "  (none)\n".to_owned();
    }
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let mut numeric = vec![true; columns];
    for row in rows {
        for (i, cell) in row.iter().take(columns).enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
            numeric[i] &= is_number(cell);
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    line(&mut out, &header, &widths, &vec![false; columns]);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&mut out, &rule, &widths, &vec![false; columns]);
    for row in rows {
        line(&mut out, row, &widths, &numeric);
    }
    out
}

fn line(out: &mut String, cells: &[String], widths: &[usize], right: &[bool]) {
    let mut text = String::from(" ");
    for (i, width) in widths.iter().enumerate() {
        let cell = cells.get(i).map_or("", String::as_str);
        let pad = width.saturating_sub(cell.chars().count());
        text.push(' ');
        if right[i] {
            text.push_str(&" ".repeat(pad));
            text.push_str(cell);
        } else {
            text.push_str(cell);
            text.push_str(&" ".repeat(pad));
        }
        text.push(' ');
    }
    out.push_str(text.trim_end());
    out.push('\n');
}

fn is_number(cell: &str) -> bool {
    let cell = cell.trim_end_matches('%');
    !cell.is_empty() && cell.replace(',', "").parse::<f64>().is_ok()
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A duration in milliseconds as `850ms`, `12.3s`, `4.5m` or `2.0h`.
pub fn duration_ms(ms: f64) -> String {
    if ms < 1_000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1_000.0)
    } else if ms < 3_600_000.0 {
        format!("{:.1}m", ms / 60_000.0)
    } else {
        format!("{:.1}h", ms / 3_600_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_numbers_right_aligned() {
        let rows = vec![
            vec!["done".to_owned(), "8234".to_owned()],
            vec!["error".to_owned(), "24".to_owned()],
        ];
        let text = render(&["STATUS", "ITEMS"], &rows);
        assert_eq!(
            text,
            "  STATUS  ITEMS\n  ------  -----\n  done     8234\n  error      24\n"
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(9058), "9,058");
        assert_eq!(thousands(1_247_000), "1,247,000");
        assert_eq!(thousands(12), "12");
    }
}
