//! Reading an `<alert>`: the XML into a small tree of CAP elements, then
//! the tree into an [`Alert`], checked element by element.

use quick_xml::{
    NsReader,
    events::Event,
    name::{Namespace, ResolveResult},
};

use crate::{
    Alert, CATEGORY, CERTAINTY, Info, Invalid, MSG_TYPE, NAMESPACE, Reference, SCOPE, SEVERITY,
    STATUS, URGENCY,
};

/// Documents larger than this are refused before they are read: the
/// alert travels in a broadcast request, held to intake's request limit.
const MAX_BYTES: usize = 48 * 1024;
/// And elements nested deeper.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn one(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn text_of(&self, name: &str) -> String {
        self.one(name)
            .map(|e| e.text.trim().to_string())
            .unwrap_or_default()
    }
}

fn invalid(element: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        element: element.into(),
        message: message.into(),
    }
}

/// Reads `xml` as a CAP 1.2 alert.
pub fn parse(xml: &[u8]) -> Result<Alert, Invalid> {
    if xml.len() > MAX_BYTES {
        return Err(invalid(
            "",
            format!("the document is over {MAX_BYTES} bytes"),
        ));
    }
    let root = tree(xml)?;
    alert(&root)
}

fn tree(xml: &[u8]) -> Result<Element, Invalid> {
    let mut reader = NsReader::from_reader(xml);
    let mut stack: Vec<Element> = Vec::new();
    // Depth inside an element of another namespace, whose content is
    // passed over.
    let mut foreign = 0usize;
    let mut root: Option<Element> = None;
    let cap = Namespace(NAMESPACE.as_bytes());
    let not_xml = |e: &dyn std::fmt::Display| invalid("", format!("not well-formed XML: {e}"));
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| not_xml(&e))?;
        let in_cap = matches!(ns, ResolveResult::Bound(n) if n == cap);
        match event {
            Event::DocType(_) => {
                return Err(invalid(
                    "",
                    "a document type declaration is not allowed in a CAP alert",
                ));
            }
            Event::Start(e) if foreign > 0 || !in_cap => {
                refuse_foreign_root(&stack, &root, &e)?;
                foreign += 1;
            }
            Event::Empty(e) if foreign > 0 || !in_cap => {
                refuse_foreign_root(&stack, &root, &e)?;
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(invalid("", "elements are nested too deeply"));
                }
                stack.push(Element {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).to_string(),
                    ..Element::default()
                });
            }
            Event::Empty(e) => {
                let el = Element {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).to_string(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) if foreign > 0 => foreign -= 1,
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(not_xml(&"an end tag without its start"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) if foreign == 0 => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&t.xml_content().map_err(|e| not_xml(&e))?);
                }
            }
            Event::CData(t) if foreign == 0 => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) if foreign == 0 => {
                let c = match r.resolve_char_ref().map_err(|e| not_xml(&e))? {
                    Some(c) => c,
                    None => match r.as_ref() {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"quot" => '"',
                        other => {
                            return Err(invalid(
                                "",
                                format!(
                                    "the entity &{}; is not defined",
                                    String::from_utf8_lossy(other)
                                ),
                            ));
                        }
                    },
                };
                if let Some(el) = stack.last_mut() {
                    el.text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(not_xml(&"the document ends inside an element"));
    }
    let root = root.ok_or_else(|| invalid("", "the document holds no element"))?;
    if root.name != "alert" {
        return Err(invalid(
            "",
            format!(
                "the root element must be `alert` in namespace {NAMESPACE}, not `{}`",
                root.name
            ),
        ));
    }
    Ok(root)
}

/// An element of another namespace is passed over, unless it would be
/// the root.
fn refuse_foreign_root(
    stack: &[Element],
    root: &Option<Element>,
    e: &quick_xml::events::BytesStart<'_>,
) -> Result<(), Invalid> {
    if stack.is_empty() && root.is_none() {
        let name = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
        return Err(invalid(
            "",
            format!(
                "the root element must be `alert` in namespace {NAMESPACE}, not `{name}` in another"
            ),
        ));
    }
    Ok(())
}

fn alert(root: &Element) -> Result<Alert, Invalid> {
    let required = |name: &str| -> Result<String, Invalid> {
        let v = root.text_of(name);
        if v.is_empty() {
            Err(invalid(format!("alert/{name}"), "is required"))
        } else {
            Ok(v)
        }
    };
    let identifier = required("identifier")?;
    let sender = required("sender")?;
    for (name, value) in [("identifier", &identifier), ("sender", &sender)] {
        if value.contains([' ', ',', '<', '&']) {
            return Err(invalid(
                format!("alert/{name}"),
                "may not hold spaces, commas or the characters < and &",
            ));
        }
    }
    let sent = required("sent")?;
    check_time("alert/sent", &sent)?;
    let status = one_of("alert/status", required("status")?, &STATUS)?;
    let msg_type = one_of("alert/msgType", required("msgType")?, &MSG_TYPE)?;
    let scope = one_of("alert/scope", required("scope")?, &SCOPE)?;
    let references = references(&root.text_of("references"))?;
    let mut info = Vec::new();
    for (i, el) in root.all("info").enumerate() {
        info.push(read_info(el, &format!("alert/info[{}]", i + 1))?);
    }
    Ok(Alert {
        identifier,
        sender,
        sent,
        status,
        msg_type,
        scope,
        note: root.text_of("note"),
        references,
        info,
    })
}

fn read_info(el: &Element, at: &str) -> Result<Info, Invalid> {
    let required = |name: &str| -> Result<String, Invalid> {
        let v = el.text_of(name);
        if v.is_empty() {
            Err(invalid(format!("{at}/{name}"), "is required"))
        } else {
            Ok(v)
        }
    };
    let mut categories = Vec::new();
    for c in el.all("category") {
        categories.push(one_of(
            &format!("{at}/category"),
            c.text.trim().to_string(),
            &CATEGORY,
        )?);
    }
    if categories.is_empty() {
        return Err(invalid(
            format!("{at}/category"),
            "at least one is required",
        ));
    }
    let mut areas = Vec::new();
    for (j, a) in el.all("area").enumerate() {
        let desc = a.text_of("areaDesc");
        if desc.is_empty() {
            return Err(invalid(
                format!("{at}/area[{}]/areaDesc", j + 1),
                "is required",
            ));
        }
        areas.push(desc);
    }
    let language = match el.text_of("language") {
        l if l.is_empty() => "en-US".to_string(),
        l => l,
    };
    Ok(Info {
        language,
        categories,
        event: required("event")?,
        urgency: one_of(&format!("{at}/urgency"), required("urgency")?, &URGENCY)?,
        severity: one_of(&format!("{at}/severity"), required("severity")?, &SEVERITY)?,
        certainty: one_of(
            &format!("{at}/certainty"),
            required("certainty")?,
            &CERTAINTY,
        )?,
        sender_name: el.text_of("senderName"),
        headline: el.text_of("headline"),
        description: el.text_of("description"),
        instruction: el.text_of("instruction"),
        web: el.text_of("web"),
        contact: el.text_of("contact"),
        areas,
    })
}

fn one_of(at: &str, value: String, allowed: &[&str]) -> Result<String, Invalid> {
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(invalid(
            at,
            format!("is {value:?}; CAP 1.2 allows {}", allowed.join(", ")),
        ))
    }
}

/// CAP's time form: `2026-12-02T09:30:00-00:00`, an explicit offset and
/// no fraction of a second.
pub(crate) fn check_time(at: &str, t: &str) -> Result<(), Invalid> {
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    let ok = b.len() == 25
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (b[19] == b'+' || b[19] == b'-')
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            at,
            format!(
                "is {t:?}; CAP writes times as 2026-12-02T09:30:00-00:00 (an offset, no Z, no fraction)"
            ),
        ))
    }
}

/// `references`: space-separated `sender,identifier,sent` triples.
fn references(text: &str) -> Result<Vec<Reference>, Invalid> {
    text.split_whitespace()
        .map(|triple| {
            let parts: Vec<&str> = triple.split(',').collect();
            match parts.as_slice() {
                [sender, identifier, sent] if !sender.is_empty() && !identifier.is_empty() => {
                    Ok(Reference {
                        sender: sender.to_string(),
                        identifier: identifier.to_string(),
                        sent: sent.to_string(),
                    })
                }
                _ => Err(invalid(
                    "alert/references",
                    format!("{triple:?} is not sender,identifier,sent"),
                )),
            }
        })
        .collect()
}
