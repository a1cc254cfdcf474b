//! Tables: a titled box drawn with Unicode lines on a terminal (as the Go
//! `ajc` draws them), plain aligned columns otherwise.
//!
//! Hand-written rather than a table crate: the Go tool's layout (a title row
//! spanning the box) is not what the common crates draw, the content is
//! short ASCII, and the plain form needs exact control for scripts.

use crate::ui::Style;

/// One cell: its text and an optional terminal style.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    style: Option<Style>,
}

impl<T: Into<String>> From<T> for Cell {
    fn from(t: T) -> Cell {
        Cell {
            text: t.into(),
            style: None,
        }
    }
}

impl Cell {
    /// A cell drawn in `style` on a colour terminal.
    pub fn styled(text: impl Into<String>, style: Option<Style>) -> Cell {
        Cell {
            text: text.into(),
            style,
        }
    }
}

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Left aligned.
    Left,
    /// Right aligned (numbers).
    Right,
}

/// A table with a title, headers and rows.
#[derive(Debug, Clone)]
pub struct Table {
    title: String,
    headers: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<Cell>>,
}

/// Display width (the content is ASCII or single-width characters).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Pads `text` to `w` columns.
fn pad(text: &str, w: usize, align: Align) -> String {
    let fill = " ".repeat(w.saturating_sub(width(text)));
    match align {
        Align::Left => format!("{text}{fill}"),
        Align::Right => format!("{fill}{text}"),
    }
}

impl Table {
    /// A table titled `title` with these column headers (all left aligned).
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            align: vec![Align::Left; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Sets the alignment of column `i`.
    pub fn align(mut self, i: usize, align: Align) -> Table {
        if let Some(a) = self.align.get_mut(i) {
            *a = align;
        }
        self
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// Column widths: the widest header or cell.
    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(w.len()) {
                w[i] = w[i].max(width(&c.text));
            }
        }
        w
    }

    /// Text and style of cell `i` of `row` (empty when missing).
    fn cell<'a>(&self, row: &'a [Cell], i: usize) -> (&'a str, Option<Style>) {
        row.get(i)
            .map(|c| (c.text.as_str(), c.style))
            .unwrap_or(("", None))
    }

    /// The table as plain columns: a header line, then one line per row,
    /// columns separated by two spaces, no title and no trailing blanks.
    pub fn render_plain(&self) -> String {
        let w = self.widths();
        let mut out = String::new();
        let line = |cells: Vec<&str>| -> String {
            let last = cells.len().saturating_sub(1);
            let mut l = cells
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if i == last && self.align[i] == Align::Left {
                        t.to_string()
                    } else {
                        pad(t, w[i], self.align[i])
                    }
                })
                .collect::<Vec<_>>()
                .join("  ");
            l.truncate(l.trim_end().len());
            l
        };
        out.push_str(&line(self.headers.iter().map(String::as_str).collect()));
        out.push('\n');
        for row in &self.rows {
            let cells = (0..w.len()).map(|i| self.cell(row, i).0).collect();
            out.push_str(&line(cells));
            out.push('\n');
        }
        out
    }

    /// The table in a rounded Unicode box with the title on top; headers
    /// bold and cells coloured when `color`.
    pub fn render_boxed(&self, color: bool) -> String {
        let mut w = self.widths();
        let n = w.len();
        let inner = |w: &[usize]| w.iter().map(|x| x + 3).sum::<usize>() - 1;
        // widen the last column when the title does not fit
        let title_w = width(&self.title) + 2;
        if n > 0 && inner(&w) < title_w {
            let extra = title_w - inner(&w);
            w[n - 1] += extra;
        }
        let total = inner(&w);
        let rule = |l: &str, m: &str, r: &str| -> String {
            let segs: Vec<String> = w.iter().map(|x| "─".repeat(x + 2)).collect();
            format!("{l}{}{r}\n", segs.join(m))
        };
        let paint = |text: String, style: Option<Style>| match (color, style) {
            (true, Some(s)) => s.paint(&text),
            _ => text,
        };
        let mut out = String::new();
        if self.title.is_empty() {
            out.push_str(&rule("╭", "┬", "╮"));
        } else {
            out.push_str(&format!("╭{}╮\n", "─".repeat(total)));
            let tw = width(&self.title);
            let left = (total - tw) / 2;
            let right = total - tw - left;
            out.push_str(&format!(
                "│{}{}{}│\n",
                " ".repeat(left),
                paint(self.title.clone(), Some(Style::Bold)),
                " ".repeat(right)
            ));
            out.push_str(&rule("├", "┬", "┤"));
        }
        let headers: Vec<String> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| paint(pad(h, w[i], Align::Left), Some(Style::Bold)))
            .collect();
        out.push_str(&format!("│ {} │\n", headers.join(" │ ")));
        out.push_str(&rule("├", "┼", "┤"));
        for row in &self.rows {
            let cells: Vec<String> = (0..n)
                .map(|i| {
                    let (t, s) = self.cell(row, i);
                    paint(pad(t, w[i], self.align[i]), s)
                })
                .collect();
            out.push_str(&format!("│ {} │\n", cells.join(" │ ")));
        }
        out.push_str(&rule("╰", "┴", "╯"));
        out
    }

    /// Boxed on a terminal, plain otherwise.
    pub fn render(&self, ui: &crate::ui::Ui) -> String {
        if ui.stdout_tty {
            self.render_boxed(ui.color)
        } else {
            self.render_plain()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new("Work Queues", &["Name", "Items"]).align(1, Align::Right);
        t.row(vec!["DEFAULT".into(), "1,000".into()]);
        t.row(vec!["Q".into(), "5".into()]);
        t
    }

    #[test]
    fn plain() {
        assert_eq!(
            sample().render_plain(),
            "Name     Items\nDEFAULT  1,000\nQ            5\n"
        );
    }

    #[test]
    fn boxed() {
        let expected = "\
╭─────────────────╮
│   Work Queues   │
├─────────┬───────┤
│ Name    │ Items │
├─────────┼───────┤
│ DEFAULT │ 1,000 │
│ Q       │     5 │
╰─────────┴───────╯
";
        assert_eq!(sample().render_boxed(false), expected);
    }

    #[test]
    fn wide_title() {
        let mut t = Table::new("A rather long title here", &["A"]);
        t.row(vec!["x".into()]);
        let out = t.render_boxed(false);
        let widths: Vec<usize> = out.lines().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{out}");
    }
}
