//! The monthly progress report as a PDF (SOP 002 §5: "PDF or PowerPoint
//! document"), written with `pdf-writer`. A4 pages of text in Helvetica
//! (one of the fonts every reader has, so nothing is embedded and a
//! month's report stays a few kilobytes, well under the attachment limit),
//! a title line, then the report's lines, a new page when one is full.

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str, TextStr};

const A4: (f32, f32) = (595.0, 842.0);
const MARGIN: f32 = 56.0;
const TITLE_SIZE: f32 = 16.0;
const SIZE: f32 = 10.5;
const LEADING: f32 = 15.0;
/// Characters per line before a line is wrapped (Helvetica at 10.5 pt
/// fits about this many average characters in the text width).
const WIDTH: usize = 92;

/// One line of the document: a heading or ordinary text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Heading(String),
    Text(String),
    Blank,
}

/// A document of `lines` under `title`, as PDF bytes.
pub fn document(title: &str, lines: &[Line]) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let mut next = 6;
    let mut alloc = || {
        let r = Ref::new(next);
        next += 1;
        r
    };
    pdf.catalog(catalog).pages(tree);
    pdf.document_info(info)
        .title(TextStr(title))
        .producer(TextStr("Herald"));
    for (id, font) in [(regular, "Helvetica"), (bold, "Helvetica-Bold")] {
        pdf.type1_font(id)
            .base_font(Name(font.as_bytes()))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }

    let mut pages: Vec<Content> = Vec::new();
    let mut content = page_start(title, true);
    let mut y = A4.1 - MARGIN - 2.0 * LEADING;
    for line in lines.iter().flat_map(wrap) {
        if y < MARGIN {
            content.end_text();
            pages.push(content);
            content = page_start(title, false);
            y = A4.1 - MARGIN - 2.0 * LEADING;
        }
        let (font, text) = match &line {
            Line::Heading(t) => (Name(b"F2"), t.as_str()),
            Line::Text(t) => (Name(b"F1"), t.as_str()),
            Line::Blank => (Name(b"F1"), ""),
        };
        content.set_font(font, SIZE);
        content.set_text_matrix([1.0, 0.0, 0.0, 1.0, MARGIN, y]);
        content.show(Str(&win_ansi(text)));
        y -= LEADING;
    }
    content.end_text();
    pages.push(content);

    let ids: Vec<(Ref, Ref)> = pages.iter().map(|_| (alloc(), alloc())).collect();
    pdf.pages(tree)
        .kids(ids.iter().map(|(page, _)| *page))
        .count(ids.len() as i32);
    for ((page_id, content_id), content) in ids.into_iter().zip(pages) {
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, A4.0, A4.1));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        resources
            .fonts()
            .pair(Name(b"F1"), regular)
            .pair(Name(b"F2"), bold);
        drop(resources);
        drop(page);
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

/// A page's text object, begun with the title on the first page.
fn page_start(title: &str, first: bool) -> Content {
    let mut c = Content::new();
    c.begin_text();
    if first {
        c.set_font(Name(b"F2"), TITLE_SIZE);
        c.set_text_matrix([1.0, 0.0, 0.0, 1.0, MARGIN, A4.1 - MARGIN]);
        c.show(Str(&win_ansi(title)));
    }
    c
}

/// A line cut at word boundaries to the text width.
fn wrap(line: &Line) -> Vec<Line> {
    let Line::Text(t) = line else {
        return vec![line.clone()];
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in t.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push(Line::Text(std::mem::take(&mut cur)));
            cur.push_str("    ");
        }
        if !cur.is_empty() && !cur.ends_with("    ") {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    out.push(Line::Text(cur));
    out
}

/// Text in the WinAnsi encoding the fonts are set to: Latin-1 as it is,
/// the typographic marks people write mapped to their WinAnsi codes, and
/// anything else as `?`.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            'œ' => 0x9c,
            'Œ' => 0x8c,
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_written_in_win_ansi_and_long_lines_wrap() {
        assert_eq!(win_ansi("Été – 5 €"), b"\xc9t\xe9 \x96 5 \x80");
        assert_eq!(win_ansi("日本"), b"??");
        let long = Line::Text("word ".repeat(40).trim().to_string());
        let lines = wrap(&long);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| match l {
            Line::Text(t) => t.chars().count() <= WIDTH + 4,
            _ => false,
        }));
    }

    #[test]
    fn a_long_report_takes_several_pages_and_stays_small() {
        let lines: Vec<Line> = (0..200).map(|i| Line::Text(format!("Case {i}"))).collect();
        let bytes = document("Progress report", &lines);
        assert!(bytes.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.matches("/Type /Page\n").count() >= 3 || text.matches("/Type /Page").count() >= 4
        );
        assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
    }
}
